"""The web view's app, mounted by the hub at /ui: its routes, its guard, and how a page that
cannot be shown answers (the login form, or the error)."""

from __future__ import annotations

from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...errors import Forbidden, InvalidInput, MemoryServerError
from ...memory import Runtime
from .guard import UiGuard
from .pages import Pages
from .web import HERE, NO_STORE, LoginRequired, Web, base, here


def ui_app(runtime: Runtime, security: TransportSecuritySettings | None) -> Starlette:
    """The web view, for the hub to mount at /ui. `security`: the Host / Origin rules of the hub's
    MCP endpoints, which the web view applies too (guard.py)."""
    web = Web(runtime)
    pages = Pages(web)
    routes = [
        Route("/", pages.communities, methods=["GET"]),
        Route("/memories", pages.memories, methods=["GET"]),
        Route("/memories/{community}/{memory_id}", pages.memory, methods=["GET"]),
        Route("/forget", pages.confirm_forget, methods=["GET"]),
        Route("/forget", pages.forget, methods=["POST"]),
        Route("/experts", pages.experts, methods=["GET"]),
        Route("/activity", pages.activity, methods=["GET"]),
        Route("/api/activity", pages.activity_json, methods=["GET"]),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def login_required(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(f"{base(request)}/api/"):
            return JSONResponse({"error": "sign in first"}, status_code=401, headers=NO_STORE)
        return RedirectResponse(f"{base(request)}/login?next={here(request)}", status_code=303)

    async def failed(request: Request, exc: Exception) -> Response:
        status = 403 if isinstance(exc, Forbidden) else 400 if isinstance(exc, InvalidInput) else 503
        if request.url.path.startswith(f"{base(request)}/api/"):
            return JSONResponse({"error": str(exc)}, status_code=status, headers=NO_STORE)
        return web.templates.TemplateResponse(request, "error.html", {"base": base(request), "message": str(exc)},
                                              status_code=status, headers=NO_STORE)

    return Starlette(routes=routes, middleware=[Middleware(UiGuard, security=security)],
                     exception_handlers={LoginRequired: login_required, MemoryServerError: failed})
