"""Keyword search on Milvus Lite, narrowed to the buckets searched (lite_scope), against stock Lite.

Random writes, rewrites of the same memory (same id, new version), upserts, deletes, writes left in
Lite's memtable, compactions and a reopen (WAL replay) on one real Lite database; after each step
every search is run narrowed and stock and must give the same ids and scores in the same order.
Also: the narrowing really reads fewer segments, it is off where it must be, and it refuses code it
was not checked against (this file fails when milvus-lite changes the methods it wraps)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from milvus_lite.engine.collection import Collection

from mcp_memory_server import lite_scope
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.keywords import KeywordStats, query_sparse
from mcp_memory_server.lite import lite_bucket
from mcp_memory_server.models import IndexedMemory, MemoryRecord, memory_id
from mcp_memory_server.store import MemoryStore, _row
from tests.fakes import indexed

WORDS = ("deploy milvus index docker kubernetes python asyncio cache token search vector shard "
         "replica backup restore latency memory thread agent route").split()
COMMUNITIES = [f"team-{n}" for n in range(24)]  # 24 names over Lite's 16 buckets: some share one


def _memory(rng: random.Random, community: str, n: int) -> IndexedMemory:
    content = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + f" #{n}"
    record = MemoryRecord(id=memory_id(community, content), content=content, community=community, kind="note",
                          tags=[], agent_id="tester", created_at=n, content_hash=str(n))
    vector = [rng.uniform(-1, 1) for _ in range(8)]
    return indexed(record, vector)


def _searches(store: MemoryStore, rng: random.Random, stats: KeywordStats, count: int) -> list[Any]:
    out = []
    for _ in range(count):
        flt = MemoryFilter(communities=rng.sample(COMMUNITIES, rng.choice((1, 1, 2, 3))))
        weights = query_sparse(" ".join(rng.sample(WORDS, rng.randint(1, 4))), stats)
        words = [(r.id, r.community, round(score, 12)) for r, score in store.search_sparse(flt, weights, 10)]
        vector = [rng.uniform(-1, 1) for _ in range(8)]
        both = [(m.record.id, m.kw_len) for m in store.candidates(flt, vector, weights, 12)]
        out.append((words, both))
    return out


def _compare(store: MemoryStore, seed: int, stats: KeywordStats) -> int:
    """Run the same searches narrowed and stock; return how many found something."""
    assert store.narrowed
    assert store.lite is not None
    narrowed = _searches(store, random.Random(seed), stats, 40)
    lite_scope.release(store.lite.path, store.collection)
    try:
        stock = _searches(store, random.Random(seed), stats, 40)
    finally:
        lite_scope.narrow(store.lite.path, store.collection)
    assert narrowed == stock
    return sum(1 for words, _ in narrowed if words)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "scope.db"


def _open(path: Path) -> MemoryStore:
    store = MemoryStore(str(path), "scope", 8, index_type="FLAT")
    store.open()
    return store


def test_narrowed_keyword_search_gives_what_stock_lite_gives(db: Path) -> None:
    rng = random.Random(7)
    stats = KeywordStats()
    live: dict[str, Any] = {}
    store = _open(db)
    try:
        n = 0
        for step in range(6):
            batch = []
            for _ in range(60):
                n += 1
                memory = _memory(rng, rng.choice(COMMUNITIES), n)
                batch.append(memory)
            if live:  # the same memories written again: new versions of the same ids
                batch += rng.sample(list(live.values()), 15)
            store.insert(batch)
            for m in batch:
                stats.add(m.sparse, m.kw_len)
                live[m.record.id] = m
            rewritten = rng.sample(list(live.values()), 10)  # same id, new vectors (an edit of tags, a re-index)
            store.upsert([indexed(m.record, [rng.uniform(-1, 1) for _ in range(8)]) for m in rewritten])
            gone = rng.sample(list(live.values()), 12)
            for m in gone:
                store.delete(m.record.community, [m.record.id])
                live.pop(m.record.id)
            back = gone[:4]  # deleted, then written again
            store.insert(back)
            live.update({m.record.id: m for m in back})
            # Rows Lite holds in its memtable (not flushed): written straight through the client.
            pending = [_memory(rng, rng.choice(COMMUNITIES), 10_000 + step * 10 + i) for i in range(5)]
            store.client.insert(store.collection, [_row(m) for m in pending])
            live.update({m.record.id: m for m in pending})
            assert _compare(store, seed=step, stats=stats) > 20
            if step == 3:  # a restart: the memtable comes back from the WAL
                store.close()
                store = _open(db)
        store.client.compact(store.collection)
        assert _compare(store, seed=99, stats=stats) > 20
        # Every live memory is found by its own words in its own community, and no deleted one is.
        for m in rng.sample(list(live.values()), 30):
            hits = store.search_sparse(MemoryFilter(communities=[m.record.community]),
                                       query_sparse(m.record.content, stats), 50)
            assert m.record.id in {r.id for r, _ in hits}
    finally:
        store.close()


def test_the_narrowed_search_reads_only_the_buckets_searched(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _open(db)
    try:
        rng = random.Random(3)
        rows = [_memory(rng, c, i) for i, c in enumerate(COMMUNITIES * 3)]
        store.insert(rows)
        stats = KeywordStats()
        for m in rows:
            stats.add(m.sparse, m.kw_len)
        read: list[int] = []
        wrapped = Collection._read_snapshot

        def spy(self: Any) -> Any:
            segments, tombstones = wrapped(self)
            read.append(len(segments))
            return segments, tombstones

        monkeypatch.setattr(Collection, "_read_snapshot", spy)
        flt = MemoryFilter(communities=["team-1"])
        assert store.search_sparse(flt, query_sparse("deploy milvus docker python", stats), 5)
        narrowed = read[-1]
        assert store.lite is not None
        lite_scope.release(store.lite.path, store.collection)
        store.search_sparse(flt, query_sparse("deploy milvus docker python", stats), 5)
        used = len({lite_bucket(c, 16) for c in COMMUNITIES})  # buckets holding a segment
        assert used > 10 and narrowed == 1 and read[-1] == used  # one bucket's segment against all
        lite_scope.narrow(store.lite.path, store.collection)
        # No community named (a search over every community): nothing to narrow.
        store.search_sparse(MemoryFilter(communities=None), query_sparse("deploy", stats), 5)
        assert read[-1] == used
    finally:
        store.close()


def test_only_the_memory_collection_of_that_database_is_narrowed(tmp_path: Path) -> None:
    off = MemoryStore(str(tmp_path / "off.db"), "scope", 8, index_type="FLAT", narrow=False)
    on = _open(tmp_path / "on.db")
    off.open()
    try:
        assert on.narrowed and not off.narrowed
    finally:
        off.close()
        on.close()
    assert not on.narrowed  # closed: released


def test_it_refuses_code_it_was_not_checked_against(monkeypatch: pytest.MonkeyPatch) -> None:
    # On the milvus-lite this project installs, the wrapped methods are the ones checked: if this
    # fails after an upgrade, re-read them and re-run this file before adding their new hashes.
    assert lite_scope.refusal() is None
    monkeypatch.setitem(lite_scope.CHECKED, "_search_sparse", {"0000000000000000"})
    reason = lite_scope.refusal()
    assert reason is not None and "Collection._search_sparse is not the code" in reason
