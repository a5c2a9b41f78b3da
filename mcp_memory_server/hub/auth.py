"""Who may call the hub over HTTP, and from where.

`hub_middleware` guards every path: the MCP SDK's `BearerAuthBackend` turns a bearer token into
its grant (`tokens.Tokens` is the token verifier), then `HubGate` refuses what must not pass:
a missing or unknown token (HTTP 401; /health answers without one, with `ok` only, and the web
view under /ui, which has its own login, gets the tokens to check it against), a
non-loopback client of a hub without tokens (403, unless `allow_remote`), a body over
MEMORY_MAX_REQUEST_BYTES (413). A valid token attaches its `Caller` and its rate-limit gate to the
request state, where `server.caller_of` and `server.admit` find them.

Host and Origin checks (DNS-rebinding protection) are the SDK's; `allowed_hosts` and
`allowed_origins` say what they accept.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..server import ADMIT_STATE_KEY, CALLER_STATE_KEY
from .ratelimit import RateLimiter
from .tokens import GrantToken, Tokens

PUBLIC_PATHS = frozenset({"/health"})
UI_PATH = "/ui"  # the web view (hub/ui/): its pages and static files, behind its own login
# Set on /health requests that carry no valid token while tokens are configured: answer without details.
ANONYMOUS_STATE_KEY = "memory_anonymous"
# Set on requests to the web view: the hub's tokens, which its login page accepts.
TOKENS_STATE_KEY = "memory_tokens"

LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def hub_middleware(tokens: Tokens, *, allow_remote: bool = False, max_request_bytes: int = 16 * 1024 * 1024,
                   limiter: RateLimiter | None = None) -> list[Middleware]:
    """The hub's middleware stack, outermost first."""
    return [Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(tokens)),
            Middleware(HubGate, tokens=tokens, allow_remote=allow_remote, max_request_bytes=max_request_bytes,
                       limiter=limiter or RateLimiter())]


class HubGate:
    """Pure ASGI middleware behind the SDK's bearer authentication: see the module docstring."""

    def __init__(self, app: ASGIApp, tokens: Tokens, *, allow_remote: bool, max_request_bytes: int,
                 limiter: RateLimiter) -> None:
        self.app = app
        self.tokens = tokens
        self.allow_remote = allow_remote
        self.max_request_bytes = max_request_bytes
        self.limiter = limiter

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
        state = scope.setdefault("state", {})
        path = scope.get("path", "")
        ui = path == UI_PATH or path.startswith(f"{UI_PATH}/")
        if ui:
            state[TOKENS_STATE_KEY] = self.tokens
        if self.tokens:
            user = scope.get("user")
            access = user.access_token if isinstance(user, AuthenticatedUser) else None
            if isinstance(access, GrantToken):
                grant, key = access.grant, access.token
                state[CALLER_STATE_KEY] = grant.caller
                state[ADMIT_STATE_KEY] = lambda: self.limiter.admit(key, grant)
            else:
                sent = _header(scope, b"authorization")
                if not (path in PUBLIC_PATHS or ui) or sent is not None:  # a wrong token: refused everywhere
                    return await _reject(send, 401, "missing bearer token" if sent is None else "unknown token",
                                         {"www-authenticate": 'Bearer realm="mcp-memory-server"'})
                state[ANONYMOUS_STATE_KEY] = True
        await self.app(scope, self._capped(receive), send)

    def _capped(self, receive: Receive) -> Receive:
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_request_bytes:
                    return {"type": "http.disconnect"}  # a chunked body over the cap: drop it
            return message

        return capped


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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _reject(send: Send, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
