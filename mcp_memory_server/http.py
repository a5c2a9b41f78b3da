"""The hub: one process that owns the store and serves it over streamable HTTP (`/mcp`) and SSE
(`/sse` + `/messages/`) at the same time, with a `/health` endpoint."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from mcp.server.fastmcp import FastMCP
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .runtime import Runtime


def hub_app(mcp: FastMCP, runtime: Runtime, *, middleware: Sequence[Middleware] = (),
            own: bool = True) -> Starlette:
    """An ASGI app serving `mcp` over both HTTP transports. The runtime opens with the app."""
    streamable = mcp.streamable_http_app()
    sse = mcp.sse_app()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with runtime.running(own=own), mcp.session_manager.run():
            yield

    async def health(request: Request) -> JSONResponse:
        report = await health_report(runtime)
        return JSONResponse(report, status_code=200 if report["ok"] else 503)

    routes: list[BaseRoute] = [*streamable.routes, *sse.routes, Route("/health", health, methods=["GET"])]
    return Starlette(routes=routes, middleware=list(middleware), lifespan=lifespan)


async def health_report(runtime: Runtime) -> dict[str, Any]:
    """Whether the store answers, and the state of the embedder and index."""
    report: dict[str, Any] = {"ok": False, "role": runtime.role}
    try:
        memory = await runtime.memory()
        stats = await memory.stats()
    except Exception as exc:  # health reports every failure, whatever its type
        report["error"] = f"{type(exc).__name__}: {exc}"
        return report
    report.update(ok=True, store=stats.store_uri, collection=stats.collection, memories=stats.total,
                  embedder=stats.embedder, embedder_loaded=stats.embedder_loaded, index=stats.index_type)
    return report
