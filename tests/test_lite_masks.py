"""Searches on Milvus Lite with validity masks from key indexes (lite_masks), against stock Lite.

The random history of tests/lite_history.py (rewrites of the same ids, upserts, deletes flushed and
still in the memtable, rows in the memtable, a reopen, a compaction) on one real Lite database; after
each step every dense, keyword and hybrid candidate search is run with the replacements and with
Lite's own functions and must give the same ids, distances, order and fields returned (hybrid
candidates: the same ids, values within 1e-5). Also: segment rows are no longer checked one by one,
and the replacement refuses code it was not checked against (this file fails when milvus-lite
changes it)."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from milvus_lite.storage.delta_index import DeltaIndex

from mcp_memory_server import lite_masks
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.keywords import KeywordStats, query_sparse
from mcp_memory_server.lite import lite_bucket, lite_partition_buckets
from mcp_memory_server.milvus import FIELDS, SPARSE_SEARCH
from mcp_memory_server.models import IndexedMemory, MemoryRecord, memory_id
from mcp_memory_server.store import MemoryStore, _row
from tests.fakes import indexed
from tests.lite_history import COMMUNITIES, DIMENSION, WORDS, candidates, memory, open_store, random_history, stats_of


def _searches(store: MemoryStore, seed: int, stats: KeywordStats) -> list[Any]:
    rng = random.Random(seed)
    out = []
    for n in range(40):
        named = None if n % 10 == 0 else rng.sample(COMMUNITIES, rng.choice((1, 1, 2, 3)))
        flt = MemoryFilter(communities=named, kinds=["note"] if n % 7 == 0 else [])
        vector = [rng.uniform(-1, 1) for _ in range(DIMENSION)]
        dense = [(r.id, round(score, 6)) for r, score in store.search_dense(flt, vector, 10)]
        weights = query_sparse(" ".join(rng.sample(WORDS, rng.randint(1, 4))), stats)
        words = [(r.id, round(score, 9)) for r, score in store.search_sparse(flt, weights, 10)]
        both = candidates(store.candidates(flt, vector, weights, 12))
        # Every field a search can return, as Lite returns it (the replacement reads only the columns asked for).
        fields = rng.choice((None, ["*"], ["id"], ["content", "tags"], [*FIELDS, "dense", "sparse", "kw_len"]))
        rows = [store.client.search(store.collection, data=[data], anns_field=field, limit=6, output_fields=fields,
                                    filter=flt.expression(), search_params=params)[0]
                for field, data, params in (("dense", vector, {}), ("sparse", weights, SPARSE_SEARCH)) if data]
        out.append((dense, words, both, [[(h["id"], h["distance"], h["entity"]) for h in hits] for hits in rows]))
    return out


def _compare(store: MemoryStore, seed: int, stats: KeywordStats) -> int:
    """The same searches with the replacements and with Lite's own functions; how many found something
    by vector and by keyword."""
    assert lite_masks.installed()
    fast = _searches(store, seed, stats)
    lite_masks.uninstall()
    try:
        stock = _searches(store, seed, stats)
    finally:
        assert lite_masks.install()
    assert fast == stock
    return sum(1 for dense, *_ in fast if dense) + sum(1 for _, words, *_ in fast if words)


def test_searches_give_what_stock_lite_gives(tmp_path: Path) -> None:
    rng = random.Random(11)
    stats = KeywordStats()

    def check(store: MemoryStore, step: int) -> None:
        assert _compare(store, seed=step, stats=stats) > 70

    store, live = random_history(tmp_path / "masks.db", rng, stats, check)
    try:
        # Every live memory is found, once, with its latest vector (the score is its own inner product).
        for m in rng.sample(list(live.values()), 30):
            hits = store.search_dense(MemoryFilter(communities=[m.record.community]), m.dense, 200)
            own = [score for r, score in hits if r.id == m.record.id]
            assert own == [pytest.approx(sum(x * x for x in m.dense), rel=1e-4)]
    finally:
        store.close()


def test_segment_rows_are_not_checked_one_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(tmp_path / "rows.db")
    try:
        rng = random.Random(3)
        rows = [memory(rng, "team-1", i) for i in range(300)]
        store.insert(rows)
        store.delete("team-1", [rows[0].record.id])
        asked: list[Any] = []
        is_deleted = DeltaIndex.is_deleted

        def spy(self: DeltaIndex, pk: Any, seq: int) -> bool:
            asked.append(pk)
            return is_deleted(self, pk, seq)

        monkeypatch.setattr(DeltaIndex, "is_deleted", spy)
        flt = MemoryFilter(communities=["team-1"])
        weights = query_sparse(" ".join(WORDS), stats_of(rows))
        hits = store.search_dense(flt, rows[0].dense, 300)
        words = store.search_sparse(flt, weights, 300)
        assert len(hits) == len(words) == 299 and rows[0].record.id not in {r.id for r, _ in hits + words}
        assert asked == []  # Lite's own functions ask once per row of the segment
        lite_masks.uninstall()
        try:
            assert [r.id for r, _ in store.search_dense(flt, rows[0].dense, 300)] == [r.id for r, _ in hits]
            assert len(asked) >= 299
            assert [r.id for r, _ in store.search_sparse(flt, weights, 300)] == [r.id for r, _ in words]
            assert len(asked) >= 2 * 299
        finally:
            lite_masks.install()
    finally:
        store.close()


def test_it_is_installed_with_the_narrowing_and_refuses_other_code(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # On the milvus-lite this project installs, the code relied on is the code checked: if this
    # fails after an upgrade, re-read it and re-run this file before adding the new hashes.
    assert lite_masks.refusal() is None
    store = open_store(tmp_path / "on.db")
    try:
        assert lite_masks.installed() and store.row_checks() == "each segment's key index"
    finally:
        store.close()
    monkeypatch.setitem(lite_masks.CHECKED, "DeltaIndex.is_deleted", {"0000000000000000"})
    reason = lite_masks.refusal()
    assert reason is not None and "DeltaIndex.is_deleted is not the code" in reason


@pytest.mark.parametrize("dynamic", [False, True], ids=["memory-schema", "dynamic-fields"])
def test_the_projection_of_a_returned_row_is_lites(tmp_path: Path, dynamic: bool) -> None:
    from milvus_lite.engine.projection import build_projection_plan, project_record
    from milvus_lite.schema.types import CollectionSchema, DataType, FieldSchema

    store = open_store(tmp_path / "projection.db")  # installs the replacements
    store.close()
    schema = CollectionSchema(fields=[FieldSchema("id", DataType.VARCHAR, is_primary=True, max_length=64),
                                      FieldSchema("content", DataType.VARCHAR, max_length=64),
                                      FieldSchema("tags", DataType.JSON),
                                      FieldSchema("dense", DataType.FLOAT_VECTOR, dim=2)],
                              enable_dynamic_field=dynamic)
    rng = random.Random(3)
    records = [{"id": f"m{i}", "content": f"text {i}", "tags": ["a"], "dense": [0.5, 0.25], "_seq": i,
                "_partition": "p", **({"$meta": '{"x": 1, "content": "shadowed"}'} if i % 2 else {}),
                **({"extra": i} if i % 3 == 0 else {})} for i in range(12)]
    for record in records:
        for _ in range(rng.randint(0, 2)):  # rows that lack some fields
            record.pop(rng.choice(["content", "tags", "dense"]), None)
    choices = (None, ["*"], ["id"], ["content", "tags"], ["content", "id", "dense"], ["$meta"], ["x", "content"],
               ["extra"], [])
    fast = 0
    for fields in choices:
        for kind in ("search", "query", "get"):
            plan = build_projection_plan(fields, schema, api_kind=kind)
            for record in records:
                ours = lite_masks.project(dict(record), schema, plan)
                assert ours == project_record(dict(record), schema, plan)
                assert list(ours) == list(project_record(dict(record), schema, plan))  # same order of keys
            fast += kind == "search" and not (plan.include_all_dynamic or plan.explicit_dynamic_fields)
    assert fast >= (7 if not dynamic else 3)  # plans that take the short way (the others are Lite's own)


class _EmptyOnce(dict):  # type: ignore[type-arg]
    """A memtable's key index that looks empty to the first test of it (rows that arrive between the
    dense search's look at the memtable and its snapshot)."""

    looked = False

    def __len__(self) -> int:
        if not self.looked:
            self.looked = True
            return 0
        return super().__len__()


