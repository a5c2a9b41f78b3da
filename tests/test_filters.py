"""The one function that writes user values into Milvus filter expressions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_memory_server.filters import MemoryFilter, quote, quote_list
from mcp_memory_server.models import MemoryRecord
from mcp_memory_server.store import MemoryStore
from tests.fakes import indexed

HOSTILE = [
    'x" or 1==1 or "',
    "x' or 1==1 or '",
    '" || community != "',
    "\\",
    '\\"',
    "\\\\\" or true or \"",
    "line\nbreak",
    "carriage\rreturn",
    "tab\there",
    "nul\x00byte",
    "emoji 😀 and ünïcödé",
    ") or (1 == 1",
    "]) or array_length(tags) >= 0 or ([",
    "%",
    "",
]


def test_quote_escapes_exactly_the_four_special_characters() -> None:
    assert quote("plain") == '"plain"'
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote("a\nb\rc") == '"a\\nb\\rc"'
    assert quote("tab\tand ünïcödé") == '"tab\tand ünïcödé"'
    assert quote_list(["a", 'b"']) == '["a", "b\\""]'


def test_filter_expression_always_scopes_to_communities() -> None:
    expr = MemoryFilter(communities=["a"], kinds=["k"], tags=["t"], agent_ids=["x"], since_ms=5).expression()
    assert expr.startswith('(community == "a")')
    assert '(kind in ["k"])' in expr and '(array_contains_any(tags, ["t"]))' in expr
    assert '(agent_id in ["x"])' in expr and "(created_at >= 5)" in expr
    with pytest.raises(ValueError):
        MemoryFilter(communities=[]).expression()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryStore]:
    """A real Milvus Lite store with one memory per hostile value, each in its own community."""
    path: Path = tmp_path_factory.mktemp("filters") / "f.db"
    s = MemoryStore(str(path), "filters", 4, index_type="FLAT")
    s.open()
    records = [MemoryRecord(id=f"id{i}", content=f"memory {i}", community=f"c{i % 2}", kind=value or "empty",
                            tags=[value], agent_id=value, created_at=i, content_hash=str(i))
               for i, value in enumerate(HOSTILE)]
    s.insert([indexed(r, [1.0, 0.0, 0.0, float(i)]) for i, r in enumerate(records)])
    yield s
    s.close()


@pytest.mark.parametrize("index", range(len(HOSTILE)))
def test_hostile_values_match_only_themselves(store: MemoryStore, index: int) -> None:
    value = HOSTILE[index]
    community = f"c{index % 2}"
    for flt in (MemoryFilter(communities=[community], agent_ids=[value]),
                MemoryFilter(communities=[community], tags=[value]),
                MemoryFilter(communities=[community], kinds=[value or "empty"])):
        assert [r.id for r in store.get(flt)] == [f"id{index}"], flt.expression()
    # the same value scoped to the other community finds nothing
    other = f"c{(index + 1) % 2}"
    assert store.get(MemoryFilter(communities=[other], agent_ids=[value])) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(max_size=40))
def test_arbitrary_strings_never_widen_a_filter(store: MemoryStore, value: str) -> None:
    expected = [f"id{i}" for i, v in enumerate(HOSTILE) if v == value and i % 2 == 0]
    found = store.get(MemoryFilter(communities=["c0"], agent_ids=[value], tags=[value]))
    assert sorted(r.id for r in found) == expected
