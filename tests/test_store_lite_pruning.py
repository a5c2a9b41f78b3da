"""On Milvus Lite the store names the partition-key buckets of the communities it searches
(Lite does not prune them itself). These tests fail if Lite routes a community to another bucket
than the store computes, or if a write stays unflushed."""

from __future__ import annotations

from pathlib import Path

from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.keywords import KeywordStats, query_sparse
from mcp_memory_server.models import MemoryRecord
from mcp_memory_server.store import MemoryStore
from tests.fakes import indexed


def _record(i: int, community: str) -> MemoryRecord:
    return MemoryRecord(id=f"m{i}", content=f"note {i} about the deploy of {community}", community=community,
                        kind="note", tags=[], agent_id="tester", created_at=i, content_hash=str(i))


def _vector(i: int) -> list[float]:
    v = [0.0] * 8
    v[i % 8] = 1.0
    return v


def test_pruned_reads_find_every_memory_of_every_community(tmp_path: Path) -> None:
    store = MemoryStore(str(tmp_path / "m.db"), "c", 8)
    store.open()
    try:
        communities = [f"team-{n}" for n in range(40)]  # 40 names over 16 buckets: every bucket is used
        records = [_record(i, communities[i % 40]) for i in range(200)]
        rows = [indexed(r, _vector(i)) for i, r in enumerate(records)]
        store.insert(rows)
        stats = KeywordStats()
        for row in rows:
            stats.add(row.sparse, row.kw_len)
        assert store._partitions(communities[:1]) is not None
        for name in communities:
            flt = MemoryFilter(communities=[name])
            assert len(store.get(flt)) == 5
            hits = store.search_dense(flt, _vector(0), 10)
            assert {r.community for r, _ in hits} == {name} and len(hits) == 5
            words = store.search_sparse(flt, query_sparse(f"deploy {name}", stats), 10)
            assert len(words) == 5
            assert {row["community"] for row in store.scan([name], ["kind"])} == {name}
        both = MemoryFilter(communities=communities[:3])
        assert len(store.candidates(both, _vector(1), query_sparse("deploy", stats), 20)) == 15
    finally:
        store.close()


def test_a_write_is_flushed_so_the_next_search_uses_a_segment(tmp_path: Path) -> None:
    store = MemoryStore(str(tmp_path / "m.db"), "c", 8)
    store.open()
    try:
        store.insert([indexed(_record(1, "alpha"), _vector(1))])
        assert store.lite is not None
        memtable_rows = len(store.lite.engine.get_collection("c")._memtable._pk_index)
        assert memtable_rows == 0
        assert [r.id for r, _ in store.search_dense(MemoryFilter(communities=["alpha"]), _vector(1), 1)] == ["m1"]
    finally:
        store.close()
