"""A client of a running memory hub: the `Memory` verbs, forwarded over MCP streamable HTTP.

A stdio server that joins a hub (MEMORY_HUB_URL, or the hub advertised beside the database)
answers its client's tool calls through this, so every process reads and writes the one
memory the hub owns. One MCP session per event loop is kept open (opening one costs ~300 ms on
loopback, a call on an open one ~20 ms); a call that finds it broken (the hub restarted) opens
a new one and is retried once, which is safe because every tool is idempotent.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent
from pydantic import BaseModel

from .access import ANYONE, Caller
from .errors import HubUnavailable, MemoryServerError
from .models import (
    ExpertProfile,
    Forgotten,
    MemoryIn,
    Recalled,
    Remembered,
    RememberedMany,
    Routed,
    SearchMode,
    Stats,
)

ResultT = TypeVar("ResultT", bound=BaseModel)
_PREFIX = "Error executing tool "


class HubError(MemoryServerError):
    """The hub refused a call; the message is the hub's own."""


class HubClient:
    """`Memory` backed by a hub at `url` (its streamable HTTP endpoint, e.g. http://127.0.0.1:8765/mcp).

    The caller argument of each verb is ignored: the hub knows the caller from `token`.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._current: _Link | None = None

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call a hub tool and return its structured result. Raises HubError or HubUnavailable."""
        for attempt in (1, 2):
            link = await self._link()
            try:
                result = await link.session.call_tool(tool, arguments)
                break
            except Exception as exc:  # the session broke under us (hub restarted or died): reconnect once
                await self._drop(link)
                if attempt == 2:
                    raise self._unavailable(exc) from exc
        if result.isError:
            text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
            if text.startswith(_PREFIX):
                text = text.split(": ", 1)[-1]
            raise HubError(text or f"the hub refused {tool}")
        if result.structuredContent is None:
            raise HubError(f"the hub answered {tool} without structured content")
        return result.structuredContent

    async def aclose(self) -> None:
        """Close the open session, if any."""
        if self._current is not None:
            await self._drop(self._current)

    async def _link(self) -> _Link:
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # first use, or used from another event loop
            self._lock, self._lock_loop, self._current = asyncio.Lock(), loop, None
        assert self._lock is not None
        async with self._lock:
            if self._current is None or self._current.dead:
                link = _Link(self.url, self._headers, self._timeout)
                try:
                    await link.ready()
                except Exception as exc:
                    await link.close()
                    raise self._unavailable(exc) from exc
                self._current = link
            return self._current

    async def _drop(self, link: _Link) -> None:
        if self._current is link:
            self._current = None
        await link.close()

    def _unavailable(self, exc: BaseException) -> HubUnavailable:
        if "401 Unauthorized" in _describe(exc):
            return HubUnavailable(
                f"the memory hub at {self.url} refused the token (HTTP 401): set MEMORY_HUB_TOKEN to a "
                "token listed in the hub's MEMORY_AUTH_FILE / MEMORY_AUTH_TOKENS"
            )
        return HubUnavailable(
            f"the memory hub at {self.url} did not answer ({_describe(exc)}); start it with "
            "`mcp-memory-server serve --transport streamable-http`, or unset MEMORY_HUB_URL"
        )

    async def _typed(self, tool: str, result_type: type[ResultT], **arguments: Any) -> ResultT:
        args = {k: v for k, v in arguments.items() if v is not None}
        return result_type.model_validate(await self.call(tool, args))

    async def remember(self, item: MemoryIn, caller: Caller = ANYONE) -> Remembered:
        return await self._typed("remember", Remembered, **item.model_dump(exclude_none=True))

    async def remember_many(self, items: Sequence[MemoryIn], caller: Caller = ANYONE) -> RememberedMany:
        return await self._typed("remember_many", RememberedMany,
                                 memories=[i.model_dump(exclude_none=True) for i in items])

    async def recall(self, query: str, *, community: str | None = None, communities: Sequence[str] | None = None,
                     k: int | None = None, kinds: Sequence[str] | None = None, tags: Sequence[str] | None = None,
                     agent_id: str | None = None, since: str | None = None, mode: SearchMode = "hybrid",
                     caller: Caller = ANYONE) -> Recalled:
        return await self._typed("recall", Recalled, query=query, community=community,
                                 communities=_list(communities), k=k, kinds=_list(kinds), tags=_list(tags),
                                 agent_id=agent_id, since=since, mode=mode)

    async def register_expert(self, agent_id: str, description: str, skills: Sequence[str] = (),
                              community: str | None = None, caller: Caller = ANYONE) -> ExpertProfile:
        return await self._typed("register_expert", ExpertProfile, agent_id=agent_id, description=description,
                                 skills=list(skills), community=community)

    async def route(self, question: str, *, community: str | None = None, k: int | None = None,
                    caller: Caller = ANYONE) -> Routed:
        return await self._typed("route", Routed, question=question, community=community, k=k)

    async def forget(self, *, ids: Sequence[str] | None = None, community: str | None = None,
                     kinds: Sequence[str] | None = None, tags: Sequence[str] | None = None,
                     agent_id: str | None = None, caller: Caller = ANYONE) -> Forgotten:
        return await self._typed("forget", Forgotten, ids=_list(ids), community=community, kinds=_list(kinds),
                                 tags=_list(tags), agent_id=agent_id)

    async def stats(self, caller: Caller = ANYONE) -> Stats:
        return await self._typed("stats", Stats)


class _Link:
    """One open MCP session to the hub, owned by a background task (the SDK's transport contexts
    must be entered and left by the same task)."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._session: asyncio.Future[ClientSession] = loop.create_future()
        self._stop = asyncio.Event()
        self._task = loop.create_task(self._run(url, headers, timeout), name=f"memory-hub-link {url}")

    @property
    def dead(self) -> bool:
        return self._task.done()

    @property
    def session(self) -> ClientSession:
        return self._session.result()

    async def ready(self) -> None:
        await asyncio.shield(self._session)

    async def close(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
        except (Exception, asyncio.CancelledError):  # closing a broken link: nothing left to report
            self._task.cancel()

    async def _run(self, url: str, headers: dict[str, str], timeout: float) -> None:
        try:
            async with (
                httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout)) as http,
                streamable_http_client(url, http_client=http) as (read, write, _),
                ClientSession(read, write, read_timeout_seconds=timedelta(seconds=timeout)) as session,
            ):
                await session.initialize()
                self._session.set_result(session)
                await self._stop.wait()
        except BaseException as exc:  # reported to whoever waits for the session; the link is dead
            if not self._session.done():
                self._session.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))
            if not isinstance(exc, Exception):
                raise


def _list(values: Sequence[str] | None) -> list[str] | None:
    return list(values) if values is not None else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


# -- the hub advertises itself beside a Milvus Lite database --------------------------------


def advert_path(milvus_uri: str) -> Path:
    return Path(milvus_uri).expanduser().with_name(Path(milvus_uri).name + ".hub.json")


def advertise(milvus_uri: str, url: str) -> Path:
    """Record that this process serves the database at `url`, for stdio servers to find."""
    path = advert_path(milvus_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    return path


def withdraw(milvus_uri: str) -> None:
    path = advert_path(milvus_uri)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def discover(milvus_uri: str) -> str | None:
    """The URL of a live hub that owns the database, if one advertised itself."""
    try:
        advert = json.loads(advert_path(milvus_uri).read_text())
        pid, url = int(advert["pid"]), str(advert["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return url
