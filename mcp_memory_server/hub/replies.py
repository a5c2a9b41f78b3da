"""A streamable-HTTP call that asks for no progress is answered as plain JSON (issue 10).

The MCP SDK answers every POST to /mcp with an SSE stream, even when the stream will hold one
event, the answer. Its client stops reading at that event, before the stream's closing chunk, so
httpx cannot put the connection back in its pool: every call opened a new TCP connection (connect,
accept, close: ~1-2 ms per call on this 2-core host, with the SSE framing on both sides).

Two ways, by how long a call may take:

- A quick call (every request but the tools whose time grows with their input, `LONG_TOOLS`) is
  answered by the SDK's transport in its JSON mode, chosen for this request only (`JsonForThisCall`:
  the transport asks its `is_json_response_enabled` flag per request, and the flag reads a context
  variable that `JsonReplies` sets). No SSE stream is made at all: ~0.7-1 ms less per call than
  holding one back (measured, two hubs side by side). The SDK's JSON mode drops any message of the
  call other than its answer; a call without a progress token has none here (this server sends no
  log messages, and its resource notifications go to the session's own stream).
- A long call (`remember_many`, `import`, `forget`) keeps its SSE stream, so that the stream's
  keep-alive comments hold a proxy's idle timeout open, and `JsonReplies` holds the stream back:
  when it ends holding nothing but its answer, the answer goes out as an `application/json` body
  instead (which the transport allows for any request, and the SDK's client reads whole, keeping
  the connection). Anything else in the stream (a notification, a keep-alive comment, an event id)
  sends the stream on as it is, from that moment.

Requests that sent a progress token, batches, other paths and methods, and clients that do not
accept both JSON and SSE pass untouched.
"""

from __future__ import annotations

import contextvars
import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .direct import DirectCalls

# The JSON-RPC message of the request, parsed once by hub/auth.py's gate (it checks every body).
MESSAGE_STATE_KEY = "memory_jsonrpc_message"
PATH = "/mcp"
# Tools whose time grows with their input: their calls keep an SSE stream (and its keep-alives).
LONG_TOOLS = frozenset({"remember_many", "import", "forget"})
_AS_JSON: contextvars.ContextVar[bool] = contextvars.ContextVar("memory_answer_as_json", default=False)
_ANSWER = re.compile(rb'\{"jsonrpc":"2\.0","id":(?:"(?:[^"\\]|\\.)*"|-?\d+),"(?:result|error)":')


def answers_once(message: Any) -> bool:
    """Whether `message` is one JSON-RPC request whose caller asked for no progress."""
    if not isinstance(message, dict) or "id" not in message or not isinstance(message.get("method"), str):
        return False
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return not (isinstance(meta, dict) and meta.get("progressToken") is not None)


def is_quick(message: dict[str, Any]) -> bool:
    """Whether a request that answers once is answered as JSON by the transport itself."""
    params = message.get("params")
    return not (message.get("method") == "tools/call" and isinstance(params, dict)
                and params.get("name") in LONG_TOOLS)


class JsonForThisCall:
    """The streamable-HTTP session manager's `json_response` (see the module docstring): true in
    the request whose quick call `JsonReplies` marked, false elsewhere. The manager hands it to each
    transport it makes, which tests it per request."""

    def __bool__(self) -> bool:
        return _AS_JSON.get()


def is_answer(data: bytes | None) -> bool:
    """Whether an event's `data` is a JSON-RPC answer (a result or an error), as the SDK writes one:
    its first keys are jsonrpc, id, then result or error. Anything else, or another key order, is
    not (the stream then goes through unchanged)."""
    return data is not None and _ANSWER.match(data) is not None


def single_event(stream: bytes) -> bytes | None:
    """The data of the only event in an SSE `stream` that holds one `message` event and nothing
    else (no comment, no id, no retry); None otherwise."""
    lines = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    data: list[bytes] = []
    events = 0
    pending = False
    for line in lines:
        if not line:
            if pending:
                events, pending = events + 1, False
            continue
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"data":
            data.append(value)
            pending = True
        elif not (field == b"event" and value == b"message"):
            return None  # a comment (keep-alive), an id, a retry, another kind of event
    if events != 1 or pending:
        return None
    return b"\n".join(data)


class JsonReplies:
    """Pure ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, path: str = PATH, direct: DirectCalls | None = None) -> None:
        self.app = app
        self.path = path
        self.direct = direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") == self.path
                and _accepts_json_and_sse(scope)):
            return await self.app(scope, receive, send)
        state = scope.get("state") or {}
        if MESSAGE_STATE_KEY in state:
            request = state[MESSAGE_STATE_KEY]
        else:  # no gate in front (an app built without hub/auth.py's middleware): read the body here
            body = await read_body(receive) or b""  # None only over a limit, and there is none
            receive = replay(body, receive)
            try:
                request = json.loads(body)
            except ValueError:
                request = None  # the SDK answers it
        if not answers_once(request):
            return await self.app(scope, receive, send)
        if is_quick(request):
            if self.direct is not None and await self.direct.answer(scope, receive, send, request):
                return None
            marked = _AS_JSON.set(True)
            try:
                return await self.app(scope, receive, send)
            finally:
                _AS_JSON.reset(marked)
        held: list[Message] = []
        through = False

        async def flush() -> None:
            nonlocal through
            through = True
            for kept in held:
                await send(kept)
            held.clear()

        async def reply(message: Message) -> None:
            nonlocal through
            if through:
                return await send(message)
            if message["type"] == "http.response.start":
                if message.get("status") != 200 or not _is_sse(message):
                    through = True
                    return await send(message)
                held.append(message)
                return None
            if message["type"] != "http.response.body":
                await flush()
                return await send(message)
            held.append(message)
            stream = b"".join(m.get("body", b"") for m in held[1:])
            if message.get("more_body", False):
                if stream.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")) and not is_answer(single_event(stream)):
                    await flush()  # more than the answer: the stream goes on as a stream, from now
                return None
            body = single_event(stream)
            if body is None or not is_answer(body):
                return await flush()
            headers = [(k, v) for k, v in held[0].get("headers", ()) if k.lower() not in (b"content-type",
                                                                                           b"content-length")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            held.clear()
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reply)
        if held:  # the app ended without closing its stream
            await flush()


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body, or None once it grows over `limit` bytes (a chunked body declares
    no length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body read already, then the client's next messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _accepts_json_and_sse(scope: Scope) -> bool:
    """Whether the client takes both answers the transport may give (it refuses others with 406)."""
    accept = b",".join(value.lower() for key, value in scope.get("headers", ()) if key.lower() == b"accept")
    return b"application/json" in accept and b"text/event-stream" in accept


def _is_sse(start: Message) -> bool:
    return any(key.lower() == b"content-type" and value.lower().startswith(b"text/event-stream")
               for key, value in start.get("headers", ()))
