"""Replacing an expert's profile never leaves the expert without one: the new lines go in before
the old ones go out, unchanged lines keep their ids, and the tool says that it replaces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from mcp import ClientSession

from mcp_memory_server.errors import StoreError
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import IndexedMemory, LatestIn
from mcp_memory_server.routing import EXPERT_KINDS
from tests.conftest import call, call_error

pytestmark = pytest.mark.anyio

DB_EXPERT = {"agent_id": "db_expert", "community": "support",
             "description": "Answers questions about relational databases: SQL queries, indexes, transactions and "
                            "PostgreSQL administration.",
             "skills": ["slow SQL queries and query plans", "PostgreSQL replication and backups"]}
WEB_EXPERT = {"agent_id": "web_expert", "community": "support",
              "description": "Builds web front ends: HTML, CSS, JavaScript, React components and browser issues.",
              "skills": ["React state management", "CSS layout with flexbox and grid"]}
QUESTION = "My SELECT with three JOINs takes forty seconds, how do I make it faster?"


def lines(runtime: Runtime, agent_id: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """The expert's profile and skill memories as stored: id -> (kind, content, metadata)."""
    assert runtime.service is not None
    found = runtime.service.store.get(MemoryFilter(communities=["support"], kinds=list(EXPERT_KINDS),
                                                   agent_ids=[agent_id]))
    return {r.id: (r.kind, r.content, r.metadata) for r in found}


async def routed(client: ClientSession) -> list[str]:
    return [e["agent_id"] for e in (await call(client, "route", question=QUESTION, community="support"))["experts"]]


async def test_a_replacement_whose_insert_fails_keeps_the_old_profile_and_route_still_names_the_expert(
        runtime: Runtime, client: ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    await call(client, "register_expert", **DB_EXPERT)
    await call(client, "register_expert", **WEB_EXPERT)
    before = lines(runtime, "db_expert")
    assert len(before) == 3 and (await routed(client))[0] == "db_expert"
    assert runtime.service is not None

    def refuse(rows: Sequence[IndexedMemory]) -> None:
        raise StoreError("Milvus call failed: refused for the test")

    monkeypatch.setattr(runtime.service.store, "insert", refuse)
    message = await call_error(client, "register_expert", agent_id="db_expert", community="support",
                               description="Answers questions about databases and data warehouses.",
                               skills=["BigQuery cost control"])
    assert "refused for the test" in message
    assert lines(runtime, "db_expert") == before
    assert (await routed(client))[0] == "db_expert"


async def test_a_replacement_keeps_unchanged_lines_drops_the_old_ones_and_refreshes_the_profile(
        runtime: Runtime, client: ClientSession) -> None:
    first = await call(client, "register_expert", **DB_EXPERT)
    kept_skill = DB_EXPERT["skills"][1]
    second = await call(client, "register_expert", **{**DB_EXPERT, "skills": [kept_skill, "MySQL indexes"]})
    after = lines(runtime, "db_expert")
    assert second["profile_id"] == first["profile_id"]  # the same description keeps its id ...
    assert after[second["profile_id"]][2] == {"skills": [kept_skill, "MySQL indexes"]}  # ... with the new skills
    assert sorted(content for kind, content, _ in after.values() if kind == "expert_skill") == [
        "MySQL indexes", kept_skill]
    assert len(after) == 3
    assert (await routed(client)) == ["db_expert"]


async def test_a_skill_that_becomes_the_description_is_stored_as_the_profile(
        runtime: Runtime, client: ClientSession) -> None:
    await call(client, "register_expert", **DB_EXPERT)
    promoted = DB_EXPERT["skills"][0]
    profile = await call(client, "register_expert", agent_id="db_expert", community="support", description=promoted)
    assert lines(runtime, "db_expert") == {profile["profile_id"]: ("expert_profile", promoted, {"skills": []})}


async def test_register_expert_says_it_replaces(client: ClientSession) -> None:
    tool = next(t for t in (await client.list_tools()).tools if t.name == "register_expert")
    assert tool.annotations is not None
    assert tool.annotations.destructiveHint is True and tool.annotations.idempotentHint is True
    assert tool.annotations.readOnlyHint is False


async def test_a_replacement_shows_at_once_in_the_newest_memories_and_the_expert_list(
        runtime: Runtime, client: ClientSession) -> None:
    assert runtime.service is not None
    service = runtime.service
    await call(client, "register_expert", **DB_EXPERT)
    newest = await service.latest(LatestIn(community="support"))  # read once, then kept in memory
    assert DB_EXPERT["skills"][0] in [m.content for m in newest.memories]
    kept_skill = DB_EXPERT["skills"][1]
    await call(client, "register_expert", **{**DB_EXPERT, "skills": [kept_skill, "MySQL indexes"]})
    newest = await service.latest(LatestIn(community="support"))
    assert sorted(m.content for m in newest.memories) == sorted([DB_EXPERT["description"], kept_skill,
                                                                  "MySQL indexes"])
    listed = (await service.experts("support")).experts
    assert [(e.agent_id, e.skills) for e in listed] == [("db_expert", [kept_skill, "MySQL indexes"])]