def test_rows_that_reach_the_memtable_during_a_search_are_still_filtered(tmp_path: Path) -> None:
    # A dense search takes the memtable's rows as a table (for the filter) only when it holds rows.
    store = open_store(tmp_path / "race.db")
    try:
        rng = random.Random(5)
        flushed = [memory(rng, "team-1", i) for i in range(20)]
        store.insert(flushed)
        buckets = lite_partition_buckets(set(store.client.list_partitions(store.collection)))
        assert buckets is not None
        twin = next(c for c in (f"team-{n}" for n in range(2, 500))  # a community in team-1's bucket
                    if lite_bucket(c, buckets[1]) == lite_bucket("team-1", buckets[1]))
        pending = [memory(rng, community, 100 + i) for i, community in enumerate(["team-1", twin] * 5)]
        store.client.insert(store.collection, [_row(m) for m in pending])  # left in the memtable
        memtable = store.lite._db.get_collection(store.collection)._memtable
        flt = MemoryFilter(communities=["team-1"])
        expected = {m.record.id for m in flushed + pending if m.record.community == "team-1"}
        assert {r.id for r, _ in store.search_dense(flt, flushed[0].dense, 100)} == expected
        memtable._pk_index = _EmptyOnce(memtable._pk_index)
        assert {r.id for r, _ in store.search_dense(flt, flushed[0].dense, 100)} == expected
        assert memtable._pk_index.looked
    finally:
        store.close()


