"""Serving the hub: one process that owns the store and serves it over HTTP (`serve --transport
streamable-http | sse`), with tokens, DNS-rebinding protection and a clean shutdown.

The hub binds its port before it opens the store, and advertises itself (and says it is ready)
only once the store is open: a hub that cannot listen or cannot open the store exits with a
status and one line saying what to do, and leaves every advert alone. On SIGTERM / Ctrl-C it
stops accepting connections, lets the calls in flight finish (up to GRACE_SECONDS) while their
streams stay open, then ends the streams, closes the store and withdraws its advert.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..errors import ConfigError, MemoryServerError, StoreLocked
from ..memory import InFlight, Runtime
from ..server import build_server
from .advert import advertise, discover, withdraw
from .app import hub_app
from .auth import allowed_hosts, allowed_origins, hub_middleware, is_loopback
from .tokens import Tokens

__all__ = ["Tokens", "check_bind", "serve_hub"]

log = logging.getLogger("mcp_memory_server")
#: Seconds the calls in flight get to finish after SIGTERM / Ctrl-C (the README promises 3).
GRACE_SECONDS = 3.0
# Exit statuses of `serve`: the store cannot be opened; the settings or the port are unusable.
STORE_FAILED, UNUSABLE = 1, 2


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


async def serve_hub(settings: Settings, host: str, port: int, tokens: Tokens, allow_remote: bool) -> int:
    """Serve the hub until SIGTERM / Ctrl-C. Returns the exit status: 0 after a clean stop,
    STORE_FAILED when the store cannot be opened, UNUSABLE when the port cannot be bound."""
    try:
        listener = _listen(host, port)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}. Another process (another hub?) "
              "uses that port: stop it, or choose another port with --port or MEMORY_PORT.", file=sys.stderr)
        return UNUSABLE
    runtime = Runtime(settings)
    security = TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                         allowed_hosts=allowed_hosts(settings, host),
                                         allowed_origins=allowed_origins(settings, host))
    mcp = build_server(runtime, host=host, port=port, security=security)
    requests = InFlight()
    app = hub_app(mcp, runtime, middleware=hub_middleware(tokens, allow_remote=allow_remote,
                                                          max_request_bytes=settings.limits.request_bytes,
                                                          sessions_per_token=settings.limits.sessions_per_token))
    if tokens:
        log.info("auth on: %d tokens (agents: %s)", len(tokens), ", ".join(tokens.agents()))
    # The SSE streams end when the hub says so (after the grace), not as soon as the signal arrives.
    AppStatus.enable_automatic_graceful_drain = False
    server = _HubServer(uvicorn.Config(_Counted(app, requests), host=host, port=port, log_level="warning",
                                       lifespan="on", timeout_graceful_shutdown=1), runtime, requests)
    status = 0

    async def announce() -> None:
        nonlocal status
        while not server.started:
            await anyio.sleep(0.05)
        try:
            await runtime.wait_ready()
        except MemoryServerError as exc:
            print(f"error: {await anyio.to_thread.run_sync(_cannot_open, settings, exc)}", file=sys.stderr,
                  flush=True)
            status, server.should_exit = STORE_FAILED, True
            return
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{listener.getsockname()[1]}"
        if settings.is_lite:
            advertise(settings.milvus_uri, f"{url}/mcp")
        print(_connect_help(url, settings), file=sys.stderr, flush=True)

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(announce)
            await server.serve(sockets=[listener])
            tasks.cancel_scope.cancel()
    finally:
        if settings.is_lite:
            withdraw(settings.milvus_uri)
    return status


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (uvicorn listens on it): a busy port is known before the store opens.
    Made with proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on the connections it accepts only then.
    Without it, a JSON answer written in two parts waited for the client's delayed ACK: ~40 ms per
    call on a reused connection (measured: stats 48 ms -> 3 ms)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _cannot_open(settings: Settings, exc: MemoryServerError) -> str:
    """Why the hub cannot serve, and what to do."""
    if isinstance(exc, StoreLocked):
        running = discover(settings)
        if running:
            return (f"a hub already serves {settings.milvus_uri} at {running}: connect clients to that hub, or "
                    "stop it before starting another")
        return (f"{settings.milvus_uri} is open in another process, probably a stdio server that an MCP client "
                "(Claude Desktop, VS Code, Cursor) started before the hub: quit that client, start the hub, then "
                "the client again (its stdio server then joins the hub)")
    return f"cannot open the memory store: {exc}"


class _Counted:
    """ASGI middleware counting the requests in flight that are not long-lived streams (GET)."""

    def __init__(self, app: ASGIApp, requests: InFlight) -> None:
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "GET":
            return await self.app(scope, receive, send)
        with self.requests:
            await self.app(scope, receive, send)


class _HubServer(uvicorn.Server):
    """uvicorn, with the hub's shutdown: calls in flight are answered before the streams end (uvicorn
    alone waits for every connection, and sse-starlette cuts every stream at once); and without
    re-raising SIGTERM / SIGINT afterwards, so that the hub still withdraws its advert and exits 0."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime, requests: InFlight) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.requests = requests

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections
        with anyio.move_on_after(GRACE_SECONDS) as grace:
            await self.runtime.drain()  # no new tool calls; those in flight finish
            await self.requests.idle()  # and their answers are sent
        if grace.cancelled_caught:
            log.warning("calls still running %.0f s after the signal are cut", GRACE_SECONDS)
        AppStatus.should_exit = True  # ends the SSE streams (sse-starlette), so their connections close
        await super().shutdown(sockets)

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
