"""What every request to the web view must pass, and what every answer carries.

- Host: one of the hub's allowed hosts (the same list as the MCP endpoints': loopback, the bound
  address, MEMORY_ALLOWED_HOSTS), else 421. A page of another site that rebinds its DNS name to
  127.0.0.1 is then refused before it can read a page.
- POST: an Origin header, when the browser sends one (they do on every form post), must name this
  very host and be an allowed origin (loopback), or be listed in MEMORY_ALLOWED_ORIGINS, else 403. The CSRF token in
  each form (sessions.py) is checked as well, by the page.
- Every answer: a Content-Security-Policy that allows scripts, styles and images from the hub only
  (no inline script: memory content can never run), no framing, no referrer to other sites.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make form posts say Origin: null
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def matches(value: str, patterns: Sequence[str]) -> bool:
    """`value` is one of `patterns`, where "host:*" stands for that host on any port (the MCP SDK's
    rule for its allowed hosts and origins)."""
    return value in patterns or any(p.endswith(":*") and value.startswith(p[:-1]) for p in patterns)


class UiGuard:
    """Pure ASGI middleware of the web view: see the module docstring."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings | None) -> None:
        self.app = app
        on = security is not None and security.enable_dns_rebinding_protection
        self.hosts = list(security.allowed_hosts) if on and security else None
        self.origins = list(security.allowed_origins) if on and security else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.hosts is not None and not matches(host, self.hosts):
            return await PlainTextResponse("this host name is not served here", 421)(scope, receive, send)
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin is not None and not self._same_origin(origin, host):
            return await PlainTextResponse("cross-origin requests are refused", 403)(scope, receive, send)

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    out.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, secured)

    def _same_origin(self, origin: str, host: str) -> bool:
        if self.origins is not None and origin in self.origins:
            return True  # named in MEMORY_ALLOWED_ORIGINS (a reverse proxy may rewrite Host)
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc != host:
            return False
        return self.origins is None or matches(origin, self.origins)
