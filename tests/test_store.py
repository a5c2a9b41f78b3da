"""MemoryStore behaviour that callers rely on beyond the tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mcp_memory_server.errors import StoreError
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.store import MemoryRecord, MemoryStore

OPEN_AND_COUNT = """
import sys
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.store import MemoryStore
store = MemoryStore(sys.argv[1], "c", 4, index_type="FLAT")
store.open()
print(store.count(MemoryFilter(communities=None)))
store.close()
"""


def test_closing_the_store_releases_the_lite_database_for_another_process(tmp_path: Path) -> None:
    uri = str(tmp_path / "release.db")
    store = MemoryStore(uri, "c", 4, index_type="FLAT")
    store.open()
    store.insert([MemoryRecord("a", "hello", "c1", "note", [], "x", 1, "h", {})], [[1.0, 0.0, 0.0, 0.0]])
    store.close()  # this process lives on; the database must be free now
    other = subprocess.run([sys.executable, "-c", OPEN_AND_COUNT, uri], capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr[-2000:]
    assert other.stdout.strip() == "1"
    store.open()  # and this process can open it again
    assert store.count(MemoryFilter(communities=["c1"])) == 1
    store.close()


def test_a_lite_path_that_does_not_end_in_db_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="ending in .db"):
        MemoryStore(str(tmp_path / "memory"), "c", 4).open()
