"""Who may call the hub over HTTP, from where, and how much.

`hub_middleware` guards every path: the MCP SDK's `BearerAuthBackend` turns a bearer token into
its grant (`tokens.Tokens` is the token verifier), then `HubGate` refuses what must not pass:

- a missing or unknown token: HTTP 401 (public paths answer without one: /health with `ok` only,
  /.well-known/, which says that this hub does not use OAuth (see app.py), and the web view under
  /ui, which has its own login and gets the tokens to check it against);
- a non-loopback client of a hub without tokens: 403 (unless `allow_remote`);
- a body over MEMORY_MAX_REQUEST_BYTES: 413; a JSON-RPC body (/mcp, /messages/) that is not UTF-8
  JSON, or is nested deeper than MAX_JSON_DEPTH, or holds a number of more than 4300 digits: 400
  with the reason;
- a request over the token's rate limit: 429 with Retry-After, except a tool call, which the
  tool answers with a RateLimited tool error (`server.REFUSED_STATE_KEY`) so that a model sees it;
- a new MCP session beyond MEMORY_MAX_SESSIONS_PER_TOKEN open ones for the token: 429.

A valid token attaches its `Caller` to the request state, where `server.caller_of` finds it.
Host and Origin checks (DNS-rebinding protection) are the SDK's; `allowed_hosts` and
`allowed_origins` say what they accept.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Mapping
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..errors import RateLimited
from ..server import CALLER_STATE_KEY, REFUSED_STATE_KEY
from .ratelimit import RateLimiter, SessionLimiter
from .replies import MESSAGE_STATE_KEY, read_body, replay
from .tokens import GrantToken, Tokens

PUBLIC_PATHS = frozenset({"/health"})
PUBLIC_PREFIXES = ("/.well-known/",)
UI_PATH = "/ui"  # the web view (hub/ui/): its pages and static files, behind its own login
# Set on public requests that carry no valid token while tokens are configured: answer without details.
ANONYMOUS_STATE_KEY = "memory_anonymous"
# Set on requests to the web view: the hub's tokens, which its login page accepts.
TOKENS_STATE_KEY = "memory_tokens"
STREAMABLE_PATH, SSE_PATH, MESSAGE_PATH = "/mcp", "/sse", "/messages/"  # FastMCP's paths, which the hub serves
SESSION_HEADER = "mcp-session-id"
# An MCP message is a few levels deep; metadata may nest MEMORY_MAX_METADATA_DEPTH (6) more. Deeper
# JSON only serves to exhaust the parser's recursion (a 500 before this check).
MAX_JSON_DEPTH = 64
# What a client that meets a 401 is told: a bearer token in a header, from the hub's token file. No
# resource_metadata: this hub does not do OAuth (its /.well-known/ paths answer 404, see app.py).
NO_OAUTH = ("this hub takes a bearer token in the Authorization header (a token from its MEMORY_AUTH_FILE); "
            "it does not use OAuth")

LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def hub_middleware(tokens: Tokens, *, allow_remote: bool = False, max_request_bytes: int = 16 * 1024 * 1024,
                   limiter: RateLimiter | None = None, sessions_per_token: int = 32) -> list[Middleware]:
    """The hub's middleware stack, outermost first."""
    return [Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(tokens)),
            Middleware(HubGate, tokens=tokens, allow_remote=allow_remote, max_request_bytes=max_request_bytes,
                       limiter=limiter or RateLimiter(), sessions=SessionLimiter(sessions_per_token))]


class BadRequest(ValueError):
    """A request body the hub will not parse; the message says why."""