def test_a_segments_filter_mask_is_computed_once_per_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from milvus_lite.search import indexed_filter

    store = open_store(tmp_path / "masks-kept.db")
    try:
        rng = random.Random(9)
        rows = [memory(rng, "team-1", i) for i in range(50)]
        store.insert(rows)
        weights = query_sparse(" ".join(WORDS[:5]), stats_of(rows))
        evaluated: list[str] = []
        evaluate = indexed_filter.evaluate_segment_filter

        def spy(seg: Any, compiled: Any, plan: Any) -> Any:
            evaluated.append(compiled.source)
            return evaluate(seg, compiled, plan)

        monkeypatch.setattr(indexed_filter, "evaluate_segment_filter", spy)
        flt = MemoryFilter(communities=["team-1"], kinds=["note"])
        first = candidates(store.candidates(flt, rows[0].dense, weights, 20))
        assert candidates(store.candidates(flt, rows[0].dense, weights, 20)) == first
        assert evaluated == [flt.expression()]  # once, for the dense and the keyword search of both calls
        other = MemoryFilter(communities=["team-1"], kinds=["answer"])
        assert store.candidates(other, rows[0].dense, weights, 20) == []
        assert evaluated == [flt.expression(), other.expression()]
        store.insert([memory(rng, "team-1", 100)])  # a new segment: its own mask, the old one kept
        assert len(store.candidates(flt, rows[0].dense, weights, 60)) == 51
        assert evaluated[2:] == [flt.expression()]
    finally:
        store.close()


