"""Group commit: concurrent writes share one existence check and one insert.

A write that arrives while another is being committed waits for the lock and is then committed
together with every other waiting write: one existence check and one insert (on Milvus Lite, one
flush) for all of them. The check under the lock also catches the same content written
concurrently, so it is stored once.

A merged insert that Milvus refuses is retried one write at a time, so that a write Milvus
refuses fails alone and never takes other callers' writes down with it. When Milvus is down or
hung (`StoreUnavailable`) every write of the batch fails at once instead: one at a time, each
would wait its own MILVUS_TIMEOUT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from .errors import StoreUnavailable
from .models import MemoryRecord
from .store import MemoryStore

Row = tuple[MemoryRecord, list[float]]


@dataclass
class _PendingWrite:
    """One call's rows waiting for a group commit, and its outcome."""

    rows: list[tuple[MemoryRecord, list[float]]]
    inserted: set[str] = field(default_factory=set)
    error: Exception | None = None
    done: bool = False


class GroupCommit:
    """Commits rows to `store`, merging concurrent callers' rows into one insert."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._lock = anyio.Lock()
        self._pending: list[_PendingWrite] = []

    async def commit(self, rows: list[Row]) -> set[str]:
        """Insert the rows that are not stored yet; return the ids this call inserted."""
        if not rows:
            return set()
        write = _PendingWrite(rows)
        self._pending.append(write)
        async with self._lock:
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
        ids = [record.id for write in batch for record, _ in write.rows]
        communities = sorted({record.community for write in batch for record, _ in write.rows})
        claimed = await anyio.to_thread.run_sync(self.store.existing_ids, communities, ids)
        records: list[MemoryRecord] = []
        vectors: list[list[float]] = []
        for write in batch:
            write.inserted = set()
            for record, vector in write.rows:
                if record.id not in claimed:
                    claimed.add(record.id)
                    write.inserted.add(record.id)
                    records.append(record)
                    vectors.append(vector)
        await anyio.to_thread.run_sync(self.store.insert, records, vectors)
