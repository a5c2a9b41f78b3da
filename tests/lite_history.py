"""A random history of writes on one real Milvus Lite database, for the tests that compare a faster
search path with stock Lite (test_lite_scope.py, test_lite_masks.py).

`random_history` writes memories over 24 communities in Lite's 16 buckets, writes some again (new
versions of the same ids), upserts, deletes, re-inserts deleted ones, leaves rows in Lite's memtable,
restarts the store once (WAL replay) and compacts at the end; after each step it calls `check(store,
step)`. It returns the memories that should be live. `candidates` puts a hybrid search's candidates
in a form both tests compare."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcp_memory_server.keywords import KeywordStats
from mcp_memory_server.models import IndexedMemory, MemoryRecord, memory_id
from mcp_memory_server.store import MemoryStore, _row
from tests.fakes import indexed

WORDS = ("deploy milvus index docker kubernetes python asyncio cache token search vector shard "
         "replica backup restore latency memory thread agent route").split()
COMMUNITIES = [f"team-{n}" for n in range(24)]  # 24 names over Lite's 16 buckets: some share one
DIMENSION = 8


def memory(rng: random.Random, community: str, n: int) -> IndexedMemory:
    content = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + f" #{n}"
    record = MemoryRecord(id=memory_id(community, content), content=content, community=community, kind="note",
                          tags=[], agent_id="tester", created_at=n, content_hash=str(n))
    return indexed(record, [rng.uniform(-1, 1) for _ in range(DIMENSION)])


def stats_of(memories: list[IndexedMemory]) -> KeywordStats:
    """The keyword statistics of `memories` (what the service keeps per community)."""
    stats = KeywordStats()
    for m in memories:
        stats.add(m.sparse, m.kw_len)
    return stats


def open_store(path: Path) -> MemoryStore:
    store = MemoryStore(str(path), "scope", DIMENSION, index_type="FLAT")
    store.open()
    return store


def random_history(path: Path, rng: random.Random, stats: KeywordStats,
                   check: Callable[[MemoryStore, int], None]) -> tuple[MemoryStore, dict[str, IndexedMemory]]:
    """Run the history on a store at `path` (keyword statistics kept in `stats`); the store is
    returned open, the caller closes it."""
    live: dict[str, IndexedMemory] = {}
    store = open_store(path)
    try:
        n = 0
        for step in range(6):
            batch = []
            for _ in range(60):
                n += 1
                batch.append(memory(rng, rng.choice(COMMUNITIES), n))
            if live:  # the same memories written again: new versions of the same ids
                batch += rng.sample(list(live.values()), 15)
            store.insert(batch)
            for m in batch:
                stats.add(m.sparse, m.kw_len)
                live[m.record.id] = m
            rewritten = rng.sample(list(live.values()), 10)  # same id, new vectors (an edit of tags, a re-index)
            rewritten = [indexed(m.record, [rng.uniform(-1, 1) for _ in range(DIMENSION)]) for m in rewritten]
            store.upsert(rewritten)
            live.update({m.record.id: m for m in rewritten})
            gone = rng.sample(list(live.values()), 12)
            for m in gone:
                store.delete(m.record.community, [m.record.id])
                live.pop(m.record.id)
            back = gone[:4]  # deleted, then written again
            store.insert(back)
            live.update({m.record.id: m for m in back})
            # Rows Lite holds in its memtable (not flushed): written straight through the client.
            pending = [memory(rng, rng.choice(COMMUNITIES), 10_000 + step * 10 + i) for i in range(5)]
            store.client.insert(store.collection, [_row(m) for m in pending])
            live.update({m.record.id: m for m in pending})
            if step % 2:  # a delete Lite still holds in its memtable (not flushed)
                victim = rng.choice(list(live.values()))
                store.client.delete(store.collection, ids=[victim.record.id])
                live.pop(victim.record.id)
            check(store, step)
            if step == 3:  # a restart: the memtable comes back from the WAL
                store.close()
                store = open_store(path)
        store.client.compact(store.collection)
        check(store, 99)
    except BaseException:
        store.close()
        raise
    return store, live


@dataclass(frozen=True, eq=False)
class Close:
    """Numbers that compare equal to another `Close` within a relative 1e-5."""

    values: tuple[float, ...]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Close) or len(self.values) != len(other.values):
            return False
        pairs = zip(self.values, other.values, strict=True)
        return all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9) for a, b in pairs)

    __hash__ = None  # type: ignore[assignment]


def candidates(found: list[tuple[MemoryRecord, float, float]]) -> tuple[list[str], Close]:
    """A hybrid search's candidates: ids, and the two values (float32 from the side that found a
    memory, float64 from the other: compared to 1e-5)."""
    return [r.id for r, _, _ in found], Close(tuple(x for _, cosine, bm25 in found for x in (cosine, bm25)))
