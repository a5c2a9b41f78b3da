"""Opening the memory: this process owns the store, or it joins a hub that does.

A hub always owns its store. A stdio server joins the hub `hub.advert.find_hub` names (the
MEMORY_HUB_URL it was given, or the hub advertised beside its Milvus Lite database), and owns
the store only when there is none; if opening the store fails because a hub took it meanwhile,
it joins that hub instead.

The memory is opened in the background so that a server answers `initialize` and `tools/list`
at once; the first tool call waits until it is ready. The embedding model then warms up in the
background too, so the first recall does not pay for importing torch unless it comes within the
first seconds. Tool calls run inside `Runtime.call`, so that a hub that stops lets the calls in
flight finish (`Runtime.drain`) before it closes the memory.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

import anyio
import anyio.to_thread

from .access import ANYONE, Caller
from .config import Settings
from .errors import MemoryServerError, StoreError, StoreUnavailable, UnknownCommunity
from .exchange import ExportIn, ExportPage, Imported, ImportIn
from .hub.advert import HubAddress, find_hub
from .hub.client import HubClient
from .hub.tokens import hub_token
from .models import (
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
from .progress import Progress

if TYPE_CHECKING:
    from .service import MemoryService

log = logging.getLogger(__name__)

# Python's collector of reference cycles now and then walks every object the process holds. Once
# the model and the libraries are loaded, that is hundreds of thousands of objects that never die:
# each full collection stopped the hub for ~0.3 s (two in 30 s of 16 clients recalling at once on
# this machine, the p99 of those runs 0.44 s against 0.20 s without one). After the warm-up, what
# is alive is collected once more and then frozen (`gc.freeze`): later collections walk only what
# was made after it. Plain reference counting still frees frozen objects that are not in a cycle.
_frozen = threading.Lock()
_heap_frozen = False


def freeze_heap() -> None:
    """Collect, then freeze every object alive now (see above); once per process."""
    global _heap_frozen
    with _frozen:
        if _heap_frozen:
            return
        _heap_frozen = True
    gc.collect()
    gc.freeze()
    log.debug("%d objects frozen", gc.get_freeze_count())

Role = Literal["owner", "client"]


class Memory(Protocol):
    """The verbs every memory backend offers: the local service, or a client of a remote hub."""

    async def remember(self, request: MemoryIn, caller: Caller = ANYONE) -> Remembered: ...
    async def remember_many(self, request: RememberManyIn, caller: Caller = ANYONE,
                            progress: Progress | None = None) -> RememberedMany: ...
    async def recall(self, request: RecallIn, caller: Caller = ANYONE) -> Recalled: ...
    async def register_expert(self, request: RegisterExpertIn, caller: Caller = ANYONE) -> ExpertProfile: ...
    async def route(self, request: RouteIn, caller: Caller = ANYONE) -> Routed: ...
    async def forget(self, request: ForgetIn, caller: Caller = ANYONE) -> Forgotten: ...
    async def update(self, request: UpdateIn, caller: Caller = ANYONE) -> Updated: ...
    async def stats(self, caller: Caller = ANYONE) -> Stats: ...
    async def latest(self, request: LatestIn, caller: Caller = ANYONE) -> Latest: ...
    async def memory(self, memory_id: str, caller: Caller = ANYONE) -> StoredMemory: ...
    async def export(self, request: ExportIn, caller: Caller = ANYONE,
                     progress: Progress | None = None) -> ExportPage: ...
    async def import_memories(self, request: ImportIn, caller: Caller = ANYONE,
                              progress: Progress | None = None) -> Imported: ...


class Runtime:
    """Opens, holds and closes this process's memory. Constructing it does no I/O."""

    def __init__(self, settings: Settings, *, ready_timeout: float = 120.0) -> None:
        self.settings = settings
        self.role: Role | None = None
        self.service: MemoryService | None = None
        self.hub: HubAddress | None = None  # the hub this process joined, if any
        self._memory: Memory | None = None
        self._error: MemoryServerError | None = None
        self._ready = anyio.Event()
        self._ready_timeout = ready_timeout
        self._calls = InFlight()
        self._closing = False

    @asynccontextmanager
    async def running(self, *, own: bool = False, warm_up: bool = True) -> AsyncIterator[Runtime]:
        """Open the memory in the background for the duration of the block.

        own=True (a hub): this process must own the store. own=False (stdio): join the hub
        `find_hub` names, else own the store. warm_up=False: do not load the embedding model ahead
        of the first embed (a command that embeds nothing, such as `stats`, must not pay for it).
        """
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._open, own, warm_up)
            try:
                yield self
            finally:
                tasks.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._close()

    async def memory(self) -> Memory:
        """The memory, once open. Raises the error that kept it from opening."""
        if self._memory is not None and self._error is None:  # open: no wait (every call asks)
            return self._memory
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

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        """One tool call in flight (see `drain`). Raises StoreUnavailable once the memory is closing."""
        if self._closing:
            raise StoreUnavailable("the memory hub is stopping: retry in a few seconds")
        with self._calls:
            yield

    async def drain(self) -> None:
        """Refuse new calls and wait until the calls in flight have finished (bound it with a timeout)."""
        self._closing = True
        await self._calls.idle()

    # -- internals -------------------------------------------------------------------------

    async def _open(self, own: bool, warm_up: bool = True) -> None:
        try:
            hub = None if own else await anyio.to_thread.run_sync(find_hub, self.settings)
            if hub:
                self._join(hub)
            else:
                try:
                    await self._own()
                except StoreError:
                    # A hub may have started between our look and our open, or be too busy to answer
                    # the probe in time: the store being taken says that someone owns it.
                    hub = None if own else find_hub(self.settings, verify=False)
                    if not hub:
                        raise
                    self._join(hub)
        except MemoryServerError as exc:
            # An owner's caller (a hub, doctor) reports the error itself; a stdio server has only this log.
            (log.debug if own else log.error)("memory unavailable: %s", exc)
            self._error = exc
        except Exception as exc:  # report any failure to the caller instead of dying silently
            log.exception("memory failed to open")
            self._error = StoreError(f"the memory failed to open: {type(exc).__name__}: {exc}")
        finally:
            self._ready.set()
        if self.service is None:
            return
        # Imported here, with the store (see _own): the owner of the store tells the resources'
        # subscribers what changed, warms up, and purges expired memories.
        from .expiry import purge_forever

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.service.writer.tell_watchers)
            if warm_up:
                try:
                    await self.service.warm_up()
                except MemoryServerError as exc:  # the first embed reports it to the caller again
                    log.error("embedding model failed to load: %s", exc)
                freeze_heap()
            await purge_forever(self.service, self.settings.memory_expiry_interval)

    def _join(self, hub: HubAddress) -> None:
        log.info("joining the memory hub at %s (from %s)", hub.url, hub.source)
        client = HubClient(hub.url, hub_token(self.settings), timeout=self.settings.memory_hub_timeout,
                           source=hub.source)
        # The hub applies *its* default community to calls that name none; this server's own
        # MEMORY_DEFAULT_COMMUNITY (the example client configs set it) must win when it is set.
        own = "memory_default_community" in self.settings.model_fields_set
        self._memory = JoinedHub(client, self.settings.memory_default_community) if own else client
        self.hub = hub
        self.role = "client"

    async def _own(self) -> None:
        # Imported here, not at the top, and in a worker thread: pymilvus, numpy & co. take ~0.6 s
        # to import, which held up the stdio server's `initialize` when imported on the event loop
        # (cold start 1.3 s, issue 10); stdio servers that join a hub never import them at all.
        await anyio.to_thread.run_sync(importlib.import_module, f"{__package__}.service")
        from .embeddings import CoalescingEmbedder, build_embedder
        from .service import MemoryService
        from .store import MemoryStore

        settings = self.settings
        # Concurrent clients' embeds share model calls (see embeddings.CoalescingEmbedder).
        embedder = CoalescingEmbedder(build_embedder(settings))
        store = MemoryStore(settings.milvus_uri, settings.memory_collection, embedder.dimension,
                            token=settings.milvus_token, index_type=settings.memory_index_type,
                            timeout=settings.milvus_timeout, narrow=settings.memory_lite_narrow)
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
        elif isinstance(self._memory, HubClient | JoinedHub):
            await self._memory.aclose()
        self._memory = None


