"""Every tool through the SDK's in-memory client session, on real Milvus Lite in a temp dir."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mcp import ClientSession

from tests.conftest import call, call_error

pytestmark = pytest.mark.anyio


async def test_tools_are_listed_with_schemas_and_annotations(client: ClientSession) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"remember", "remember_many", "recall", "register_expert", "route", "update", "forget",
                          "stats", "list_communities", "export", "import"}
    for name in ("recall", "route", "stats", "list_communities", "export"):
        assert tools[name].annotations is not None and tools[name].annotations.readOnlyHint is True
    assert tools["forget"].annotations is not None and tools["forget"].annotations.destructiveHint is True
    assert tools["remember"].annotations is not None and tools["remember"].annotations.readOnlyHint is False
    recall_props = tools["recall"].inputSchema["properties"]
    assert {"query", "community", "communities", "k", "kinds", "tags", "agent_id", "since", "mode"} <= set(recall_props)
    assert tools["recall"].inputSchema["required"] == ["query"]
    assert tools["recall"].outputSchema is not None and "hits" in tools["recall"].outputSchema["properties"]
    assert all(t.description for t in tools.values())


async def test_remember_returns_an_id_and_recall_finds_it(client: ClientSession) -> None:
    stored = await call(client, "remember", content="The staging cluster runs Milvus 2.5 behind Traefik.",
                        community="platform", kind="fact", tags=["milvus", "staging"],
                        metadata={"source": "runbook", "page": 3}, agent_id="ops-bot")
    assert stored["community"] == "platform" and stored["duplicate"] is False and len(stored["id"]) == 32

    found = await call(client, "recall", query="which vector database version is on staging?", community="platform")
    hit = found["hits"][0]
    assert hit["id"] == stored["id"]
    assert hit["kind"] == "fact" and hit["tags"] == ["milvus", "staging"] and hit["agent_id"] == "ops-bot"
    assert hit["metadata"] == {"source": "runbook", "page": 3}
    assert abs(datetime.fromisoformat(hit["created_at"]) - datetime.now(UTC)) < timedelta(minutes=1)


async def test_identical_content_in_one_community_is_stored_once(client: ClientSession) -> None:
    first = await call(client, "remember", content="Use uv for fast installs.", community="py")
    again = await call(client, "remember", content="Use uv for fast installs.", community="py", kind="tip")
    elsewhere = await call(client, "remember", content="Use uv for fast installs.", community="other")
    assert again == {"id": first["id"], "community": "py", "duplicate": True}
    assert elsewhere["duplicate"] is False and elsewhere["id"] != first["id"]
    hits = (await call(client, "recall", query="fast installs", community="py"))["hits"]
    assert [h["id"] for h in hits] == [first["id"]]


async def test_remember_many_stores_a_batch_and_reports_duplicates(client: ClientSession) -> None:
    await call(client, "remember", content="already here", community="batch")
    memories = [{"content": f"batch fact number {i} about topic {i % 3}", "community": "batch", "kind": "fact"}
                for i in range(40)]
    memories += [{"content": "already here", "community": "batch"}, {"content": "batch fact number 0 about topic 0",
                                                                        "community": "batch", "kind": "fact"}]
    result = await call(client, "remember_many", memories=memories)
    assert result["stored"] == 40 and result["duplicates"] == 2
    assert [r["duplicate"] for r in result["results"]] == [False] * 40 + [True, True]
    assert result["results"][41]["id"] == result["results"][0]["id"]
    stats = await call(client, "stats")
    batch = next(c for c in stats["communities"] if c["community"] == "batch")
    assert batch["total"] == 41 and batch["kinds"] == {"fact": 40, "note": 1}


async def test_recall_modes_rank_by_meaning_and_by_words(client: ClientSession) -> None:
    await call(client, "remember_many", memories=[
        {"content": "The deploy pipeline failed because the Docker image was too large.", "community": "m"},
        {"content": "Our cat enjoys sleeping in the sun by the window.", "community": "m"},
        {"content": "Error code XJ-4471 means the license server is unreachable.", "community": "m"},
    ])
    semantic = await call(client, "recall", query="build container got too big", community="m", mode="semantic", k=1)
    assert "Docker image" in semantic["hits"][0]["content"] and semantic["mode"] == "semantic"
    keyword = await call(client, "recall", query="XJ-4471", community="m", mode="keyword", k=3)
    assert "license server" in keyword["hits"][0]["content"]
    assert all(h["score"] > 0 for h in keyword["hits"])
    hybrid = await call(client, "recall", query="what does XJ-4471 mean", community="m")
    assert "license server" in hybrid["hits"][0]["content"] and hybrid["mode"] == "hybrid"
    scores = [h["score"] for h in hybrid["hits"]]
    assert scores == sorted(scores, reverse=True)


async def test_recall_filters_on_kind_tags_agent_and_time(client: ClientSession) -> None:
    await call(client, "remember", content="retry the job with backoff", community="f", kind="answer",
               tags=["jobs"], agent_id="alice")
    await call(client, "remember", content="retry the job after clearing the cache", community="f", kind="note",
               tags=["cache"], agent_id="bob")
    by_kind = await call(client, "recall", query="retry the job", community="f", kinds=["answer"])
    assert [h["agent_id"] for h in by_kind["hits"]] == ["alice"]
    by_tag = await call(client, "recall", query="retry the job", community="f", tags=["cache", "nope"])
    assert [h["agent_id"] for h in by_tag["hits"]] == ["bob"]
    by_agent = await call(client, "recall", query="retry the job", community="f", agent_id="bob", mode="keyword")
    assert [h["agent_id"] for h in by_agent["hits"]] == ["bob"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await call(client, "recall", query="retry the job", community="f", since=future))["hits"] == []
    past = await call(client, "recall", query="retry the job", community="f", since="2020-01-01")
    assert len(past["hits"]) == 2


async def test_recall_k_limits_the_number_of_hits(client: ClientSession) -> None:
    await call(client, "remember_many", memories=[{"content": f"note {i} on release planning", "community": "k"}
                                                  for i in range(12)])
    assert len((await call(client, "recall", query="release planning", community="k", k=5))["hits"]) == 5
    assert len((await call(client, "recall", query="release planning", community="k", k=50))["hits"]) == 12


async def test_recall_across_several_communities(client: ClientSession) -> None:
    await call(client, "remember", content="Team A ships on Tuesdays.", community="team-a")
    await call(client, "remember", content="Team B ships on Fridays.", community="team-b")
    await call(client, "remember", content="Team C ships on Mondays.", community="team-c")
    both = await call(client, "recall", query="when do teams ship?", communities=["team-a", "team-b"])
    assert {h["community"] for h in both["hits"]} == {"team-a", "team-b"}
    assert sorted(both["communities"]) == ["team-a", "team-b"]
    everywhere = await call(client, "recall", query="when do teams ship?", communities=["*"])
    assert {h["community"] for h in everywhere["hits"]} == {"team-a", "team-b", "team-c"}


async def test_forget_by_ids_and_by_filter(client: ClientSession) -> None:
    a = await call(client, "remember", content="temporary note one", community="tmp", tags=["scratch"])
    await call(client, "remember", content="temporary note two", community="tmp", tags=["scratch"])
    await call(client, "remember", content="keeper", community="tmp", kind="fact", agent_id="carol")
    assert (await call(client, "forget", ids=[a["id"]], community="tmp")) == {"deleted": 1}
    assert (await call(client, "forget", ids=[a["id"]], community="tmp")) == {"deleted": 0}
    assert (await call(client, "forget", community="tmp", tags=["scratch"])) == {"deleted": 1}
    left = await call(client, "recall", query="note", community="tmp")
    assert [h["content"] for h in left["hits"]] == ["keeper"]
    assert (await call(client, "forget", community="tmp", agent_id="carol", kinds=["note"])) == {"deleted": 0}
    assert (await call(client, "forget", community="tmp", agent_id="carol")) == {"deleted": 1}


async def test_forget_without_ids_or_filter_is_refused(client: ClientSession) -> None:
    await call(client, "remember", content="do not wipe me", community="safe")
    message = await call_error(client, "forget", community="safe")
    assert "forget needs ids" in message
    assert len((await call(client, "recall", query="wipe", community="safe"))["hits"]) == 1


async def test_stats_and_list_communities_count_per_community_and_kind(client: ClientSession) -> None:
    await call(client, "remember_many", memories=[
        {"content": "q1", "community": "alpha", "kind": "question"},
        {"content": "a1", "community": "alpha", "kind": "answer"},
        {"content": "a2", "community": "alpha", "kind": "answer"},
        {"content": "n1", "community": "beta"},
    ])
    stats = await call(client, "stats")
    assert stats["total"] == 4
    assert stats["embedder"] == "local:all-MiniLM-L6-v2" and stats["dimension"] == 384
    assert stats["index_type"] and stats["store_uri"].endswith("memory.db")
    listed = (await call(client, "list_communities"))["communities"]
    assert listed == [{"community": "alpha", "total": 3, "kinds": {"answer": 2, "question": 1}},
                      {"community": "beta", "total": 1, "kinds": {"note": 1}}]


async def test_register_expert_then_route_names_it_with_reason_and_evidence(client: ClientSession) -> None:
    profile = await call(client, "register_expert", agent_id="db_expert", community="support",
                         description="Answers questions about relational databases: SQL queries, indexes, "
                                     "transactions and PostgreSQL administration.",
                         skills=["slow SQL queries and query plans", "PostgreSQL replication and backups"])
    await call(client, "register_expert", agent_id="web_expert", community="support",
               description="Builds web front ends: HTML, CSS, JavaScript, React components and browser issues.",
               skills=["React state management", "CSS layout with flexbox and grid"])
    assert profile["skills"] == ["slow SQL queries and query plans", "PostgreSQL replication and backups"]
    routed = await call(client, "route", question="My SELECT with three JOINs takes forty seconds, how do I "
                                                  "make it faster?", community="support")
    assert routed["experts"], "a database question found no expert"
    best = routed["experts"][0]
    assert best["agent_id"] == "db_expert" and 0 < best["score"] <= 1 and best["reason"]
    assert profile["profile_id"] in best["memory_ids"] or best["memory_ids"]

    # re-registering replaces the profile instead of piling up skills
    await call(client, "register_expert", agent_id="db_expert", community="support",
               description="Answers questions about relational databases.", skills=["SQL"])
    stats = await call(client, "stats")
    support = next(c for c in stats["communities"] if c["community"] == "support")
    assert support["kinds"] == {"expert_profile": 2, "expert_skill": 3}


async def test_route_in_a_community_without_experts_returns_an_empty_list(client: ClientSession) -> None:
    await call(client, "remember", content="just a note", community="quiet")
    assert (await call(client, "route", question="who can help with kubernetes?", community="quiet"))["experts"] == []


async def test_recall_over_every_community_names_the_communities_it_searched(client: ClientSession) -> None:
    for community in ("ops", "dev", "sales"):
        await call(client, "remember", content=f"the {community} team meets on Mondays", community=community)
    found = await call(client, "recall", query="when does the team meet?", communities=["*"])
    assert found["communities"] == ["dev", "ops", "sales"]
    assert {h["community"] for h in found["hits"]} == {"dev", "ops", "sales"}
    await call(client, "remember", content="the legal team meets on Fridays", community="legal")
    assert (await call(client, "recall", query="meets", communities=["*"]))["communities"] == [
        "dev", "legal", "ops", "sales"]
    await call(client, "forget", community="ops", kinds=["note"])
    assert (await call(client, "recall", query="meets", communities=["*"]))["communities"] == ["dev", "legal", "sales"]


async def test_tool_descriptions_carry_no_docstring_indentation(client: ClientSession) -> None:
    def descriptions(schema: object) -> list[str]:
        if isinstance(schema, dict):
            own = [schema["description"]] if isinstance(schema.get("description"), str) else []
            return own + [d for value in schema.values() for d in descriptions(value)]
        if isinstance(schema, list):
            return [d for value in schema for d in descriptions(value)]
        return []

    for tool in (await client.list_tools()).tools:
        texts = [tool.description or ""] + descriptions(tool.inputSchema) + descriptions(tool.outputSchema)
        for text in texts:
            assert text.strip() and "\n " not in text and not text.startswith(" "), (tool.name, text)
