"""The hub: one process that owns the store and serves it over streamable HTTP (`/mcp`) and SSE
(`/sse` + `/messages/`) at the same time, with a `/health` endpoint and the web view at `/ui`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ..access import Caller
from ..errors import MemoryServerError
from ..memory import Runtime
from ..server import CALLER_STATE_KEY
from .advert import STORE_HEADER, store_identity
from .auth import ANONYMOUS_STATE_KEY, NO_OAUTH, UI_PATH
from .direct import DirectCalls
from .replies import JsonForThisCall, JsonReplies
from .ui import ui_app


class QuietDisconnects(logging.Filter):
    """Drops two records: the MCP SDK's ERROR "Error in standalone SSE writer" with a traceback of
    anyio.ClosedResourceError, which it logs each time a streamable-HTTP client disconnects (a
    harmless quirk of the SDK; eight in one short session), and its INFO "Terminating session: None",
    which stateless HTTP (MEMORY_STATELESS_HTTP) logs after every request. Every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        return not (message == "Error in standalone SSE writer" and isinstance(error, anyio.ClosedResourceError)
                    or message == "Terminating session: None")


_QUIET_DISCONNECTS = QuietDisconnects()


def hub_app(mcp: FastMCP, runtime: Runtime, *, middleware: Sequence[Middleware] = (),
            own: bool = True) -> Starlette:
    """An ASGI app serving `mcp` over both HTTP transports, and the web view (hub/ui/) with the same
    Host / Origin rules. The runtime opens with the app."""
    logging.getLogger("mcp.server.streamable_http").addFilter(_QUIET_DISCONNECTS)  # once: the same filter
    streamable = mcp.streamable_http_app()
    # Quick calls answered as JSON by the transport, per request (hub/replies.py).
    mcp.session_manager.json_response = JsonForThisCall()  # type: ignore[assignment]
    sse = mcp.sse_app()
    identity = store_identity(runtime.settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with runtime.running(own=own), mcp.session_manager.run():
            yield

    hosts = TransportSecurityMiddleware(mcp.settings.transport_security)

    async def health(request: Request) -> Response:
        refused = await hosts.validate_request(request)  # DNS rebinding: the same Host check as /mcp
        if refused is not None:
            return refused
        report = await health_report(runtime)
        status = 200 if report["ok"] else 503
        state = request.scope.get("state") or {}
        caller = state.get(CALLER_STATE_KEY)
        if state.get(ANONYMOUS_STATE_KEY) or (isinstance(caller, Caller) and not caller.is_admin):
            report = {"ok": report["ok"]}  # the store's path, size and state only for admins
        # Which store this hub serves, for a joiner to check an advert against (advert.serves).
        return JSONResponse(report, status_code=status, headers={STORE_HEADER: identity})

    routes: list[BaseRoute] = [*streamable.routes, *sse.routes, Route("/health", health, methods=["GET"]),
                               Mount(UI_PATH, ui_app(runtime, mcp.settings.transport_security)),
                               Route("/.well-known/{rest:path}", no_oauth)]
    # JsonReplies innermost: it reads the JSON-RPC message the gate (hub/auth.py) parsed.
    # Quick tool calls of a known session answered without the SDK's session machinery (hub/direct.py).
    direct = DirectCalls(mcp, hosts)
    return Starlette(routes=routes, middleware=[*middleware, Middleware(JsonReplies, direct=direct)], lifespan=lifespan)


async def no_oauth(request: Request) -> JSONResponse:
    """Every /.well-known/ path, public: 404. This hub publishes no OAuth metadata (RFC 9728
    protected resource metadata, RFC 8414 authorization server metadata) because it does not use
    OAuth: an MCP client finds no authorization server to send its user to, and needs the bearer
    token configured as a header instead (see auth.NO_OAUTH, in the 401 that sent it here)."""
    return JSONResponse({"error": "not_found", "error_description": NO_OAUTH}, status_code=404)


async def health_report(runtime: Runtime, wait: float = 5.0) -> dict[str, Any]:
    """Whether the store answers, and the state of the embedder and index. Cheap (no scan):
    safe to poll. `ok` is False while the memory is still opening or when Milvus does not answer."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    report: dict[str, Any] = {"ok": False, "role": runtime.role, "event_loop": loop}
    try:
        with anyio.fail_after(wait):
            await runtime.wait_ready()
    except TimeoutError:
        report["error"] = "the memory is still opening"
        return report
    except MemoryServerError as exc:
        report["error"] = str(exc)
        return report
    service = runtime.service
    if service is None:  # this process joined another hub: that hub's /health has the details
        report.update(ok=True, hub=runtime.hub.url if runtime.hub else None)
        return report
    embedder = service.embedder
    report["embedder"] = {"name": embedder.name, "dimension": embedder.dimension,
                          "loaded": bool(getattr(embedder, "loaded", True))}
    model = getattr(embedder, "inner", embedder)  # a CoalescingEmbedder's model
    if getattr(model, "loaded", False) and hasattr(model, "direct"):  # the local model (embeddings._direct_forward)
        report["embedder"]["model_calls"] = ("its own forward pass" if model.direct
                                             else "SentenceTransformer.encode (why: the log at start)")
    store = service.store
    started = time.perf_counter()
    try:
        state = await anyio.to_thread.run_sync(store.health)
    except MemoryServerError as exc:
        report["store"] = {"uri": store.uri, "collection": store.collection, "reachable": False, "error": str(exc)}
        return report
    report["store"] = {"uri": store.uri, "collection": store.collection, "reachable": True,
                       "latency_ms": round(1000 * (time.perf_counter() - started), 2),
                       "rows": state["rows"], "load_state": state["load_state"]}
    if (narrowing := store.narrowing()) is not None:
        report["store"]["keyword_search_reads"] = narrowing
    if (checks := store.row_checks()) is not None:
        report["store"]["search_row_checks"] = checks
    if (path := store.search_path()) is not None:
        report["store"]["searches_reach"] = path
    report["index"] = state["index"]
    report["ok"] = True
    return report
