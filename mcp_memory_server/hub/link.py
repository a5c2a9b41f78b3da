"""One open MCP session to the hub (`Link`), watched so that a call fails as soon as its
connection breaks: the SDK itself lets a call whose stream broke wait until it times out. Used by
`hub/client.py`, which decides what to retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from pydantic import AnyUrl

from ..progress import Progress

RequestT = TypeVar("RequestT")


class Link:
    """One open MCP session to the hub, owned by a background task (the SDK's transport contexts
    must be entered and left by the same task). `broken` is set when one of its HTTP requests or
    streams fails (the SDK itself lets a call whose stream broke wait until it times out)."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self.broken = asyncio.Event()
        self.failure: BaseException | None = None
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

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float,
                   progress: Progress | None = None) -> CallToolResult:
        """The session's call_tool, failing with ConnectionError as soon as the link breaks."""
        return await self._unless_broken(self.session.call_tool(
            tool, arguments, read_timeout_seconds=timedelta(seconds=timeout), progress_callback=progress))

    async def read(self, uri: str) -> list[Any]:
        """The contents of a resource, failing with ConnectionError as soon as the link breaks."""
        result = await self._unless_broken(self.session.read_resource(AnyUrl(uri)))  # the session's timeout
        return list(result.contents)

    async def _unless_broken(self, request: Awaitable[RequestT]) -> RequestT:
        """`request`, failing with ConnectionError as soon as the link breaks."""
        call = asyncio.ensure_future(request)
        broken = asyncio.ensure_future(self.broken.wait())
        try:
            await asyncio.wait({call, broken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            broken.cancel()
            if not call.done():
                call.cancel()
        if call.done() and not call.cancelled():
            return call.result()
        raise ConnectionError(f"the connection broke during the call ({describe(self.failure or EOFError())})")

    async def close(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
        except (Exception, asyncio.CancelledError):  # closing a broken link: nothing left to report
            self._task.cancel()

    def _break(self, exc: BaseException) -> None:
        if not self._stop.is_set() and not self.broken.is_set():
            self.failure = exc
            self.broken.set()

    async def _run(self, url: str, headers: dict[str, str], timeout: float) -> None:
        transport = _Watched(httpx.AsyncHTTPTransport(), self._break)
        try:
            async with (
                httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout), transport=transport) as http,
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


# What a connection to a hub that died looks like (a timeout is not one: the hub may only be slow).
_LOST = (httpx.NetworkError, httpx.RemoteProtocolError)


class _Watched(httpx.AsyncBaseTransport):
    """An httpx transport that reports a lost connection, in a request or in the middle of a
    response stream, to `on_lost`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, on_lost: Callable[[BaseException], None]) -> None:
        self._inner = inner
        self._on_lost = on_lost

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except _LOST as exc:
            self._on_lost(exc)
            raise
        return httpx.Response(response.status_code, headers=response.headers, request=request,
                              stream=_WatchedStream(response.stream, self._on_lost), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _WatchedStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, on_lost: Callable[[BaseException], None]) -> None:
        self._inner = inner
        self._on_lost = on_lost

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except _LOST as exc:
            self._on_lost(exc)
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


def describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
