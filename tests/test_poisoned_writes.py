"""Values Milvus would refuse are refused up front with a message naming them, and a write that
Milvus refuses anyway fails alone: concurrent writes of other callers, merged into the same
insert by the group commit (writes.py), still succeed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from mcp import ClientSession

from mcp_memory_server import validation
from mcp_memory_server.access import ANYONE
from mcp_memory_server.errors import InvalidInput
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import IndexedMemory, MemoryIn
from tests.conftest import Hub, call, call_error
from tests.hub_sessions import ALPHA, BETA, auth_hub, http_session

pytestmark = pytest.mark.anyio

BEYOND_INT64 = 10**30


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"x": BEYOND_INT64}, "metadata['x'] is an integer of 100 bits, outside the 64-bit range Milvus stores"),
        ({"x": -(2**63) - 1}, "outside the 64-bit range"),
        ({"ok": [1, {"deep": 2**64}]}, "metadata['ok'][1]['deep'] is an integer of 65 bits"),
    ],
)
async def test_integers_milvus_cannot_store_are_a_tool_error_naming_them_and_store_nothing(
        client: ClientSession, metadata: dict[str, Any], expected: str) -> None:
    message = await call_error(client, "remember", content="a memory with a bad value", metadata=metadata)
    assert expected in message, message
    assert (await call(client, "stats"))["total"] == 0


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"content": "lone \ud800 surrogate"}, "content contains an unpaired surrogate ('\\ud800' at character 5)"),
        ({"tags": ["fine", "\udfff"]}, "tag contains an unpaired surrogate"),
        ({"kind": "note\ud800"}, "kind contains an unpaired surrogate"),
        ({"agent_id": "\ud800agent"}, "agent_id contains an unpaired surrogate"),
        ({"metadata": {"x": "half a pair \ud83d"}}, "metadata['x'] contains an unpaired surrogate"),
        ({"metadata": {"key \udc00": 1}}, "a key of metadata contains an unpaired surrogate"),
        ({"metadata": {"x": float("inf")}}, "metadata['x'] is inf, which JSON cannot hold"),
        ({"metadata": {"x": [float("nan")]}}, "metadata['x'][0] is nan, which JSON cannot hold"),
        ({"metadata": {1: "x"}}, "has the key 1, not a string"),
        ({"metadata": {"x": b"bytes"}}, "metadata['x'] is a bytes, not JSON"),
        ({"metadata": {"x": {1, 2}}}, "is a set, not JSON"),
    ],
)
async def test_what_milvus_or_json_cannot_hold_is_invalid_input_for_a_python_caller(
        runtime: Runtime, item: dict[str, Any], expected: str) -> None:
    """Python callers (in-process agents) can pass what no JSON client can: lone surrogates, NaN,
    non-string keys, bytes."""
    memory = await runtime.memory()
    fields = {"content": "from python", "community": None, "kind": "note", "tags": [], "metadata": {},
              "agent_id": None, **item}
    with pytest.raises(InvalidInput, match=re.escape(expected)):
        await memory.remember(MemoryIn.model_construct(**fields), ANYONE)
    assert (await memory.stats()).total == 0


async def test_values_at_the_edges_of_what_milvus_stores_are_kept_exactly(client: ClientSession) -> None:
    metadata = {"max": 2**63 - 1, "min": -(2**63), "huge": 1e308, "tiny": -5e-324, "nul": "a\x00b", "": [None, True]}
    await call(client, "remember", content="edge values \x00 and emoji \U0001f600", metadata=metadata)
    hit = (await call(client, "recall", query="edge values emoji"))["hits"][0]
    assert hit["metadata"] == metadata and hit["content"] == "edge values \x00 and emoji \U0001f600"


async def test_a_cyclic_metadata_object_is_refused_as_too_deep(runtime: Runtime) -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    memory = await runtime.memory()
    with pytest.raises(InvalidInput, match="nested 8\\+ levels deep, the limit is 6"):
        await memory.remember(MemoryIn.model_construct(content="cyclic", community=None, kind="note", tags=[],
                                                       metadata=cyclic, agent_id=None), ANYONE)


async def test_a_write_milvus_refuses_fails_alone_while_another_tokens_concurrent_writes_succeed(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The poison must reach the insert: let it past validation, as a value only Milvus refuses would.
    monkeypatch.setattr(validation, "metadata", lambda value, limits: value)
    merged: list[int] = []  # innocent rows in each insert that also held the poison

    with auth_hub(settings) as hub:
        store = _store(hub)
        real_insert = store.insert

        def spy(rows: Sequence[IndexedMemory]) -> None:
            records = [row.record for row in rows]
            if any(r.content.startswith("poison") for r in records):
                merged.append(sum(not r.content.startswith("poison") for r in records))
            real_insert(rows)

        monkeypatch.setattr(store, "insert", spy)
        innocent: dict[str, str] = {}
        poison_errors: list[str] = []
        writers_done = anyio.Event()

        async def write_innocently(number: int) -> None:
            async with http_session(hub.url, BETA) as beta:
                for i in range(4):
                    content = f"innocent note {number}-{i} from team beta"
                    innocent[content] = (await call(beta, "remember", content=content, community="team-beta"))["id"]

        async def poison() -> None:
            async with http_session(hub.url, ALPHA) as alpha:
                i = 0
                while not writers_done.is_set():
                    poison_errors.append(await call_error(alpha, "remember", content=f"poison {i}",
                                                          community="team-alpha", metadata={"x": BEYOND_INT64}))
                    i += 1

        with anyio.fail_after(180):
            async with anyio.create_task_group() as poisoners:
                poisoners.start_soon(poison)
                poisoners.start_soon(poison)
                async with anyio.create_task_group() as writers:
                    for number in range(12):
                        writers.start_soon(write_innocently, number)
                writers_done.set()
            async with http_session(hub.url, BETA) as beta:
                stored = (await call(beta, "stats"))["total"]

    print(f"\n{len(poison_errors)} poisoned writes; {len(merged)} inserts merged the poison with "
          f"{sum(merged)} innocent rows")
    assert len(innocent) == 48 and stored == 48
    assert poison_errors and all("64-bit range" in e for e in poison_errors)
    assert sum(merged) > 0, "no insert merged the poison with innocent writes: the test proved nothing"


def _store(hub: Hub) -> Any:
    service = hub.runtime.service
    assert service is not None
    return service.store
