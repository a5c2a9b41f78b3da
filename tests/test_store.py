"""MemoryStore behaviour that callers rely on beyond the tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.memory import create_connected_server_and_client_session

from mcp_memory_server.config import Settings
from mcp_memory_server.errors import StoreError
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import MemoryRecord
from mcp_memory_server.server import build_server
from mcp_memory_server.store import MemoryStore
from tests.conftest import call
from tests.fakes import indexed

OPEN_AND_COUNT = """
import sys
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.store import MemoryStore
store = MemoryStore(sys.argv[1], "c", 4, index_type="FLAT")
store.open()
print(len(store.get(MemoryFilter(communities=None))))
store.close()
"""


def test_closing_the_store_releases_the_lite_database_for_another_process(tmp_path: Path) -> None:
    uri = str(tmp_path / "release.db")
    store = MemoryStore(uri, "c", 4, index_type="FLAT")
    store.open()
    store.insert([indexed(MemoryRecord("a", "hello", "c1", "note", [], "x", 1, "h", {}), [1.0, 0.0, 0.0, 0.0])])
    store.close()  # this process lives on; the database must be free now
    other = subprocess.run([sys.executable, "-c", OPEN_AND_COUNT, uri], capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr[-2000:]
    assert other.stdout.strip() == "1"
    store.open()  # and this process can open it again
    assert len(store.get(MemoryFilter(communities=["c1"]))) == 1
    store.close()


def test_a_lite_path_that_does_not_end_in_db_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="ending in .db"):
        MemoryStore(str(tmp_path / "memory"), "c", 4).open()


def test_a_row_milvus_lite_holds_twice_after_a_crash_is_searched_and_counted_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lite 3.2 can hold a row twice after kill -9 between a flush and its WAL's removal (seen in the
    # durability test: same id, same created_at); its dense search and iterators then return it twice.
    store = MemoryStore(str(tmp_path / "twice.db"), "c", 4, index_type="FLAT")
    store.open()
    try:
        store.insert([indexed(MemoryRecord("a", "twice", "c1", "note", [], "x", 1, "h", {}), [1.0, 0.0, 0.0, 0.0]),
                      indexed(MemoryRecord("b", "once", "c1", "note", [], "x", 2, "h2", {}), [0.0, 1.0, 0.0, 0.0])])
        real_search, real_query = store.client.search, store.client.query

        def search_twice(*args: object, **kwargs: object) -> list[list[dict[str, object]]]:
            hits = real_search(*args, **kwargs)[0]
            return [[hits[0], *hits]]  # the best hit repeated, as Lite returns a replayed row

        def query_twice(*args: object, **kwargs: object) -> list[dict[str, Any]]:
            rows: list[dict[str, Any]] = real_query(*args, **kwargs)
            return [*rows, *(row for row in rows if row["id"] == "a")]  # as Lite's iterator returns a replayed row

        monkeypatch.setattr(store.client, "search", search_twice)
        monkeypatch.setattr(store.client, "query", query_twice)
        found = store.search_dense(MemoryFilter(communities=["c1"]), [1.0, 0.0, 0.0, 0.0], 5)
        assert [r.id for r, _ in found] == ["a", "b"]
        assert sorted(row["id"] for row in store.scan(["c1"], ["kind"])) == ["a", "b"]
    finally:
        store.close()


@pytest.mark.anyio
async def test_stats_and_search_follow_the_collections_index_not_the_setting(tmp_path: Path) -> None:
    uri = str(tmp_path / "index.db")
    first = Runtime(Settings(milvus_uri=uri, memory_index_type="FLAT"))
    async with first.running(own=True), create_connected_server_and_client_session(build_server(first)) as session:
        await call(session, "remember", content="made with an exact index")
    again = Runtime(Settings(milvus_uri=uri, memory_index_type="HNSW"))  # the setting changed since
    async with again.running(own=True), create_connected_server_and_client_session(build_server(again)) as session:
        assert (await call(session, "stats"))["index_type"] == "FLAT"
        assert again.service is not None and again.service.store.index_type == "FLAT"  # what search_params uses
        assert (await call(session, "recall", query="exact index"))["hits"]


def test_a_search_leaves_out_a_memory_that_expired_within_the_second_its_filter_is_written_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A search's filter holds its time rounded down to the second (MemoryFilter.loose_live), so that
    # Milvus compiles one text a second; a memory that expired since that second began is found by it,
    # and the search is made again with the exact time.
    store = MemoryStore(str(tmp_path / "loose.db"), "c", 4, index_type="FLAT")
    store.open()
    try:
        expires = 1_800_000_000_500  # half a second into its second
        rows = [MemoryRecord("gone", "freeze starts friday", "c1", "note", [], "x", 1, "h1", {}, expires_at=expires),
                MemoryRecord("kept", "freeze starts monday", "c1", "note", [], "x", 1, "h2", {}),
                MemoryRecord("later", "freeze starts sunday", "c1", "note", [], "x", 1, "h3", {},
                             expires_at=expires + 1000)]
        store.insert([indexed(r, v) for r, v in zip(rows, ([1.0, 0, 0, 0], [0.9, 0.1, 0, 0], [0.8, 0.2, 0, 0]),
                                                    strict=True)])
        exprs: list[str] = []
        searched = MemoryStore._search_expr

        def spy(self: MemoryStore, flt: MemoryFilter, expr: str, *args: Any) -> Any:
            exprs.append(expr)
            return searched(self, flt, expr, *args)

        monkeypatch.setattr(MemoryStore, "_search_expr", spy)
        for live_at, ids, searches in [(expires - 100, ["gone", "kept", "later"], 1),  # not expired yet
                                       (expires + 100, ["kept", "later"], 2),  # expired 0.1 s ago: searched again
                                       (expires + 600, ["kept", "later"], 1)]:  # the next second: left out at once
            exprs.clear()
            flt = MemoryFilter(communities=["c1"], live_at_ms=live_at)
            assert [r.id for r, _ in store.search_dense(flt, [1.0, 0, 0, 0], 10)] == ids
            assert exprs == [flt.expression(live_at - live_at % 1000), flt.expression()][:searches]
            assert [r.id for r, _, _ in store.candidates(flt, [1.0, 0, 0, 0], {}, 10)] == ids
    finally:
        store.close()
