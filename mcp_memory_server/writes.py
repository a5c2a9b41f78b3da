"""Every change to the collection, one at a time: inserts (group-committed), re-indexes, deletes.

Group commit: a write that arrives while another is being committed waits for the lock and is then
committed together with every other waiting write: one existence check and one insert (on Milvus
Lite, one flush) for all of them. The check under the lock also catches the same content written
concurrently, so it is stored once. The community tallies (`tallies.py`) change under the same lock
as the rows they count.

A merged insert that Milvus refuses is retried one write at a time, so that a write Milvus
refuses fails alone and never takes other callers' writes down with it. When Milvus is down or
hung (`StoreUnavailable`) every write of the batch fails at once instead: one at a time, each
would wait its own MILVUS_TIMEOUT.

A memory that expired but is not purged yet does not hold its id: the same content written again
replaces its row. After each change the writer notes which communities changed; `tell_watchers`,
run beside the store by its owner (`memory.py`), tells the watchers (the MCP server's resource
notifications, `resources.py`) apart from the writes: a slow client's session never delays a write,
and changes that arrive while the watchers are busy are told together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from .errors import StoreUnavailable
from .models import IndexedMemory
from .store import MemoryStore
from .tallies import Tallies

log = logging.getLogger(__name__)

Watcher = Callable[[set[str]], Awaitable[None]]  # told the communities a change touched


@dataclass
class _PendingWrite:
    """One call's rows waiting for a group commit, and its outcome."""

    rows: list[IndexedMemory]
    inserted: set[str] = field(default_factory=set)
    error: Exception | None = None
    done: bool = False


class Writer:
    """Commits rows to `store`, merging concurrent callers' inserts into one."""

    def __init__(self, store: MemoryStore, stats_ttl: float | None = None) -> None:
        self.store = store
        self.lock = anyio.Lock()
        self.tallies = Tallies(store, self.lock, stats_ttl)
        self.watchers: list[Watcher] = []
        self._pending: list[_PendingWrite] = []
        self._touched: set[str] = set()
        self._wake = anyio.Event()

    async def commit(self, rows: list[IndexedMemory]) -> set[str]:
        """Insert the rows that are not stored yet; return the ids this call inserted."""
        if not rows:
            return set()
        write = _PendingWrite(rows)
        self._pending.append(write)
        async with self.lock:
            if not write.done:
                batch, self._pending = self._pending, []
                # Shielded: the batch holds other callers' writes, and the insert cannot be undone.
                with anyio.CancelScope(shield=True):
                    try:
                        await self._commit(batch)
                    finally:
                        for pending in batch:
                            pending.done = True
        if write.error is not None:
            raise write.error
        await self._changed(m.record.community for m in rows if m.record.id in write.inserted)
        return write.inserted

    async def _commit(self, batch: list[_PendingWrite]) -> None:
        try:
            await self._insert(batch)
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, StoreUnavailable):
                for write in batch:  # find the write Milvus refuses: it alone fails
                    await self._commit([write])
                return
            for write in batch:
                write.error, write.inserted = exc, set()

    async def _insert(self, batch: list[_PendingWrite]) -> None:
        ids = [m.record.id for write in batch for m in write.rows]
        communities = sorted({m.record.community for write in batch for m in write.rows})
        stored = await anyio.to_thread.run_sync(self.store.expiries, communities, ids)
        now = int(time.time() * 1000)
        claimed = {i for i, expires in stored.items() if expires == 0 or expires > now}
        fresh: list[IndexedMemory] = []
        for write in batch:
            write.inserted = set()
            for m in write.rows:
                if m.record.id not in claimed:
                    claimed.add(m.record.id)
                    write.inserted.add(m.record.id)
                    fresh.append(m)
        overwritten: dict[str, list[str]] = {}  # expired rows that the same content written again replaces
        for m in fresh:
            if m.record.id in stored:
                overwritten.setdefault(m.record.community, []).append(m.record.id)
        for community, expired in overwritten.items():
            await anyio.to_thread.run_sync(self.store.delete, community, expired)
            self.tallies.overwritten(community, expired)
        await anyio.to_thread.run_sync(self.store.insert, fresh)
        self.tallies.added(fresh)

    async def reindex(self, before: Sequence[IndexedMemory], after: Sequence[IndexedMemory]) -> None:
        """Replace memories' vectors (their thread context changed)."""
        if after:
            async with self.lock:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.store.upsert, after)
                    self.tallies.reindexed(before, after)
            await self._changed(m.record.community for m in after)

    async def delete(self, community: str, memories: Sequence[IndexedMemory], *, lapsed_at: int | None = None) -> int:
        """Delete `memories` of `community`; with `lapsed_at` (epoch ms), only those still expired
        then (the purge: one written again meanwhile is a new memory and stays). Returns how many."""
        if not memories:
            return 0
        async with self.lock:
            with anyio.CancelScope(shield=True):
                if lapsed_at is not None:
                    stored = await anyio.to_thread.run_sync(self.store.expiries, [community],
                                                            [m.record.id for m in memories])
                    memories = [m for m in memories if 0 < stored.get(m.record.id, 0) <= lapsed_at]
                await anyio.to_thread.run_sync(self.store.delete, community, [m.record.id for m in memories])
                self.tallies.removed(memories)
        if memories:
            await self._changed([community])
        return len(memories)

    async def _changed(self, communities: Iterable[str]) -> None:
        if self.watchers:
            self._touched.update(communities)
            if self._touched:
                self._wake.set()

    async def tell_watchers(self) -> None:
        """Forever: tell the watchers the communities changed since they were last told."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            touched, self._touched = self._touched, set()
            for watcher in list(self.watchers):
                try:
                    await watcher(touched)
                except Exception:  # a watcher's failure (a client gone) is never the writer's
                    log.warning("a change watcher failed", exc_info=True)
