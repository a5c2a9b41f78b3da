"""Command line: `mcp-memory-server serve | stats | export | import | doctor`.

stdout belongs to the MCP protocol in stdio mode: everything human goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence

import anyio

from . import __version__
from .config import Settings, load_settings
from .errors import ConfigError
from .memory import Runtime
from .server import build_server
from .transfer_files import export_command, import_command

log = logging.getLogger("mcp_memory_server")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-memory-server", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    export = sub.add_parser("export", help="write every memory (of the communities given) as JSON Lines")
    export.add_argument("--community", action="append", help="a community to export (repeat for several; "
                                                              "default: every community you may read)")
    export.add_argument("--out", help="the file to write (default: stdout)")
    export.add_argument("--vectors", action="store_true", help="include each memory's dense vector, so that an "
                                                               "import with the same embedder skips the embedding")
    export.add_argument("--include-expired", action="store_true", help="also export expired memories not purged yet")
    imports = sub.add_parser("import", help="store the memories of an export file, or of the MCP reference memory "
                                            "server's memory.json")
    imports.add_argument("file")
    imports.add_argument("--community", help="the community to store them in (a memory.json's default: "
                                             "MEMORY_DEFAULT_COMMUNITY; an export's: each memory's own)")
    imports.add_argument("--dry-run", action="store_true", help="check every line and store nothing")
    for command in (export, imports):
        command.add_argument("--hub-url", help="go through this hub (default: MEMORY_HUB_URL, else the hub "
                                               "advertised beside the database, else the store directly)")
    sub.add_parser("doctor", help="check settings, tokens, store, embedder and index; print a JSON report, "
                                  "exit 1 if something is wrong")

    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "mcp.server.lowlevel.server", "uvicorn.access", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        if args.transport == "stdio":
            anyio.run(_serve_stdio, settings, backend_options=loop_options(settings))
        else:
            # Imported here, not at the top: uvicorn and the auth stack cost a stdio server start-up
            # time it must not spend before answering `initialize`.
            from .hub.serve import Tokens, check_bind, serve_hub

            host = args.host or settings.memory_host
            port = settings.memory_port if args.port is None else args.port
            tokens: Tokens | None = check_bind(settings, host, args.allow_remote)
            if tokens is None:
                return 2
            status = anyio.run(serve_hub, settings, host, port, tokens, args.allow_remote,
                               backend_options=loop_options(settings))
            # The store is flushed and closed, the advert withdrawn: skip the interpreter's teardown of
            # torch & co., which takes seconds (measured 5-7 s on a busy host) after a SIGTERM.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        return 0
    if args.command == "stats":
        return anyio.run(_print_stats, settings)
    if args.command in ("export", "import"):
        if args.hub_url:
            settings = settings.model_copy(update={"memory_hub_url": args.hub_url})
        runtime = Runtime(settings)
        if args.command == "export":
            return anyio.run(export_command, runtime, args.community, args.out, args.vectors, args.include_expired)
        return anyio.run(import_command, runtime, args.file, args.community, args.dry_run)
    if args.command == "doctor":
        from .doctor import doctor  # the hub's auth stack, only for this command

        return anyio.run(doctor, settings)
    return 2


def loop_options(settings: Settings) -> dict[str, bool]:
    """anyio's options for a serving event loop: uvloop when it is installed and not turned off
    (MEMORY_UVLOOP). The loop a server runs on is in `/health` (`event_loop`)."""
    return {"use_uvloop": settings.memory_uvloop and importlib.util.find_spec("uvloop") is not None}


async def _serve_stdio(settings: Settings) -> None:
    runtime = Runtime(settings)
    mcp = build_server(runtime)
    async with runtime.running():
        await mcp.run_stdio_async()


async def _print_stats(settings: Settings) -> int:
    runtime = Runtime(settings)
    async with runtime.running(warm_up=False):  # stats embed nothing: loading the model took 24 s
        stats = await (await runtime.memory()).stats()
    print(json.dumps(stats.model_dump(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
