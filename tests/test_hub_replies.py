"""A streamable-HTTP call that asks for no progress is answered as plain JSON (hub/replies.py), so
that the SDK's client keeps its connection: a quick call by the transport's JSON mode, a long one by
holding its stream back; a call that asks for progress still hears it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.auth import hub_middleware
from mcp_memory_server.hub.replies import JsonForThisCall, JsonReplies, is_answer, single_event
from mcp_memory_server.hub.tokens import Tokens
from tests.conftest import running_hub

pytestmark = pytest.mark.anyio

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


class Connections:
    """Counts the TCP connections an httpx client opens (httpcore's trace of each request)."""

    def __init__(self) -> None:
        self.opened = 0

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.opened += 1

    async def hook(self, request: httpx.Request) -> None:
        request.extensions["trace"] = self.trace


@asynccontextmanager
async def counted_session(url: str, connections: Connections) -> AsyncIterator[ClientSession]:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(60.0), event_hooks={"request": [connections.hook]}) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@pytest.mark.parametrize("gated", [True, False], ids=["as-serve-runs-it", "no-gate"])
async def test_tool_calls_that_ask_for_no_progress_keep_the_clients_connection(settings: Settings,
                                                                                 gated: bool) -> None:
    connections = Connections()
    with running_hub(settings, middleware=hub_middleware(Tokens()) if gated else ()) as hub, anyio.fail_after(120):
        async with counted_session(hub.url, connections) as session:
            await session.call_tool("remember", {"content": "Staging restarts at noon.", "community": "ops"})
            before = connections.opened
            for _ in range(5):
                found = await session.call_tool("recall", {"query": "when does staging restart?", "community": "ops"})
                assert not found.isError and found.structuredContent is not None
                assert "noon" in found.structuredContent["hits"][0]["content"]
                assert not (await session.call_tool("stats", {})).isError
            assert connections.opened == before  # the SSE answers opened one connection per call


async def test_a_call_that_asks_for_progress_is_answered_as_a_stream_and_hears_its_progress(
        settings: Settings) -> None:
    heard: list[tuple[float, float | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        heard.append((done, total))

    with running_hub(settings, middleware=hub_middleware(Tokens())) as hub, anyio.fail_after(120):
        async with counted_session(hub.url, Connections()) as session:
            many = await session.call_tool("remember_many", {"memories": [
                {"content": f"Ticket {n} was closed by the night shift.", "community": "desk"} for n in range(6)]},
                progress_callback=progress)
            assert not many.isError and heard and heard[-1] == (6, 6)


async def test_the_answer_is_json_without_a_progress_token_and_an_event_stream_with_one(settings: Settings) -> None:
    with running_hub(settings, middleware=hub_middleware(Tokens())) as hub, anyio.fail_after(120):
        async with httpx.AsyncClient(base_url=hub.base, headers=MCP_HEADERS, timeout=60) as http:
            opened = await http.post("/mcp", json=INIT)
            assert opened.headers["content-type"] == "application/json" and opened.json()["id"] == 1
            session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
            await http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "stats", "arguments": {}}}
            plain = await http.post("/mcp", headers=session, json=call)
            assert plain.headers["content-type"] == "application/json"
            assert plain.json()["result"]["structuredContent"]["total"] == 0
            # A quick call is answered by the transport in JSON mode: no SSE stream was made (an SSE
            # answer carries the stream's Cache-Control). A long one's stream is held and made JSON.
            assert "cache-control" not in plain.headers
            forget = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "forget", "arguments": {"community": "none-here", "kinds": ["note"]}}}
            held = await http.post("/mcp", headers=session, json=forget)
            assert held.headers["content-type"] == "application/json"
            assert "no-transform" in held.headers["cache-control"]
            assert held.json()["result"]["structuredContent"] == {"deleted": 0}
            call["params"]["_meta"] = {"progressToken": "p1"}  # type: ignore[index]
            streamed = await http.post("/mcp", headers=session, json={**call, "id": 3})
            assert streamed.headers["content-type"].startswith("text/event-stream")
            assert single_event(streamed.content) is not None and b'"id":3' in streamed.content
            sse_only = await http.post("/mcp", headers={**session, "Accept": "text/event-stream, application/x"},
                                       json={**call, "id": 4})
            assert sse_only.status_code == 406  # the SDK's answer to a client that does not take JSON, as before


