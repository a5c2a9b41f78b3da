"""Who holds the memory in this process: the store itself (owner), or a hub it joins (client).

The runtime is opened in the background so that a server answers `initialize` and
`tools/list` at once; the first tool call waits until the memory is ready. The embedding model
then warms up in the background too, so the first recall does not pay for importing torch
unless it comes within the first seconds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal

import anyio

from .access import Memory
from .config import Settings
from .errors import MemoryServerError, StoreError
from .hub import HubClient, discover

if TYPE_CHECKING:
    from .service import MemoryService

log = logging.getLogger(__name__)

Role = Literal["owner", "client"]


class Runtime:
    """Opens, holds and closes this process's memory. Constructing it does no I/O."""

    def __init__(self, settings: Settings, *, ready_timeout: float = 120.0) -> None:
        self.settings = settings
        self.role: Role | None = None
        self.service: MemoryService | None = None
        self._memory: Memory | None = None
        self._error: MemoryServerError | None = None
        self._ready = anyio.Event()
        self._ready_timeout = ready_timeout

    @asynccontextmanager
    async def running(self, *, own: bool = False) -> AsyncIterator[Runtime]:
        """Open the memory in the background for the duration of the block.

        own=True (a hub): this process must own the store. own=False (stdio): join the hub named
        by MEMORY_HUB_URL or advertised beside the database, else own the store.
        """
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._open, own)
            try:
                yield self
            finally:
                tasks.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._close()

    async def memory(self) -> Memory:
        """The memory, once open. Raises the error that kept it from opening."""
        with anyio.move_on_after(self._ready_timeout):
            await self._ready.wait()
        if self._error is not None:
            raise self._error
        if self._memory is None:
            raise StoreError(f"the memory store did not open within {self._ready_timeout:.0f} s")
        return self._memory

    async def wait_ready(self) -> None:
        """Wait until the memory is open; raise if it could not be."""
        await self.memory()

    # -- internals -------------------------------------------------------------------------

    async def _open(self, own: bool) -> None:
        try:
            hub_url = None if own else self.settings.memory_hub_url or self._advertised_hub()
            if hub_url:
                self._join(hub_url)
            else:
                try:
                    await self._own()
                except StoreError:
                    # A hub may have started between our look and our open.
                    hub_url = None if own else self._advertised_hub()
                    if not hub_url:
                        raise
                    self._join(hub_url)
        except MemoryServerError as exc:
            log.error("memory unavailable: %s", exc)
            self._error = exc
        except Exception as exc:  # report any failure to the caller instead of dying silently
            log.exception("memory failed to open")
            self._error = StoreError(f"the memory failed to open: {type(exc).__name__}: {exc}")
        finally:
            self._ready.set()
        if self.service is not None:
            try:
                await self.service.warm_up()
            except MemoryServerError as exc:  # the first embed reports it to the caller again
                log.error("embedding model failed to load: %s", exc)

    def _advertised_hub(self) -> str | None:
        return discover(self.settings.milvus_uri) if self.settings.is_lite else None

    def _join(self, url: str) -> None:
        log.info("joining the memory hub at %s", url)
        self._memory = HubClient(url, self.settings.memory_hub_token)
        self.role = "client"

    async def _own(self) -> None:
        # Imported here, not at the top: pymilvus alone takes ~0.6 s to import, and a server must
        # answer `initialize` before that (stdio clients that join a hub never need it).
        from .coalesce import CoalescingEmbedder
        from .embeddings import build_embedder
        from .service import MemoryService
        from .store import Fusion, MemoryStore

        settings = self.settings
        # Concurrent clients' embeds share model calls (see coalesce.py).
        embedder = CoalescingEmbedder(build_embedder(settings))
        store = MemoryStore(settings.milvus_uri, settings.memory_collection, embedder.dimension,
                            token=settings.milvus_token, index_type=settings.memory_index_type,
                            fusion=Fusion(), timeout=settings.milvus_timeout)
        service = MemoryService(settings, store, embedder)
        await service.open()
        log.info("memory open: %s (collection %s)", settings.milvus_uri, settings.memory_collection)
        self.service = service
        self._memory = service
        self.role = "owner"

    async def _close(self) -> None:
        if self.service is not None:
            await self.service.close()
            self.service = None
        elif isinstance(self._memory, HubClient):
            await self._memory.aclose()
        self._memory = None
