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
from mcp_memory_server.store import MemoryStore
from tests.lite_history import COMMUNITIES, WORDS, candidates, memory, open_store, random_history


def _searches(store: MemoryStore, rng: random.Random, stats: KeywordStats, count: int) -> list[Any]:
    out = []
    for _ in range(count):
        flt = MemoryFilter(communities=rng.sample(COMMUNITIES, rng.choice((1, 1, 2, 3))))
        weights = query_sparse(" ".join(rng.sample(WORDS, rng.randint(1, 4))), stats)
        words = [(r.id, r.community, round(score, 12)) for r, score in store.search_sparse(flt, weights, 10)]
        vector = [rng.uniform(-1, 1) for _ in range(8)]
        both = candidates(store.candidates(flt, vector, weights, 12))
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


def test_narrowed_keyword_search_gives_what_stock_lite_gives(db: Path) -> None:
    rng = random.Random(7)
    stats = KeywordStats()

    def check(store: MemoryStore, step: int) -> None:
        assert _compare(store, seed=step, stats=stats) > 20

    store, live = random_history(db, rng, stats, check)
    try:
        # Every live memory is found by its own words in its own community, and no deleted one is.
        for m in rng.sample(list(live.values()), 30):
            hits = store.search_sparse(MemoryFilter(communities=[m.record.community]),
                                       query_sparse(m.record.content, stats), 50)
            assert m.record.id in {r.id for r, _ in hits}
    finally:
        store.close()


def test_the_narrowed_search_reads_only_the_buckets_searched(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(db)
    try:
        rng = random.Random(3)
        rows = [memory(rng, c, i) for i, c in enumerate(COMMUNITIES * 3)]
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
    on = open_store(tmp_path / "on.db")
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
