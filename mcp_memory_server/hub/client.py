"""A client of a running memory hub: the `Memory` verbs, forwarded over MCP streamable HTTP.

A stdio server that joins a hub (see `advert.find_hub`) answers its client's tool calls through
this, and so do OpenAgents agents, so every process reads and writes the one memory the hub owns.
One MCP session per event loop is kept open (opening one costs ~300 ms on loopback, a call on an
open one ~20 ms); a call that finds the connection broken (the hub restarted) opens a new session
and is retried once, which is safe because every tool but `update` is idempotent (an update of
text or thread whose first attempt did reach the hub fails its retry with UnknownMemory: the old
id is gone, the new memory stored; tags, kind, metadata and expiry are idempotent). A connection
that breaks while a call waits (the hub died) fails the call at once, rather than when the wait
times out; a hub that does not answer at all fails it after `timeout` seconds (MEMORY_HUB_TIMEOUT). A tool
error is re-raised as the hub's own error class (`errors.from_wire`): Forbidden, InvalidInput,
RateLimited (with its `retry_after`) arrive as themselves; so does an error reading a resource.
The hub's progress notifications for a call are handed to the caller's `progress`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
from mcp.shared.exceptions import McpError
from mcp.types import CONNECTION_CLOSED, TextContent, TextResourceContents
from pydantic import BaseModel

from ..access import ANYONE, Caller
from ..errors import ERROR_META_KEY, HubError, HubUnavailable, RateLimited, from_wire
from ..exchange import ExportIn, ExportPage, Imported, ImportIn
from ..models import (
    ExpertProfile,
    ForgetIn,
    Forgotten,
    Latest,
    LatestIn,
    MemoryIn,
    Recalled,
    RecallIn,
    RegisterExpertIn,
    Remembered,
    RememberedMany,
    RememberManyIn,
    Routed,
    RouteIn,
    Stats,
    StoredMemory,
    Updated,
    UpdateIn,
)
from ..progress import Progress
from ..resources import memory_uri, recent_uri
from .advert import Source, remedy
from .link import Link, describe

ResultT = TypeVar("ResultT", bound=BaseModel)
RequestT = TypeVar("RequestT")
_PREFIX = "Error executing tool "
# What a broken connection looks like from the SDK's client (the hub died, restarted or dropped the session).
_BROKEN = (httpx.TransportError, anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream,
           ConnectionError)


class HubClient:
    """`Memory` backed by a hub at `url` (its streamable HTTP endpoint, e.g. http://127.0.0.1:8765/mcp).

    The caller argument of each verb is ignored: the hub knows the caller from `token`. `source`
    says where the URL came from, so that an error can say what to change.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0,
                 source: Source = "argument") -> None:
        self.url = url
        self.source = source
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._current: Link | None = None

    async def call(self, tool: str, arguments: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
        """Call a hub tool and return its structured result. Raises the hub's error class, or
        HubUnavailable when the hub cannot be reached or does not answer within `timeout` s."""
        try:
            result = await self._request(lambda link: link.call(tool, arguments, self._timeout, progress))
        except McpError as exc:  # the hub refused the request itself (tools answer with tool errors)
            raise self._unavailable(exc) from exc
        if result.isError:
            text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
            if text.startswith(_PREFIX):
                text = text.split(": ", 1)[-1]
            raise from_wire((result.meta or {}).get(ERROR_META_KEY), text or f"the hub refused {tool}")
        if result.structuredContent is None:
            raise HubError(f"the hub answered {tool} without structured content")
        return result.structuredContent

    async def read(self, uri: str) -> dict[str, Any]:
        """Read a hub resource (JSON) and return it. Raises the hub's error class, or HubUnavailable."""
        try:
            contents = await self._request(lambda link: link.read(uri))
        except McpError as exc:
            data = exc.error.data if isinstance(exc.error.data, dict) else {}
            raise from_wire(data.get(ERROR_META_KEY), exc.error.message) from exc
        text = next((c.text for c in contents if isinstance(c, TextResourceContents)), None)
        if text is None:
            raise HubError(f"the hub answered {uri} without text")
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    async def _request(self, send: Callable[[Link], Awaitable[RequestT]]) -> RequestT:
        """`send` on an open session, retried once on a new session if the connection broke. An
        error the hub answered (McpError, not a broken connection) is raised as it is."""
        for attempt in (1, 2):
            link = await self._link()
            try:
                return await send(link)
            except Exception as exc:
                if isinstance(exc, McpError) and not _broken(exc) and not _timed_out(exc):
                    raise  # the hub answered, with an error
                await self._drop(link)
                if attempt == 2 or not _broken(exc):
                    raise self._unavailable(exc) from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def aclose(self) -> None:
        """Close the open session, if any."""
        if self._current is not None:
            await self._drop(self._current)

    async def _link(self) -> Link:
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # first use, or used from another event loop
            self._lock, self._lock_loop, self._current = asyncio.Lock(), loop, None
        assert self._lock is not None
        async with self._lock:
            if self._current is None or self._current.dead or self._current.broken.is_set():
                link = Link(self.url, self._headers, self._timeout)
                try:
                    await link.ready()
                except Exception as exc:
                    await link.close()
                    raise self._unavailable(exc) from exc
                self._current = link
            return self._current

    async def _drop(self, link: Link) -> None:
        if self._current is link:
            self._current = None
        await link.close()

    def _unavailable(self, exc: BaseException) -> HubUnavailable | RateLimited:
        limited = _too_many(exc)
        if limited is not None:  # the hub is there: it refused this token another request or session
            return RateLimited(f"the memory hub at {self.url} refused the request (HTTP 429): {limited[0]}",
                               retry_after=limited[1])
        if "401 Unauthorized" in describe(exc):
            return HubUnavailable(
                f"the memory hub at {self.url} refused the token (HTTP 401): set MEMORY_HUB_TOKEN to a "
                "token listed in the hub's MEMORY_AUTH_FILE / MEMORY_AUTH_TOKENS"
            )
        if _timed_out(exc):
            return HubUnavailable(
                f"the memory hub at {self.url} did not answer within {self._timeout:g} s (MEMORY_HUB_TIMEOUT): "
                f"it may be overloaded or hung; {remedy(self.source, 'restart it')}"
            )
        start = "start it with `mcp-memory-server serve --transport streamable-http`"
        return HubUnavailable(
            f"the memory hub at {self.url} did not answer ({describe(exc)}); {remedy(self.source, start)}"
        )

    async def _typed(self, tool: str, result_type: type[ResultT], request: BaseModel | None = None,
                     progress: Progress | None = None) -> ResultT:
        arguments = request.model_dump(exclude_none=True, exclude_unset=True) if request is not None else {}
        return result_type.model_validate(await self.call(tool, arguments, progress))

    async def remember(self, request: MemoryIn, caller: Caller = ANYONE) -> Remembered:
        return await self._typed("remember", Remembered, request)

    async def remember_many(self, request: RememberManyIn, caller: Caller = ANYONE,
                            progress: Progress | None = None) -> RememberedMany:
        return await self._typed("remember_many", RememberedMany, request, progress)

    async def recall(self, request: RecallIn, caller: Caller = ANYONE) -> Recalled:
        return await self._typed("recall", Recalled, request)

    async def register_expert(self, request: RegisterExpertIn, caller: Caller = ANYONE) -> ExpertProfile:
        return await self._typed("register_expert", ExpertProfile, request)

    async def route(self, request: RouteIn, caller: Caller = ANYONE) -> Routed:
        return await self._typed("route", Routed, request)

    async def forget(self, request: ForgetIn, caller: Caller = ANYONE) -> Forgotten:
        return await self._typed("forget", Forgotten, request)

    async def update(self, request: UpdateIn, caller: Caller = ANYONE) -> Updated:
        return await self._typed("update", Updated, request)

    async def stats(self, caller: Caller = ANYONE) -> Stats:
        return await self._typed("stats", Stats)

    async def latest(self, request: LatestIn, caller: Caller = ANYONE) -> Latest:
        """The newest memories of one community, read as the hub's resource (the web view's richer
        filters are the hub's own)."""
        if request.communities is not None or request.community is None:
            raise HubError("a hub's newest memories are read one named community at a time")
        return Latest.model_validate(await self.read(recent_uri(request.community, request.limit)))

    async def memory(self, memory_id: str, caller: Caller = ANYONE) -> StoredMemory:
        return StoredMemory.model_validate(await self.read(memory_uri(memory_id)))

    async def export(self, request: ExportIn, caller: Caller = ANYONE,
                     progress: Progress | None = None) -> ExportPage:
        return await self._typed("export", ExportPage, request, progress)

    async def import_memories(self, request: ImportIn, caller: Caller = ANYONE,
                              progress: Progress | None = None) -> Imported:
        return await self._typed("import", Imported, request, progress)


def _too_many(exc: BaseException) -> tuple[str, float] | None:
    """(the hub's reason, seconds to wait) when `exc` carries an HTTP 429 from the hub's gate."""
    if isinstance(exc, BaseExceptionGroup):
        return next((found for e in exc.exceptions if (found := _too_many(e)) is not None), None)
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 429:
        try:
            reason = str(exc.response.json()["error"]["message"])
        except (httpx.ResponseNotRead, ValueError, KeyError, TypeError):
            reason = "too many requests or open sessions for this token"
        try:
            wait = float(exc.response.headers.get("retry-after", "1"))
        except ValueError:
            wait = 1.0
        return reason, wait
    cause = exc.__cause__ or exc.__context__
    return _too_many(cause) if cause is not None else None


def _timed_out(exc: BaseException) -> bool:
    """Whether `exc` says the hub did not answer in time."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_timed_out(e) for e in exc.exceptions)
    return isinstance(exc, httpx.TimeoutException) or (
        isinstance(exc, McpError) and exc.error.code == httpx.codes.REQUEST_TIMEOUT)


def _broken(exc: BaseException) -> bool:
    """Whether `exc` means the connection or session is gone (worth one reconnect), rather than a
    refused or malformed call."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_broken(e) for e in exc.exceptions)
    if _timed_out(exc):  # the hub may be alive but slow: a retry would only wait as long again
        return False
    if isinstance(exc, McpError):
        return exc.error.code == CONNECTION_CLOSED or "Session terminated" in exc.error.message
    return isinstance(exc, _BROKEN)
