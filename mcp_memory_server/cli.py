"""Command line: `mcp-memory-server serve | stats | doctor`.

stdout belongs to the MCP protocol in stdio mode: everything human goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence

import anyio
import uvicorn
from starlette.middleware import Middleware

from .auth import AuthMiddleware, Tokens, allowed_hosts, allowed_origins, is_loopback
from .config import Settings
from .doctor import doctor
from .errors import ConfigError
from .runtime import Runtime
from .server import build_server

log = logging.getLogger("mcp_memory_server")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-memory-server", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the memory over MCP")
    serve.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default="stdio",
                       help="stdio: one client (joins a running hub if there is one); sse / streamable-http: "
                            "the shared hub, serving both /mcp and /sse")
    serve.add_argument("--host", default=None, help="address to bind (default MEMORY_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default MEMORY_PORT, 8765)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="let a hub without tokens (MEMORY_AUTH_FILE / MEMORY_AUTH_TOKENS) bind a non-loopback "
                            "address and serve non-loopback clients: anyone who can reach it may read and write")

    sub.add_parser("stats", help="print counts per community and kind as JSON")
    sub.add_parser("doctor", help="check settings, tokens, store, embedder and index; print a JSON report, "
                                  "exit 1 if something is wrong")

    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "mcp.server.lowlevel.server", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings()
    if args.command == "serve":
        if args.transport == "stdio":
            anyio.run(_serve_stdio, settings)
        else:
            host = args.host or settings.memory_host
            port = settings.memory_port if args.port is None else args.port
            try:
                tokens = Tokens.from_settings(settings)
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            if not tokens and not is_loopback(host) and not args.allow_remote:
                print(f"error: refusing to bind {host}: no tokens are configured, so anyone who can reach the hub "
                      "could read and write every community. Configure MEMORY_AUTH_FILE (see README, Security "
                      "model) or pass --allow-remote if the network is trusted.", file=sys.stderr)
                return 2
            anyio.run(_serve_hub, settings, host, port, tokens, args.allow_remote)
        return 0
    if args.command == "stats":
        return anyio.run(_print_stats, settings)
    if args.command == "doctor":
        return anyio.run(doctor, settings)
    return 2


async def _serve_stdio(settings: Settings) -> None:
    runtime = Runtime(settings)
    mcp = build_server(runtime)
    async with runtime.running():
        await mcp.run_stdio_async()


async def _serve_hub(settings: Settings, host: str, port: int, tokens: Tokens, allow_remote: bool) -> None:
    from .http import hub_app
    from .hub import advertise, withdraw

    runtime = Runtime(settings)
    mcp = build_server(runtime, host=host, port=port, allowed_hosts=allowed_hosts(settings, host),
                       allowed_origins=allowed_origins(settings, host))
    app = hub_app(mcp, runtime, middleware=[Middleware(AuthMiddleware, tokens=tokens, allow_remote=allow_remote,
                                                       max_request_bytes=settings.limits.request_bytes)])
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
    return (
        f"\nShared memory hub ready.\n"
        f"  store:            {settings.milvus_uri} (collection {settings.memory_collection})\n"
        f"  streamable HTTP:  {url}/mcp\n"
        f"  SSE:              {url}/sse\n"
        f"  health:           {url}/health\n"
        f"Connect an MCP client over HTTP with {{\"url\": \"{url}/mcp\"}}, or launch\n"
        f"  mcp-memory-server serve --transport stdio   (with MEMORY_HUB_URL={url}/mcp)\n"
        f"from Claude Desktop / VS Code / Cursor; see examples/ for ready configs. Ctrl-C stops.\n"
    )


async def _print_stats(settings: Settings) -> int:
    runtime = Runtime(settings)
    async with runtime.running():
        stats = await (await runtime.memory()).stats()
    print(json.dumps(stats.model_dump(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
