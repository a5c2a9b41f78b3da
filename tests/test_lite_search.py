"""Searches that ask Milvus Lite's engine directly (lite.LiteDatabase.search) against the same
searches through pymilvus and Lite's servicer.

The random history of tests/lite_history.py (rewrites of the same ids, upserts, deletes flushed and
still in the memtable, rows in the memtable, a reopen, a compaction) on one real Lite database; after
each step dense, keyword and hybrid candidate searches, and raw searches for several choices of
output fields, run both ways and must give the same hits: ids, order, distances and every field
returned, with the same types. Also: metadata of every JSON kind and tags come back the same, an
error is the same StoreError, the servicer is really skipped, and Lite code the direct path was not
checked against is searched through pymilvus."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from milvus_lite.adapter.grpc.servicer import MilvusServicer

from mcp_memory_server import lite
from mcp_memory_server.errors import StoreError
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.keywords import KeywordStats, query_sparse
from mcp_memory_server.milvus import FIELDS, SPARSE_SEARCH, search_params
from mcp_memory_server.store import MemoryStore
from tests.lite_history import COMMUNITIES, DIMENSION, WORDS, memory, open_store, random_history

OUTPUTS = (["id"], FIELDS, [*FIELDS, "dense"], [*FIELDS, "sparse"], [*FIELDS, "dense", "sparse", "kw_len"],
           ["content", "metadata", "tags"])


def _typed(value: Any) -> Any:
    """`value` with the type of every part, so that 1 and 1.0, or a list and a tuple, differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_typed(v) for v in value])
    return (type(value).__name__, value)


def _searches(store: MemoryStore, seed: int, stats: KeywordStats) -> list[Any]:
    rng = random.Random(seed)
    out = []
    for n in range(30):
        named = None if n % 10 == 0 else rng.sample(COMMUNITIES, rng.choice((1, 1, 2, 3)))
        flt = MemoryFilter(communities=named, kinds=["note"] if n % 7 == 0 else [],
                           live_at_ms=1 if n % 3 == 0 else None)
        vector = [rng.uniform(-1, 1) for _ in range(DIMENSION)]
        weights = query_sparse(" ".join(rng.sample(WORDS, rng.randint(1, 4))), stats)
        fields = OUTPUTS[n % len(OUTPUTS)]
        out.append((
            store.search_dense(flt, vector, 10),
            store.search_sparse(flt, weights, 10),
            store.candidates(flt, vector, weights, 12),
            _typed(store._search(flt, "dense", vector, 7, search_params(store.index_type, 7), fields)),
            _typed(store._search(flt, "sparse", weights, 7, SPARSE_SEARCH, fields)) if weights else None,
        ))
    return out


def _compare(store: MemoryStore, seed: int, stats: KeywordStats) -> int:
    """The same searches both ways; how many found something."""
    assert store.searches_engine
    direct = _searches(store, seed, stats)
    store.direct = False
    try:
        assert not store.searches_engine
        through = _searches(store, seed, stats)
    finally:
        store.direct = True
    assert direct == through
    return sum(1 for dense, words, *_ in direct if dense and words)


def test_direct_searches_give_what_pymilvus_gives(tmp_path: Path) -> None:
    rng = random.Random(5)
    stats = KeywordStats()

    def check(store: MemoryStore, step: int) -> None:
        assert _compare(store, seed=step, stats=stats) > 15

    store, _ = random_history(tmp_path / "direct.db", rng, stats, check)
    store.close()


def test_metadata_and_tags_come_back_as_pymilvus_gives_them(tmp_path: Path) -> None:
    store = open_store(tmp_path / "json.db")
    try:
        rng = random.Random(4)
        rows = []
        for i in range(12):
            m = memory(rng, "team-3", i)
            record = replace(m.record, **{
                "tags": [f"t{i}", "ünïcode"][: i % 3],
                "metadata": {"n": i, "x": i / 7, "ok": i % 2 == 0, "none": None, "text": "naïve “quotes” \n",
                             "nested": {"list": [1, 2.5, "three", {"deep": [True, None]}]}}})
            rows.append(replace(m, record=record))
        store.insert(rows)
        flt = MemoryFilter(communities=["team-3"])
        found = []
        for direct in (True, False):
            store.direct = direct
            found.append(_typed(store._search(flt, "dense", [0.3] * DIMENSION, 12, {}, [*FIELDS, "dense", "sparse"])))
        assert found[0] == found[1]
        assert sorted(h["entity"]["metadata"]["n"][1] for h in found[0][1]) == list(range(12))
    finally:
        store.close()


def test_the_servicer_is_skipped_and_errors_are_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(tmp_path / "calls.db")
    try:
        rng = random.Random(2)
        store.insert([memory(rng, "team-1", i) for i in range(30)])
        assert store.searches_engine  # decided (from Lite's source) before the spy below wraps Search
        calls: list[str] = []
        search = MilvusServicer.Search

        def spy(self: MilvusServicer, request: Any, context: Any) -> Any:
            calls.append(request.collection_name)
            return search(self, request, context)

        spy.__wrapped__ = search  # type: ignore[attr-defined]
        monkeypatch.setattr(MilvusServicer, "Search", spy)
        flt = MemoryFilter(communities=["team-1"])
        assert len(store.search_dense(flt, [0.5] * DIMENSION, 5)) == 5 and calls == []
        store.direct = False
        assert len(store.search_dense(flt, [0.5] * DIMENSION, 5)) == 5 and calls == ["scope"]

        bad = MemoryFilter(communities=["team-1"], kinds=["note"])
        monkeypatch.setattr(MemoryFilter, "expression", lambda self: "kind ==")  # what no parser accepts
        errors = []
        for direct in (True, False):
            store.direct = direct
            with pytest.raises(StoreError) as failed:
                store.search_dense(bad, [0.5] * DIMENSION, 5)
            errors.append(str(failed.value))
        assert errors[0] == errors[1] and "Milvus call failed" in errors[0]
    finally:
        store.close()


def test_other_lite_code_is_searched_through_pymilvus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lite, "SEARCH_CHECKED", {**lite.SEARCH_CHECKED, "Collection.search": {"0000000000000000"}})
    monkeypatch.setattr(lite, "search_refused", lite.CheckedOnce(lite._search_refusal))
    import mcp_memory_server.store as store_module

    monkeypatch.setattr(store_module, "search_refused", lite.search_refused)
    store = open_store(tmp_path / "other.db")
    try:
        assert not store.searches_engine
        assert store.search_path() is not None and "is not the code this was checked against" in store.search_path()
        store.insert([memory(random.Random(1), "team-2", i) for i in range(5)])
        assert len(store.search_dense(MemoryFilter(communities=["team-2"]), [0.1] * DIMENSION, 3)) == 3
    finally:
        store.close()
    assert lite._search_refusal() is not None  # this file fails when milvus-lite changes the code checked


def test_the_checked_code_is_this_milvus_lite() -> None:
    assert lite._search_refusal() is None
