"""On Milvus Lite the store names the partition-key buckets of the communities it searches
(Lite does not prune them itself). These tests fail if Lite routes a community to another bucket
than the store computes, or if a write stays unflushed."""

from __future__ import annotations

import os
from pathlib import Path

from milvus_lite.server_manager import server_manager_instance

from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.models import MemoryRecord
from mcp_memory_server.store import MemoryStore


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
        store.insert(records, [_vector(i) for i in range(200)])
        assert store._partitions(communities[:1]) is not None
        for name in communities:
            flt = MemoryFilter(communities=[name])
            assert store.count(flt) == 5
            hits = store.search(flt, 10, "semantic", vector=_vector(0))
            assert {r.community for r, _ in hits} == {name} and len(hits) == 5
            words = store.search(flt, 10, "keyword", text=f"deploy {name}")
            assert len(words) == 5
        both = MemoryFilter(communities=communities[:3])
        assert len(store.search(both, 20, "hybrid", vector=_vector(1), text="deploy")) == 15
    finally:
        store.close()


def test_a_write_is_flushed_so_the_next_search_uses_a_segment(tmp_path: Path) -> None:
    store = MemoryStore(str(tmp_path / "m.db"), "c", 8)
    store.open()
    try:
        store.insert([_record(1, "alpha")], [_vector(1)])
        db = server_manager_instance._servers[os.path.abspath(tmp_path / "m.db")][1]
        memtable_rows = len(db.get_collection("c")._memtable._pk_index)
        assert memtable_rows == 0
        assert [r.id for r, _ in store.search(MemoryFilter(communities=["alpha"]), 1, "semantic",
                                              vector=_vector(1))] == ["m1"]
    finally:
        store.close()