class HubGate:
    """Pure ASGI middleware behind the SDK's bearer authentication: see the module docstring."""

    def __init__(self, app: ASGIApp, tokens: Tokens, *, allow_remote: bool, max_request_bytes: int,
                 limiter: RateLimiter, sessions: SessionLimiter) -> None:
        self.app = app
        self.tokens = tokens
        self.allow_remote = allow_remote
        self.max_request_bytes = max_request_bytes
        self.limiter = limiter
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # the hub serves no websockets
            return await send({"type": "websocket.close", "code": 1008})
        client = scope.get("client")
        if not self.tokens and not self.allow_remote and not is_loopback(client[0] if client else None):
            return await _reject(send, 403, "this hub has no tokens configured and serves loopback clients only")
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_request_bytes):
            return await _reject(send, 413, f"request body over {self.max_request_bytes} bytes")
        path, method = scope.get("path", ""), scope.get("method", "")
        state = scope.setdefault("state", {})
        ui = path == UI_PATH or path.startswith(f"{UI_PATH}/")
        if ui:
            state[TOKENS_STATE_KEY] = self.tokens
        key: str | None = None
        if self.tokens:
            user = scope.get("user")
            access = user.access_token if isinstance(user, AuthenticatedUser) else None
            if isinstance(access, GrantToken):
                key, grant = access.token, access.grant
                state[CALLER_STATE_KEY] = grant.caller
            else:
                sent = _header(scope, b"authorization")
                public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or ui
                if not public or sent is not None:  # a wrong token: refused everywhere
                    challenge = 'Bearer realm="mcp-memory-server"'
                    if sent is not None:
                        challenge += ', error="invalid_token", error_description="unknown token"'
                    return await _reject(send, 401, f"{'missing bearer token' if sent is None else 'unknown token'}: "
                                                    f"{NO_OAUTH}", {"www-authenticate": challenge})
                state[ANONYMOUS_STATE_KEY] = True
        message: Any = None
        if method == "POST" and (path == STREAMABLE_PATH or path.startswith(MESSAGE_PATH)):  # JSON-RPC
            body = await read_body(receive, self.max_request_bytes)
            if body is None:
                return await _reject(send, 413, f"request body over {self.max_request_bytes} bytes")
            try:
                message = json_body(body)
            except BadRequest as exc:
                return await _reject(send, 400, str(exc), code=-32700)
            state[MESSAGE_STATE_KEY] = message  # for replies.JsonReplies
            receive = replay(body, receive)
        if key is None:
            return await self.app(scope, receive, send)
        try:
            self.limiter.admit(key, grant)
        except RateLimited as exc:
            if not (method == "POST" and isinstance(message, dict) and message.get("method") == "tools/call"):
                return await _reject(send, 429, str(exc), {"retry-after": str(math.ceil(exc.retry_after))})
            state[REFUSED_STATE_KEY] = exc  # the tool answers with it (a tool error a model sees)
        await self._in_session(scope, receive, send, key, grant.agent_id)

    async def _in_session(self, scope: Scope, receive: Receive, send: Send, key: str, agent: str) -> None:
        """Serve the request, counting the MCP session it opens or belongs to (see SessionLimiter)."""
        path, method = scope.get("path", ""), scope.get("method", "")
        session = _header(scope, SESSION_HEADER.encode())
        opening = (path == STREAMABLE_PATH and method == "POST" and session is None) or (
            path == SSE_PATH and method == "GET")
        if opening:
            try:
                self.sessions.reserve(key, agent)
            except RateLimited as exc:
                return await _reject(send, 429, str(exc), {"retry-after": str(math.ceil(exc.retry_after))})
        answer: dict[str, Any] = {}

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and not answer:
                answer["status"] = message["status"]
                answer["session"] = _header({"headers": message.get("headers", ())}, SESSION_HEADER.encode())
                if opening and path == STREAMABLE_PATH:
                    if answer["status"] < 400 and answer["session"]:
                        self.sessions.opened(key, answer["session"])
                    else:
                        self.sessions.abandoned(key)
            await send(message)

        if opening and path == SSE_PATH:  # the session lives as long as this GET stream
            self.sessions.opened(key, f"sse-{id(scope)}", in_flight=1)
            try:
                return await self.app(scope, receive, send)
            finally:
                self.sessions.ended(key, f"sse-{id(scope)}", gone=True)
        if session is not None:
            self.sessions.started(key, session)
        try:
            await self.app(scope, receive, watched)
        finally:
            if opening and not answer:
                self.sessions.abandoned(key)  # no answer at all: nothing was opened
            if session is not None:
                self.sessions.ended(key, session, gone=method == "DELETE" or answer.get("status") == 404)


def json_body(body: bytes) -> Any:
    """`body` parsed as JSON; BadRequest saying why when it is not UTF-8 JSON the hub will handle
    (the SDK's parser answers these with HTTP 500 and a traceback)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"Parse error: the request body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise BadRequest(f"Parse error: JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise BadRequest("Parse error: a number in the request has more than 4300 digits") from exc
        raise BadRequest(f"Parse error: {exc}") from exc
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise BadRequest(f"Parse error: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [child for item in level if isinstance(item, dict | list)
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return True


def is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(settings: Settings, bind: str) -> list[str]:
    """Host header values the hub accepts (DNS-rebinding protection): loopback, the bound address
    when it is a specific one, and MEMORY_ALLOWED_HOSTS."""
    hosts = list(LOOPBACK_HOSTS)
    if bind not in ("0.0.0.0", "::", "") and not is_loopback(bind):
        hosts.append(f"[{bind}]:*" if ":" in bind else f"{bind}:*")
    return hosts + _split(settings.memory_allowed_hosts)


def allowed_origins(settings: Settings, bind: str) -> list[str]:
    """Origin header values the hub accepts (browsers only send one): loopback and MEMORY_ALLOWED_ORIGINS."""
    origins = list(LOOPBACK_ORIGINS)
    if bind not in ("0.0.0.0", "::", "") and not is_loopback(bind):
        origins.append(f"http://[{bind}]:*" if ":" in bind else f"http://{bind}:*")
    return origins + _split(settings.memory_allowed_origins)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _header(scope: Scope | Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _reject(send: Send, status: int, message: str, headers: Mapping[str, str] | None = None,
                  code: int = -32000) -> None:
    """An HTTP error whose body is a JSON-RPC error, as MCP clients expect from an MCP endpoint."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