def test_rows_are_read_once_and_their_readers_cannot_change_them(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(tmp_path / "rows-kept.db")
    try:
        rng = random.Random(4)
        rows = [memory(rng, "team-1", i) for i in range(40)]
        for m in rows[:5]:
            m.record.tags = ["kept"]
        store.insert(rows)
        by_id = {m.record.id: m for m in rows}
        weights = query_sparse(" ".join(WORDS[:6]), stats_of(rows))
        flt = MemoryFilter(communities=["team-1"])
        taken: list[int] = []
        take = lite_masks._SegmentRows._read

        def spy(self: Any, seg: Any, wanted: list[int]) -> None:
            taken.extend(wanted)
            take(self, seg, wanted)

        monkeypatch.setattr(lite_masks._SegmentRows, "_read", spy)
        first = store.candidates(flt, rows[0].dense, weights, 12)
        assert taken
        read = len(taken)
        for record, _, _ in first:
            record.tags.append("changed by a reader")
        again = store.candidates(flt, rows[0].dense, weights, 12)
        assert len(taken) == read  # nothing read from Arrow again
        assert [r.tags for r, _, _ in again] == [by_id[r.id].record.tags for r, _, _ in again]
        assert candidates(again) == candidates(first)
        # The keyword side's vectors arrive as read-only views of the segment's vectors; a memory found
        # by keyword only gets the cosine of its stored vector (float32, as stored).
        for record, cosine, _ in again:
            stored = np.asarray(by_id[record.id].dense, dtype=np.float32).astype(np.float64)
            assert cosine == pytest.approx(float(np.asarray(rows[0].dense, dtype=np.float32) @ stored), abs=1e-5)
        [hit] = store.lite.search(store.collection, weights, "sparse", limit=1, expr=flt.expression(),
                                  output_fields=["dense"], search_params=SPARSE_SEARCH, partition_names=None,
                                  raw=("dense",))
        vector = hit["entity"]["dense"]
        assert isinstance(vector, np.ndarray) and vector.dtype == np.float32 and not vector.flags.writeable
        [plain] = store.lite.search(store.collection, weights, "sparse", limit=1, expr=flt.expression(),
                                    output_fields=["dense"], search_params=SPARSE_SEARCH, partition_names=None)
        assert plain["entity"]["dense"] == vector.tolist() and isinstance(plain["entity"]["dense"], list)
    finally:
        store.close()


def test_the_rows_kept_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lite_masks, "_ROWS_KEPT", 15)
    monkeypatch.setattr(lite_masks._SegmentRows, "_kept", {})
    monkeypatch.setattr(lite_masks._SegmentRows, "_held", 0)
    store = open_store(tmp_path / "rows-bounded.db")
    try:
        rng = random.Random(8)
        rows = [memory(rng, "team-1", i) for i in range(30)]
        store.insert(rows[:10])
        store.insert(rows[10:])  # two segments
        flt = MemoryFilter(communities=["team-1"])
        found = []
        for m in rows[:12]:
            found.append(store.search_dense(flt, m.dense, 10))
            held = sum(len(kept.by_row) for kept in lite_masks._SegmentRows._kept.values())
            assert held == lite_masks._SegmentRows._held <= 15
        assert lite_masks._SegmentRows._held > 0
        lite_masks.uninstall()
        try:
            assert found == [store.search_dense(flt, m.dense, 10) for m in rows[:12]]
        finally:
            assert lite_masks.install()
    finally:
        store.close()


def test_a_small_community_beside_a_large_one_is_searched_exactly(tmp_path: Path) -> None:
    # Lite keeps communities in 16 partitions: a community of 60 memories can share one with 2,000 others.
    # Its graph index then yields few of the 60: the segment's rows the filter keeps are scored instead.
    store = MemoryStore(str(tmp_path / "hnsw.db"), "hnsw", 64, index_type="HNSW")
    store.open()
    try:
        buckets = lite_partition_buckets(set(store.client.list_partitions(store.collection)))
        assert buckets is not None
        large = next(c for c in (f"team-{n}" for n in range(2, 500))
                     if lite_bucket(c, buckets[1]) == lite_bucket("team-1", buckets[1]))
        rng = np.random.default_rng(3)

        def unit() -> list[float]:
            v = rng.standard_normal(64)
            return (v / np.linalg.norm(v)).tolist()

        def note(community: str, n: int) -> IndexedMemory:
            content = f"note {n} of {community}"
            return indexed(MemoryRecord(id=memory_id(community, content), content=content, community=community,
                                        kind="note", tags=[], agent_id="t", created_at=n, content_hash=str(n)), unit())

        small = [note("team-1", n) for n in range(60)]
        store.insert([note(large, n) for n in range(2000)] + small)
        collection = store.lite.engine.get_collection("hnsw")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(  # Lite builds the graph after the flush
                type(seg.indexes.get("dense")).__name__ == "FaissHnswIndex" for seg in collection._segments_snapshot()):
            time.sleep(0.1)
        [seg] = collection._segments_snapshot()
        assert type(seg.indexes.get("dense")).__name__ == "FaissHnswIndex"
        flt = MemoryFilter(communities=["team-1"])

        def missed() -> int:
            out = 0
            for _ in range(20):
                query = unit()
                best = sorted(small, key=lambda m: -float(np.dot(query, m.dense)))[:10]
                out += len({m.record.id for m in best} - {r.id for r, _ in store.search_dense(flt, query, 10)})
            return out

        assert missed() == 0
        lite_masks.uninstall()
        try:
            assert missed() > 10  # Lite's own search, through the graph
        finally:
            assert lite_masks.install()
    finally:
        store.close()