NamedT = TypeVar("NamedT", MemoryIn, RecallIn, RegisterExpertIn, RouteIn, ForgetIn, UpdateIn, LatestIn)


class JoinedHub:
    """The hub's memory as a joined stdio server offers it: a call that names no community gets
    this server's default community, as it would if this server owned the store. Reads of a
    default community that holds nothing yet answer empty, as the hub does for its own default
    (a community named outright must exist)."""

    def __init__(self, hub: HubClient, default: str) -> None:
        self.hub = hub
        self.default = default

    async def remember(self, request: MemoryIn, caller: Caller = ANYONE) -> Remembered:
        return await self.hub.remember(self._named(request))

    async def remember_many(self, request: RememberManyIn, caller: Caller = ANYONE,
                            progress: Progress | None = None) -> RememberedMany:
        return await self.hub.remember_many(RememberManyIn(memories=[self._named(m) for m in request.memories]),
                                            progress=progress)

    async def recall(self, request: RecallIn, caller: Caller = ANYONE) -> Recalled:
        if request.community is not None or request.communities is not None:
            return await self.hub.recall(request)
        try:
            return await self.hub.recall(self._named(request))
        except UnknownCommunity:
            return Recalled(hits=[], mode=request.mode, communities=[self.default])

    async def register_expert(self, request: RegisterExpertIn, caller: Caller = ANYONE) -> ExpertProfile:
        return await self.hub.register_expert(self._named(request))

    async def route(self, request: RouteIn, caller: Caller = ANYONE) -> Routed:
        if request.community is not None:
            return await self.hub.route(request)
        try:
            return await self.hub.route(self._named(request))
        except UnknownCommunity:
            return Routed(experts=[], community=self.default)

    async def forget(self, request: ForgetIn, caller: Caller = ANYONE) -> Forgotten:
        return await self.hub.forget(self._named(request))

    async def update(self, request: UpdateIn, caller: Caller = ANYONE) -> Updated:
        return await self.hub.update(self._named(request))

    async def stats(self, caller: Caller = ANYONE) -> Stats:
        return await self.hub.stats()

    async def latest(self, request: LatestIn, caller: Caller = ANYONE) -> Latest:
        return await self.hub.latest(request if request.communities is not None else self._named(request))

    async def memory(self, memory_id: str, caller: Caller = ANYONE) -> StoredMemory:
        return await self.hub.memory(memory_id)

    async def export(self, request: ExportIn, caller: Caller = ANYONE,
                     progress: Progress | None = None) -> ExportPage:
        return await self.hub.export(request, progress=progress)

    async def import_memories(self, request: ImportIn, caller: Caller = ANYONE,
                              progress: Progress | None = None) -> Imported:
        return await self.hub.import_memories(request, progress=progress)

    async def aclose(self) -> None:
        await self.hub.aclose()

    def _named(self, request: NamedT) -> NamedT:
        return request if request.community is not None else request.model_copy(update={"community": self.default})


class InFlight:
    """How many operations are in flight; `idle()` waits until there are none. Used as `with counter:`."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: anyio.Event | None = None  # made only while someone waits (not per call)

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *exc: object) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def idle(self) -> None:
        while self.count:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()