def test_only_a_stream_of_exactly_one_message_event_becomes_a_json_body() -> None:
    answer = b'{"jsonrpc":"2.0","id":2,"result":{}}'
    assert single_event(b"event: message\r\ndata: " + answer + b"\r\n\r\n") == answer
    assert single_event(b"event: message\ndata: " + answer + b"\n\n") == answer
    assert single_event(b"data: " + answer + b"\n\n") == answer
    assert single_event(b": ping - 2026-11-29\r\n\r\nevent: message\r\ndata: " + answer + b"\r\n\r\n") is None
    assert single_event(b"event: message\r\ndata: {}\r\n\r\nevent: message\r\ndata: " + answer + b"\r\n\r\n") is None
    assert single_event(b"id: 7\r\nevent: message\r\ndata: " + answer + b"\r\n\r\n") is None
    assert single_event(b"event: message\r\ndata: " + answer) is None  # not ended
    assert single_event(b"") is None
    assert is_answer(answer) and is_answer(b'{"jsonrpc":"2.0","id":"a\\"b","error":{"code":1}}')
    assert not is_answer(b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}')
    assert not is_answer(b'{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{}}')


async def _served(chunks: list[bytes], body: dict[str, Any], early: list[int] | None = None) -> list[dict[str, Any]]:
    """What JsonReplies sends for a POST /mcp of `body` answered by an app streaming `chunks` as SSE
    (the SDK's transport cannot be made to put a notification in a call's stream on demand);
    `early` hears how many messages had gone out before each chunk was sent."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"mcp-session-id", b"s1")]})
        for chunk in chunks:
            if early is not None:
                early.append(len(sent))
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    sent: list[dict[str, Any]] = []
    raw = json.dumps(body).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mcp",
             "headers": [(b"accept", b"application/json, text/event-stream")]}
    await JsonReplies(app)(scope, receive, send)
    return sent


async def test_a_quick_call_asks_the_transport_for_json_and_a_long_call_does_not() -> None:
    flag = JsonForThisCall()
    seen: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(bool(flag))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    def scope(accept: bytes) -> dict[str, Any]:
        return {"type": "http", "method": "POST", "path": "/mcp", "headers": [(b"accept", accept)]}

    both = b"application/json, text/event-stream"
    for name, accept, progress, expected in [("stats", both, None, True), ("recall", both, None, True),
                                             ("remember_many", both, None, False), ("import", both, None, False),
                                             ("forget", both, None, False), ("stats", both, "p", False),
                                             ("stats", b"application/json", None, False)]:
        params: dict[str, Any] = {"name": name, "arguments": {}}
        if progress:
            params["_meta"] = {"progressToken": progress}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        await JsonReplies(app)(scope(accept), receive, send)
        assert seen.pop() is expected, (name, accept, progress)
        assert not flag  # only inside the call
    body = {"jsonrpc": "2.0", "id": 1, "method": "resources/list"}
    await JsonReplies(app)(scope(both), receive, send)
    assert seen.pop() is True


async def test_a_stream_that_holds_more_than_the_answer_goes_through_as_a_stream() -> None:
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "remember_many", "arguments": {}}}
    answer = b'event: message\r\ndata: {"jsonrpc":"2.0","id":5,"result":{}}\r\n\r\n'
    note = b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\r\n\r\n'
    plain = await _served([answer], call)
    data = b'{"jsonrpc":"2.0","id":5,"result":{}}'
    assert plain[0]["headers"][-2:] == [(b"content-type", b"application/json"), (b"content-length", b"36")]
    assert (b"mcp-session-id", b"s1") in plain[0]["headers"] and [m.get("body") for m in plain[1:]] == [data]
    for chunks in ([note, answer], [b": ping - 2026-11-29\r\n\r\n", answer]):
        early: list[int] = []
        streamed = await _served(chunks, call, early)
        assert early == [0, 2]  # the first event went out at once, before the answer was ready
        assert (b"content-type", b"text/event-stream") in streamed[0]["headers"]
        assert b"".join(m.get("body", b"") for m in streamed[1:]) == b"".join(chunks)
    asked = await _served([answer], {**call, "params": {**call["params"], "_meta": {"progressToken": 1}}})
    assert (b"content-type", b"text/event-stream") in asked[0]["headers"]
