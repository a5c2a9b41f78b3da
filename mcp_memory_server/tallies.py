"""What the service knows about each community without asking Milvus: how many memories of each
kind it holds, and the keyword statistics BM25 needs (`keywords.KeywordStats`).

Milvus has no GROUP BY, and Milvus Lite answers a filtered count by reading every matching row, so
`stats` used to scan the whole collection on each call (75 ms at 1k memories, minutes at 100k).
A community's tally is read once from Milvus (one scan of its rows, on first use or by the
background warm-up after open) and then kept true by this process's writes (`writes.py` updates it
under the same lock as the write). On Milvus Lite this process is the only writer, so a tally is
exact for as long as the process runs. On a Milvus server other hubs write too: a tally older than
`ttl` seconds is read again before use, so their writes show within `ttl` (keyword statistics are
only IDF weights: a slightly stale one shifts scores a little and never hides a memory).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from .keywords import KeywordStats
from .models import IndexedMemory
from .store import MemoryStore, _sparse

_FIELDS = ["kind", "sparse", "kw_len"]


@dataclass
class Tally:
    """One community: memories per kind, keyword statistics, and when they were read from Milvus."""

    kinds: Counter[str] = field(default_factory=Counter)
    keywords: KeywordStats = field(default_factory=KeywordStats)
    read_at: float = 0.0

    @property
    def total(self) -> int:
        return sum(n for n in self.kinds.values() if n > 0)


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
        if tally is not None and self._fresh(tally.read_at):
            return tally
        async with self.lock:
            tally = self._tallies.get(community)
            if tally is None or not self._fresh(tally.read_at):
                read = await anyio.to_thread.run_sync(self._read, [community])
                tally = read.get(community) or Tally(read_at=time.monotonic())
                self._tallies[community] = tally
        return tally

    async def everything(self) -> dict[str, Tally]:
        """Every community's tally: one scan of the collection the first time (and after `ttl`)."""
        if not self._fresh(self._everything_read_at):
            async with self.lock:
                if not self._fresh(self._everything_read_at):
                    read = await anyio.to_thread.run_sync(self._read, None)
                    for community, tally in read.items():
                        current = self._tallies.get(community)
                        if current is None or not self._fresh(current.read_at):
                            self._tallies[community] = tally
                    self._everything_read_at = time.monotonic()
        return {c: t for c, t in self._tallies.items() if t.total > 0}

    def known(self, community: str) -> bool:
        """Whether the community is known to hold memories, without asking Milvus."""
        tally = self._tallies.get(community)
        return tally is not None and tally.total > 0 and self._fresh(tally.read_at)

    # -- kept true by the writer (which holds `lock`) ------------------------------------------

    def added(self, memories: Iterable[IndexedMemory]) -> None:
        for m in memories:
            tally = self._tallies.get(m.record.community)
            if tally is not None:  # a community not read yet is read whole when first used
                tally.kinds[m.record.kind] += 1
                tally.keywords.add(m.sparse, m.kw_len)

    def removed(self, memories: Iterable[IndexedMemory]) -> None:
        for m in memories:
            tally = self._tallies.get(m.record.community)
            if tally is not None:
                tally.kinds[m.record.kind] -= 1
                tally.keywords.remove(m.sparse, m.kw_len)

    def reindexed(self, before: Sequence[IndexedMemory], after: Sequence[IndexedMemory]) -> None:
        self.removed(before)
        self.added(after)

    def _read(self, communities: Sequence[str] | None) -> dict[str, Tally]:
        now = time.monotonic()
        read: dict[str, Tally] = {}
        for row in self.store.scan(communities, _FIELDS):
            tally = read.setdefault(row["community"], Tally(read_at=now))
            tally.kinds[row["kind"]] += 1
            tally.keywords.add(_sparse(row.get("sparse")), float(_number(row.get("kw_len"))))
        return read


def _number(value: Any) -> float:
    return float(value) if value is not None else 0.0
