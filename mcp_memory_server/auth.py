"""Who may use the HTTP hub: bearer tokens mapped to an agent identity and its communities.

Tokens come from a file (MEMORY_AUTH_FILE: JSON, YAML or TOML) and/or the environment
(MEMORY_AUTH_TOKENS: the same JSON inline). Both have the shape

    {"tokens": {"<token>": {"agent_id": "alice", "communities": ["team-a"], "rate_limit": 600}}}

where `communities` is a list or "*" (every community, for admins) and `rate_limit` (optional)
is tool calls per minute. A key of the form `sha256:<hex>` holds the token's SHA-256 digest
instead of the token itself, so the file need not contain secrets.

`AuthMiddleware` (pure ASGI) guards every path: a missing or unknown token gets HTTP 401, except
that /health answers requests without a token (with `ok` only). A known token attaches its
`Caller` (and its rate-limit gate) to the request scope, where `server.caller_of` finds it. With
no tokens configured, it only lets loopback clients in unless `allow_remote` is set.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from .access import ALL_COMMUNITIES, Caller
from .config import COMMUNITY_PATTERN, Settings
from .errors import ConfigError, RateLimited
from .server import ADMIT_STATE_KEY, CALLER_STATE_KEY

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/health"})
# Set on /health requests that carry no valid token while tokens are configured: answer without details.
ANONYMOUS_STATE_KEY = "memory_anonymous"
MIN_TOKEN_CHARS = 16
_AGENT_ID = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}$")
_COMMUNITY = re.compile(COMMUNITY_PATTERN)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    """What one token allows: who it is, the communities it may read and write (None = all), and
    at most how many tool calls per minute (None = unlimited), with bursts of up to `burst`."""

    agent_id: str
    communities: frozenset[str] | None
    rate_limit: float | None = None
    burst: int | None = None

    @property
    def caller(self) -> Caller:
        return Caller(agent_id=self.agent_id, communities=self.communities)


class Tokens:
    """The configured tokens, kept only as SHA-256 digests. Empty means "no auth configured"."""

    def __init__(self, grants: Mapping[str, Grant] | None = None) -> None:
        self._by_digest = dict(grants or {})

    @classmethod
    def from_settings(cls, settings: Settings) -> Tokens:
        """Tokens from MEMORY_AUTH_FILE and MEMORY_AUTH_TOKENS (the latter wins on a clash).
        Raises ConfigError naming the source and what is wrong."""
        grants: dict[str, Grant] = {}
        if settings.memory_auth_file:
            path = Path(settings.memory_auth_file).expanduser()
            grants.update(parse_grants(_load_file(path), str(path)))
        if settings.memory_auth_tokens:
            try:
                data = json.loads(settings.memory_auth_tokens)
            except ValueError as exc:
                raise ConfigError(f"MEMORY_AUTH_TOKENS is not valid JSON: {exc}") from exc
            grants.update(parse_grants(data, "MEMORY_AUTH_TOKENS"))
        return cls(grants)

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, token: str) -> Grant | None:
        # Looking up the digest, not the token, keeps the comparison's timing independent of the secret.
        return self._by_digest.get(digest(token))

    def agents(self) -> list[str]:
        return sorted({g.agent_id for g in self._by_digest.values()})


def parse_grants(data: Any, source: str) -> dict[str, Grant]:
    """`{"tokens": {token: {...}}}` (or the inner mapping alone) -> grants keyed by token digest."""
    if isinstance(data, dict) and "tokens" in data:
        data = data["tokens"]
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of tokens to grants, got {type(data).__name__}")
    grants: dict[str, Grant] = {}
    for key, spec in data.items():
        where = f"{source}: token {str(key)[:6]}..."
        if not isinstance(key, str):
            raise ConfigError(f"{where}: tokens must be strings")
        if key.startswith("sha256:"):
            hexdigest = key.removeprefix("sha256:").lower()
            if not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
                raise ConfigError(f"{where}: a sha256: key needs 64 hex digits")
        elif len(key) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{where}: tokens must be at least {MIN_TOKEN_CHARS} characters "
                              "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        else:
            hexdigest = digest(key)
        grants[hexdigest] = _grant(spec, where)
    return grants


def _grant(spec: Any, where: str) -> Grant:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected {{agent_id, communities, rate_limit}}")
    unknown = set(spec) - {"agent_id", "communities", "rate_limit", "burst"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    agent = spec.get("agent_id")
    if not isinstance(agent, str) or not _AGENT_ID.match(agent):
        raise ConfigError(f"{where}: agent_id must be 1-128 letters, digits or _.@:- , got {agent!r}")
    raw = spec.get("communities")
    communities: frozenset[str] | None
    if raw == ALL_COMMUNITIES or raw == [ALL_COMMUNITIES]:
        communities = None
    elif isinstance(raw, list) and all(isinstance(c, str) and _COMMUNITY.match(c) for c in raw):
        communities = frozenset(raw)
    else:
        raise ConfigError(f"{where}: communities must be \"*\" or a list of community names, got {raw!r}")
    rate, burst = spec.get("rate_limit"), spec.get("burst")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0):
        raise ConfigError(f"{where}: rate_limit must be a positive number of calls per minute")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ConfigError(f"{where}: burst must be a positive whole number")
    return Grant(agent, communities, float(rate) if rate is not None else None, burst)


def _load_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read MEMORY_AUTH_FILE {path}: {exc}") from exc
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"MEMORY_AUTH_FILE {path} does not parse: {exc}") from exc


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """Token buckets, one per agent token: `rate_limit` calls per minute, bursts of `burst`
    (default: ten seconds' worth). Runs on the event loop thread only."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def admit(self, key: str, grant: Grant) -> None:
        """Count one call; raise RateLimited (with the seconds to wait) when over the limit."""
        if grant.rate_limit is None:
            return
        per_second = grant.rate_limit / 60.0
        capacity = float(grant.burst or max(1, math.ceil(per_second * 10)))
        now = self.clock()
        bucket = self._buckets.setdefault(key, _Bucket(capacity, now))
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * per_second)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / per_second
        raise RateLimited(f"rate limit reached for agent {grant.agent_id!r} ({grant.rate_limit:g} calls per "
                          f"minute); retry in {wait:.2f} s", retry_after=wait)


def is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AuthMiddleware:
    """Pure ASGI middleware: bearer-token auth, per-token rate-limit gate, loopback-only mode
    and a cap on request body size (413 above `max_request_bytes`)."""

    def __init__(self, app: ASGIApp, tokens: Tokens, *, allow_remote: bool = False,
                 max_request_bytes: int = 16 * 1024 * 1024, limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.tokens = tokens
        self.allow_remote = allow_remote
        self.max_request_bytes = max_request_bytes
        self.limiter = limiter or RateLimiter()

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
        public = scope.get("path") in PUBLIC_PATHS
        if self.tokens:
            token = _bearer(scope)
            grant = self.tokens.lookup(token) if token else None
            if grant is None:
                if not public or token is not None:  # a wrong token is refused even on /health
                    return await _reject(send, 401, "missing bearer token" if token is None else "unknown token",
                                         {"www-authenticate": 'Bearer realm="mcp-memory-server"'})
                state[ANONYMOUS_STATE_KEY] = True
            else:
                assert token is not None
                key = digest(token)
                state[CALLER_STATE_KEY] = grant.caller
                state[ADMIT_STATE_KEY] = lambda: self.limiter.admit(key, grant)
                # The SDK binds each MCP session to the credential that opened it.
                scope["user"] = AuthenticatedUser(AccessToken(token=key, client_id=grant.agent_id, scopes=[]))
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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


async def _reject(send: Send, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


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
