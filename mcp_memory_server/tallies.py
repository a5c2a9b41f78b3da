"""What the service knows about each community without asking Milvus: how many memories of each
kind it holds, and the keyword statistics BM25 needs (`keywords.KeywordStats`).

Milvus has no GROUP BY, and Milvus Lite answers a filtered count by reading every matching row, so
`stats` used to scan the whole collection on each call (75 ms at 1k memories, minutes at 100k).
A community's tally is read once from Milvus (one scan of its rows, on first use or by the
background warm-up after open) and then kept true by this process's writes (`writes.py` updates it
under the same lock as the write). On Milvus Lite this process is the only writer, so a tally is
exact for as long as the process runs. On a Milvus server other hubs write too: a tally older than
`ttl` seconds is read again before use, so their writes show within `ttl` (keyword statistics are
only IDF weights: a slightly stale one shifts scores a little, and a word it has not counted yet
weighs as a word of one memory, `keywords.query_sparse`, so it never hides a memory).

An expired memory stops counting the moment it expires, not when the purge (`expiry.py`) deletes
its row: a tally keeps the memories that will expire in a heap and subtracts each one when its time
has come (and ignores its later deletion, which it already counted).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from .keywords import KeywordStats, Sparse
from .models import IndexedMemory
from .store import MemoryStore, _sparse

_FIELDS = ["kind", "sparse", "kw_len", "expires_at"]


@dataclass(frozen=True)
class _Counted:
    """What one memory adds to a tally."""

    kind: str
    sparse: Sparse
    kw_len: float
    expires_at: int


@dataclass
class Tally:
    """One community: memories per kind, keyword statistics, and when they were read from Milvus;
    the memories that will expire (`expiring`, by id, and `due`, a heap of (expires_at, id)) and
    those that have expired but are still stored (`lapsed`: no longer counted)."""

    kinds: Counter[str] = field(default_factory=Counter)
    keywords: KeywordStats = field(default_factory=KeywordStats)
    read_at: float = 0.0
    expiring: dict[str, _Counted] = field(default_factory=dict)
    due: list[tuple[int, str]] = field(default_factory=list)
    lapsed: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(n for n in self.kinds.values() if n > 0)

    def count(self, memory_id: str, counted: _Counted, now: int) -> None:
        if counted.expires_at:
            if counted.expires_at <= now:
                self.lapsed.add(memory_id)
                return
            self.expiring[memory_id] = counted
            heapq.heappush(self.due, (counted.expires_at, memory_id))
        self.kinds[counted.kind] += 1
        self.keywords.add(counted.sparse, counted.kw_len)

    def uncount(self, memory_id: str, counted: _Counted) -> None:
        if memory_id in self.lapsed:  # subtracted when it expired
            self.lapsed.discard(memory_id)
            return
        self.expiring.pop(memory_id, None)
        self.kinds[counted.kind] -= 1
        self.keywords.remove(counted.sparse, counted.kw_len)

    def lapse(self, now: int) -> None:
        """Stop counting the memories expired at `now`."""
        while self.due and self.due[0][0] <= now:
            expires_at, memory_id = heapq.heappop(self.due)
            counted = self.expiring.get(memory_id)
            if counted is not None and counted.expires_at == expires_at:  # else: changed or deleted since
                self.uncount(memory_id, counted)
                self.lapsed.add(memory_id)


class Tallies:
    """The tallies of every community. `lock` is the writer's lock: a tally is read from Milvus
    only while no write is in flight, so no write is counted twice or missed."""

    def __init__(self, store: MemoryStore, lock: anyio.Lock, ttl: float | None) -> None:
        self.store = store
        self.lock = lock
        self.ttl = ttl  # None: exact for ever (this process is the only writer)
        self._tallies: dict[str, Tally] = {}
        self._everything_read_at: float | None = None

    def _fresh(self, read_at: float | None) -> bool:
        return read_at is not None and (self.ttl is None or time.monotonic() - read_at < self.ttl)

    async def get(self, community: str) -> Tally:
        """The community's tally (read from Milvus first if it is not known or too old)."""
        tally = self._tallies.get(community)
        if tally is None or not self._fresh(tally.read_at):
            async with self.lock:
                tally = self._tallies.get(community)
                if tally is None or not self._fresh(tally.read_at):
                    read = await anyio.to_thread.run_sync(self._read, [community])
                    tally = read.get(community) or Tally(read_at=time.monotonic())
                    self._tallies[community] = tally
        tally.lapse(_now_ms())
        return tally

    async def everything(self) -> dict[str, Tally]:
        """Every community's tally: one scan of the collection the first time (and after `ttl`)."""
        if not self._fresh(self._everything_read_at):
            async with self.lock:
                if not self._fresh(self._everything_read_at):
                    read = await anyio.to_thread.run_sync(self._read, None)
                    for community in self._tallies.keys() - read.keys():  # emptied by another hub
                        if not self._fresh(self._tallies[community].read_at):
                            self._tallies[community] = Tally(read_at=time.monotonic())
                    for community, tally in read.items():
                        current = self._tallies.get(community)
                        if current is None or not self._fresh(current.read_at):
                            self._tallies[community] = tally
                    self._everything_read_at = time.monotonic()
        now = _now_ms()
        for tally in self._tallies.values():
            tally.lapse(now)
        return {c: t for c, t in self._tallies.items() if t.total > 0}

    def known(self, community: str) -> bool:
        """Whether the community is known to hold memories, without asking Milvus."""
        tally = self._tallies.get(community)
        if tally is None:
            return False
        tally.lapse(_now_ms())
        return tally.total > 0 and self._fresh(tally.read_at)

    # -- kept true by the writer (which holds `lock`) ------------------------------------------

    def added(self, memories: Iterable[IndexedMemory]) -> None:
        now = _now_ms()
        for m in memories:
            tally = self._tallies.get(m.record.community)
            if tally is not None:  # a community not read yet is read whole when first used
                tally.count(m.record.id, _counted(m), now)

    def removed(self, memories: Iterable[IndexedMemory]) -> None:
        for m in memories:
            tally = self._tallies.get(m.record.community)
            if tally is not None:
                tally.uncount(m.record.id, _counted(m))

    def overwritten(self, community: str, ids: Iterable[str]) -> None:
        """Expired memories that a new write of the same id replaced (their rows are gone)."""
        tally = self._tallies.get(community)
        if tally is None:
            return
        for memory_id in ids:
            counted = tally.expiring.get(memory_id)
            if counted is not None:
                tally.uncount(memory_id, counted)
            tally.lapsed.discard(memory_id)

    def reindexed(self, before: Sequence[IndexedMemory], after: Sequence[IndexedMemory]) -> None:
        self.removed(before)
        self.added(after)

    def _read(self, communities: Sequence[str] | None) -> dict[str, Tally]:
        now, wall = time.monotonic(), _now_ms()
        read: dict[str, Tally] = {}
        for row in self.store.scan(communities, _FIELDS):
            tally = read.setdefault(row["community"], Tally(read_at=now))
            tally.count(row["id"], _Counted(row["kind"], _sparse(row.get("sparse")), _number(row.get("kw_len")),
                                            int(_number(row.get("expires_at")))), wall)
        return read


def _counted(memory: IndexedMemory) -> _Counted:
    return _Counted(memory.record.kind, memory.sparse, memory.kw_len, memory.record.expires_at)


def _number(value: Any) -> float:
    return float(value) if value is not None else 0.0


def _now_ms() -> int:
    return int(time.time() * 1000)
