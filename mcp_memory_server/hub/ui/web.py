"""What every page of the web view does before it reads anything (who is looking, whether the
memory is open) and how it answers (templates, the session cookie)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ...access import ANYONE, Caller
from ...errors import StoreError
from ...memory import Runtime
from ...models import Stats
from ..auth import TOKENS_STATE_KEY
from ..tokens import Tokens
from .sessions import COOKIE, Session, Sessions

if TYPE_CHECKING:  # the hub imports this before it opens the store: pymilvus alone takes ~0.6 s to import
    from ...service import MemoryService

HERE = Path(__file__).parent
NO_STORE = {"cache-control": "no-store"}


class LoginRequired(Exception):
    """The page needs a signed-in visitor: pages redirect to the login form, JSON answers 401."""


@dataclass
class View:
    """One request of a visitor with a session: what a page handler works with."""

    request: Request
    session: Session
    service: MemoryService
    fresh: bool  # this request started the session: its cookie must be set
    started: float = field(default_factory=time.perf_counter)
    stats_s: float | None = None  # time spent in `stats`, shown in the Server-Timing header

    @property
    def caller(self) -> Caller:
        return self.session.caller or ANYONE

    async def stats(self) -> Stats:
        """The visitor's communities with their counts (timed: most pages' largest cost until
        `stats` is cheap)."""
        started = time.perf_counter()
        try:
            return await self.service.stats(self.caller)
        finally:
            self.stats_s = time.perf_counter() - started

    def server_timing(self) -> str:
        # in microseconds' precision: a `stats` of cached tallies takes well under 0.1 ms
        parts = [f"stats;dur={1000 * self.stats_s:.3f}"] if self.stats_s is not None else []
        return ", ".join([*parts, f"page;dur={1000 * (time.perf_counter() - self.started):.3f}"])

    @property
    def base(self) -> str:
        return base(self.request)


class Web:
    """What the pages share: the hub's runtime, the sessions, the templates."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.sessions = Sessions()
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.filters["ago"] = ago

    def tokens(self, request: Request) -> Tokens | None:
        """The hub's tokens when it has any (the gate in hub/auth.py hands them over), else None."""
        tokens = (request.scope.get("state") or {}).get(TOKENS_STATE_KEY)
        return tokens if isinstance(tokens, Tokens) and tokens else None

    def session(self, request: Request) -> Session | None:
        return self.sessions.find(request.cookies.get(COOKIE))

    async def view(self, request: Request) -> View:
        """The visitor's session (without tokens, one is started for anyone who comes) and the
        open memory. Raises LoginRequired, or the error that keeps the memory from opening."""
        session, fresh = self.session(request), False
        if session is None or session.caller is None:
            if self.tokens(request) is not None:
                raise LoginRequired
            session, fresh = self.sessions.start(ANYONE), True
        await self.runtime.wait_ready()
        service = self.runtime.service
        if service is None:  # cannot happen in a hub, which always owns its store
            raise StoreError("this process joined another hub: open that hub's /ui")
        return View(request, session, service, fresh)

    def render(self, view: View, template: str, status: int = 200, **context: Any) -> Response:
        """A page for the visitor of `view`."""
        response = self.page(view.request, view.session, template, status, fresh=view.fresh, **context)
        response.headers["server-timing"] = view.server_timing()
        return response

    def page(self, request: Request, session: Session, template: str, status: int = 200, *, fresh: bool = False,
             **context: Any) -> Response:
        """`template` rendered for `session`; `fresh`: set the session's cookie."""
        context.update(base=base(request), who=session.who, csrf=session.csrf,
                       auth=self.tokens(request) is not None, flash=session.take_flash())
        response = self.templates.TemplateResponse(request, template, context, status_code=status, headers=NO_STORE)
        if fresh:
            set_cookie(response, request, session)
        return response


def base(request: Request) -> str:
    """Where the web view is mounted ("/ui"): every link is built from it, never from the Host."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def set_cookie(response: Response, request: Request, session: Session) -> None:
    response.set_cookie(COOKIE, session.id, path=f"{base(request)}/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def ago(iso: str, now: datetime | None = None) -> str:
    """"3 min ago" for an ISO-8601 time (a template filter)."""
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    seconds = ((now or datetime.now(UTC)) - then).total_seconds()
    if seconds < 10:
        return "just now"
    for size, unit in ((86400 * 30, None), (86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size:
            return then.strftime("%Y-%m-%d") if unit is None else f"{int(seconds // size)} {unit} ago"
    return "just now"


def here(request: Request) -> str:
    """This page's path and query, to come back to after signing in."""
    query = request.url.query
    return quote(request.url.path + (f"?{query}" if query else ""), safe="")
