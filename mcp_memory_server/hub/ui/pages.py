"""The pages of the web view. Each one reads or writes through `MemoryService` with the visitor's
caller, exactly as an MCP tool call with the visitor's token would."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ...errors import Forbidden, InvalidInput
from ...models import (
    LATEST_MAX,
    ROUTE_K,
    CommunityStats,
    ExpertMatch,
    ForgetIn,
    LatestIn,
    RecallIn,
    RouteIn,
    StoredMemory,
)
from .sessions import COOKIE
from .web import NO_STORE, View, Web, base, set_cookie

ACTIVITY = 50  # memories on the Activity page (and in each of its updates, at most)
SNIPPET = 240  # characters of content shown in a list
WRITERS = 5  # recent writers shown per community
NEIGHBOURS = 2  # memories shown before and after a memory of a thread, on its page

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class SearchForm:
    """The Memories page's query string. Its filters apply to a search (`recall`) and to the
    newest memories (`latest`) alike: a filter is one field here, one line in `filters`, and one
    input in memories.html."""

    q: str = ""
    community: str = ""  # empty: every community the visitor may read
    mode: str = "hybrid"
    kind: str = ""
    tags: str = ""  # comma-separated
    agent: str = ""
    thread: str = ""
    since: str = ""  # an ISO-8601 date (the form's date input) or time
    k: str = "10"

    @classmethod
    def of(cls, params: QueryParams) -> SearchForm:
        return cls(**{f.name: str(params.get(f.name, f.default)).strip() for f in fields(cls)})

    def scope(self) -> dict[str, Any]:
        return {"community": self.community} if self.community else {"communities": ["*"]}

    def filters(self) -> dict[str, Any]:
        return {"kinds": [self.kind] if self.kind else None,
                "tags": [t.strip() for t in self.tags.split(",") if t.strip()] or None,
                "agent_id": self.agent or None,
                "thread": self.thread or None,
                "since": self.since or None}

    def count(self, most: int) -> int:
        if not self.k.isdigit() or not 1 <= int(self.k) <= most:
            raise InvalidInput(f"show must be a whole number from 1 to {most}, got {self.k!r}")
        return int(self.k)


@dataclass(frozen=True)
class CommunityView:
    stats: CommunityStats
    writers: list[str]  # the newest first
    last: str | None  # when its newest memory was stored


class Pages:
    def __init__(self, web: Web) -> None:
        self.web = web

    async def communities(self, request: Request) -> Response:
        view = await self.web.view(request)
        stats = await view.stats()
        shown = []
        for community in stats.communities:
            newest = (await view.service.latest(LatestIn(community=community.community, limit=LATEST_MAX),
                                                view.caller)).memories
            writers = list(dict.fromkeys(m.agent_id for m in newest))[:WRITERS]
            shown.append(CommunityView(community, writers, newest[0].created_at if newest else None))
        return self.web.render(view, "communities.html", page="communities", total=stats.total, communities=shown)

    async def memories(self, request: Request) -> Response:
        view = await self.web.view(request)
        form = SearchForm.of(request.query_params)
        stats = await view.stats()
        found: list[Any] = []
        error, status = None, 200
        try:
            if form.q:
                found = (await view.service.recall(_model(RecallIn, query=form.q, mode=form.mode,
                                                          k=form.count(view.service.settings.limits.k),
                                                          **form.scope(), **form.filters()), view.caller)).hits
            else:
                found = (await view.service.latest(_model(LatestIn, limit=form.count(LATEST_MAX), **form.scope(),
                                                          **form.filters()), view.caller)).memories
        except (InvalidInput, Forbidden) as exc:
            error, status = str(exc), 403 if isinstance(exc, Forbidden) else 400
        return self.web.render(view, "memories.html", status, page="memories", form=form, found=found, error=error,
                               searched=bool(form.q), communities=[c.community for c in stats.communities],
                               kinds=sorted({k for c in stats.communities for k in c.kinds}), here=_here(request))

    async def memory(self, request: Request) -> Response:
        view = await self.web.view(request)
        community, memory_id = request.path_params["community"], request.path_params["memory_id"]
        found = await view.service.memories([memory_id], community, view.caller)
        if not found:
            return self.web.render(view, "error.html", 404, message=f"community {community!r} holds no memory "
                                                                     f"{memory_id!r} (it may have been forgotten)")
        memory = found[0]
        before, after = await self._neighbours(view, memory)
        return self.web.render(view, "memory.html", page="memories", memory=memory, before=before, after=after,
                               here=_here(request))

    async def _neighbours(self, view: View, memory: StoredMemory) -> tuple[list[StoredMemory], list[StoredMemory]]:
        """The memories just before and just after `memory` in its thread (of the thread's newest
        LATEST_MAX: one bounded read), oldest first."""
        if not memory.thread:
            return [], []
        newest = (await view.service.latest(LatestIn(community=memory.community, thread=memory.thread,
                                                     limit=LATEST_MAX), view.caller)).memories
        ordered = sorted(newest, key=lambda m: datetime.fromisoformat(m.created_at.replace("Z", "+00:00")))
        at = next((i for i, m in enumerate(ordered) if m.id == memory.id), None)
        if at is None:
            return [], []
        return ordered[max(0, at - NEIGHBOURS):at], ordered[at + 1:at + 1 + NEIGHBOURS]

    async def confirm_forget(self, request: Request) -> Response:
        view = await self.web.view(request)
        params = request.query_params
        community, memory_id = params.get("community", ""), params.get("id", "")
        found = await view.service.memories([memory_id], community, view.caller)
        if not found:
            return self.web.render(view, "error.html", 404, message=f"community {community!r} holds no memory "
                                                                     f"{memory_id!r} (it may have been forgotten)")
        return self.web.render(view, "forget.html", page="memories", memory=found[0],
                               back=_next(view, params.get("next")))

    async def forget(self, request: Request) -> Response:
        view = await self.web.view(request)
        form = await request.form()
        if not view.session.csrf_ok(_text(form.get("csrf"))):
            return self.web.render(view, "error.html", 403, message="this form has expired: go back, reload the "
                                                                     "page and try again")
        done = await view.service.forget(ForgetIn(ids=[_text(form.get("id"))], community=_text(form.get("community"))),
                                         view.caller)
        view.session.flash = f"Forgot {done.deleted} {'memory' if done.deleted == 1 else 'memories'}."
        return RedirectResponse(_next(view, _text(form.get("next"))), status_code=303)

    async def experts(self, request: Request) -> Response:
        view = await self.web.view(request)
        params = request.query_params
        stats = await view.stats()
        names = [c.community for c in stats.communities]
        default = view.service.settings.memory_default_community
        community = params.get("community") or (default if default in names else names[0] if names else default)
        question = params.get("question", "").strip()
        experts = await view.service.experts(community, view.caller) if community in names else None
        chosen: list[tuple[ExpertMatch, list[StoredMemory]]] = []
        error = None
        if question and experts is not None:
            try:
                routed = await view.service.route(_model(RouteIn, question=question, community=community,
                                                         k=params.get("k") or ROUTE_K), view.caller)
            except InvalidInput as exc:
                error = str(exc)
            else:
                for match in routed.experts:
                    chosen.append((match, await view.service.memories(match.memory_ids, community, view.caller)))
        return self.web.render(view, "experts.html", 400 if error else 200, page="experts", communities=names,
                               community=community, experts=experts, question=question, chosen=chosen, error=error,
                               asked=bool(question), k=params.get("k") or ROUTE_K)

    async def activity(self, request: Request) -> Response:
        view = await self.web.view(request)
        newest = await view.service.latest(LatestIn(communities=["*"], limit=ACTIVITY), view.caller)
        return self.web.render(view, "activity.html", page="activity", memories=newest.memories, snippet=SNIPPET)

    async def activity_json(self, request: Request) -> Response:
        """The newest writes (stored at or after `after`, an ISO-8601 time, when given): what the
        Activity page polls."""
        view = await self.web.view(request)
        after = _moment(request.query_params.get("after"))
        newest = await view.service.latest(LatestIn(communities=["*"], limit=ACTIVITY), view.caller)
        rows = [{"id": m.id, "community": m.community, "kind": m.kind, "agent_id": m.agent_id,
                 "created_at": m.created_at, "snippet": _snip(m.content),
                 "url": f"{view.base}/memories/{m.community}/{m.id}"}
                for m in newest.memories if after is None or (_moment(m.created_at) or after) >= after]
        return JSONResponse({"memories": rows}, headers=NO_STORE)

    # -- signing in and out --------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        session = self.web.session(request)
        target = _safe_next(request, request.query_params.get("next"))
        if self.web.tokens(request) is None or (session is not None and session.caller is not None):
            return RedirectResponse(target, status_code=303)
        fresh = session is None
        session = session or self.web.sessions.start(None)
        return self.web.page(request, session, "login.html", fresh=fresh, next=target, error=None)

    async def login(self, request: Request) -> Response:
        tokens = self.web.tokens(request)
        form = await request.form()
        target = _safe_next(request, _text(form.get("next")))
        if tokens is None:
            return RedirectResponse(target, status_code=303)
        pending = self.web.session(request)
        if pending is None or not pending.csrf_ok(_text(form.get("csrf"))):
            fresh = self.web.sessions.start(None)
            return self.web.page(request, fresh, "login.html", 403, fresh=True, next=target,
                                 error="This sign-in form had expired. Please try again.")
        grant = tokens.lookup(_text(form.get("token")).strip())
        if grant is None:
            return self.web.page(request, pending, "login.html", 401, next=target,
                                 error="The hub does not know this token.")
        self.web.sessions.end(pending.id)
        session = self.web.sessions.start(grant.caller, grant.agent_id)
        response = RedirectResponse(target, status_code=303)
        set_cookie(response, request, session)
        return response

    async def logout(self, request: Request) -> Response:
        session = self.web.session(request)
        form = await request.form()
        if session is not None and session.csrf_ok(_text(form.get("csrf"))):
            self.web.sessions.end(session.id)
        response = RedirectResponse(f"{base(request)}/login", status_code=303)
        response.delete_cookie(COOKIE, path=f"{base(request)}/")
        return response


def _model(model: type[Model], **values: Any) -> Model:
    """`model` from form values; what pydantic refuses becomes InvalidInput, shown on the page."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"{where}: {first['msg']}") from exc


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _snip(text: str) -> str:
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def _moment(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _safe_next(request: Request, target: str | None) -> str:
    """`target` when it is a page of the web view, else its front page: never another site."""
    root = base(request)
    parts = urlsplit(target or "")
    if (target and target.startswith(f"{root}/") and not target.startswith(("//", "/\\"))
            and not parts.scheme and not parts.netloc):
        return target
    return f"{root}/"


def _next(view: View, target: str | None) -> str:
    return _safe_next(view.request, target)
