"""Serving the hub: one process that owns the store and serves it over HTTP (`serve --transport
streamable-http | sse`), with tokens, DNS-rebinding protection and a clean shutdown."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings

from ..config import Settings
from ..errors import ConfigError
from ..memory import Runtime
from ..server import build_server
from .advert import advertise, withdraw
from .app import hub_app
from .auth import allowed_hosts, allowed_origins, hub_middleware, is_loopback
from .tokens import Tokens

__all__ = ["Tokens", "check_bind", "serve_hub"]

log = logging.getLogger("mcp_memory_server")


def check_bind(settings: Settings, host: str, allow_remote: bool) -> Tokens | None:
    """The configured tokens, or None (after saying why on stderr) when the hub must not start: a
    malformed token file, or a non-loopback address with no tokens and no --allow-remote."""
    try:
        tokens = Tokens.from_settings(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if not tokens and not is_loopback(host) and not allow_remote:
        print(f"error: refusing to bind {host}: no tokens are configured, so anyone who can reach the hub "
              "could read and write every community. Configure MEMORY_AUTH_FILE (see README, Security "
              "model) or pass --allow-remote if the network is trusted.", file=sys.stderr)
        return None
    return tokens


async def serve_hub(settings: Settings, host: str, port: int, tokens: Tokens, allow_remote: bool) -> None:
    runtime = Runtime(settings)
    security = TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                         allowed_hosts=allowed_hosts(settings, host),
                                         allowed_origins=allowed_origins(settings, host))
    mcp = build_server(runtime, host=host, port=port, security=security)
    app = hub_app(mcp, runtime, middleware=hub_middleware(tokens, allow_remote=allow_remote,
                                                          max_request_bytes=settings.limits.request_bytes,
                                                          sessions_per_token=settings.limits.sessions_per_token))
    if tokens:
        log.info("auth on: %d tokens (agents: %s)", len(tokens), ", ".join(tokens.agents()))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=3)
    server = _HubServer(config)

    async def announce() -> None:
        while not server.started:
            await anyio.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{bound}"
        if settings.is_lite:
            advertise(settings.milvus_uri, f"{url}/mcp")
        print(_connect_help(url, settings), file=sys.stderr, flush=True)

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(announce)
            await server.serve()
            tasks.cancel_scope.cancel()
    finally:
        if settings.is_lite:
            withdraw(settings.milvus_uri)


class _HubServer(uvicorn.Server):
    """uvicorn, minus re-raising SIGTERM / SIGINT after its graceful shutdown: the hub then still
    withdraws its advert and exits with status 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def _connect_help(url: str, settings: Settings) -> str:
    command = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "mcp-memory-server" else "mcp-memory-server"
    return (
        f"\nShared memory hub ready.\n"
        f"  store:            {settings.milvus_uri} (collection {settings.memory_collection})\n"
        f"  streamable HTTP:  {url}/mcp\n"
        f"  SSE:              {url}/sse\n"
        f"  health:           {url}/health\n"
        f"  web view:         {url}/ui/\n"
        f"Connect an MCP client over HTTP with {{\"url\": \"{url}/mcp\"}}, or have Claude Desktop / VS Code /\n"
        f"Cursor launch a stdio server that joins this hub:\n"
        f"  {{\"command\": \"{command}\", \"args\": [\"serve\", \"--transport\", \"stdio\"],\n"
        f"   \"env\": {{\"MEMORY_HUB_URL\": \"{url}/mcp\"}}}}\n"
        f"Ready-made configs: examples/clients/. Ctrl-C stops.\n"
    )
