"""The score of a recall hit through the MCP tools on real Milvus Lite, with the deterministic
embedder of tests/fakes.py so that every number can be checked: one calibrated scale in [0, 1] in
every mode, a function of the evidence the hit reports (`dense`, `keyword`), and that evidence the
same whichever mode reports it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session

from mcp_memory_server import embeddings
from mcp_memory_server.config import Settings
from mcp_memory_server.memory import Runtime
from mcp_memory_server.ranking import hybrid_score, is_when_question, keyword_score, semantic_score, states_a_time
from mcp_memory_server.server import build_server
from tests.conftest import call
from tests.fakes import WordHashEmbedder

pytestmark = pytest.mark.anyio

COMMUNITY = "garden"
EMBEDDER = WordHashEmbedder(384)
MEMORIES = [
    "The tomatoes in the greenhouse ripened in August",
    "We planted tomatoes and basil along the south wall",
    "Slugs ate most of the lettuce last week",
    "The greenhouse door hinge is broken",
    "Basil needs warmth and plenty of water",
    "The apple tree was pruned in February",
    "Compost the lettuce leaves and tomato stems",
]
QUERIES = ["tomatoes in the greenhouse", "when did the tomatoes ripen", "lettuce slugs", "basil water warmth"]


@pytest.fixture
async def word_client(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ClientSession]:
    """The real server and MCP client, the store opened with the word-hash embedder."""
    monkeypatch.setattr(embeddings, "build_embedder", lambda _settings: EMBEDDER)
    runtime = Runtime(settings)
    async with runtime.running(own=True):
        await runtime.wait_ready()
        async with create_connected_server_and_client_session(build_server(runtime)) as session:
            await call(session, "remember_many", memories=[{"content": m, "community": COMMUNITY} for m in MEMORIES])
            yield session


def cosine(a: str, b: str) -> float:
    return sum(x * y for x, y in zip(EMBEDDER.vector(a), EMBEDDER.vector(b), strict=True))


async def recall(client: ClientSession, query: str, mode: str) -> list[dict[str, Any]]:
    return list((await call(client, "recall", query=query, community=COMMUNITY, k=len(MEMORIES), mode=mode))["hits"])


async def test_every_modes_score_is_in_0_1_and_orders_the_hits(word_client: ClientSession) -> None:
    for query in QUERIES:
        for mode in ("hybrid", "semantic", "keyword"):
            scores = [h["score"] for h in await recall(word_client, query, mode)]
            assert scores, (query, mode)
            assert all(0.0 <= s <= 1.0 for s in scores), (query, mode, scores)
            assert scores == sorted(scores, reverse=True), (query, mode, scores)


async def test_a_hits_score_is_the_calibrated_function_of_the_evidence_it_reports(word_client: ClientSession) -> None:
    for query in QUERIES:
        for hit in await recall(word_client, query, "semantic"):
            assert hit["keyword"] is None
            assert hit["dense"] == pytest.approx(cosine(query, hit["content"]), abs=1e-5)
            assert hit["score"] == pytest.approx(semantic_score(hit["dense"]), abs=1e-5)
        for hit in await recall(word_client, query, "keyword"):
            assert hit["dense"] is None and hit["keyword"] > 0
            assert hit["score"] == pytest.approx(keyword_score(hit["keyword"]), abs=1e-5)
        for hit in await recall(word_client, query, "hybrid"):
            when = is_when_question(query) and states_a_time(hit["content"])
            assert hit["score"] == pytest.approx(hybrid_score(hit["dense"], hit["keyword"], when), abs=1e-5)


async def test_the_evidence_of_a_memory_is_the_same_whichever_mode_reports_it(word_client: ClientSession) -> None:
    for query in QUERIES:
        dense = {h["id"]: h["dense"] for h in await recall(word_client, query, "semantic")}
        keyword = {h["id"]: h["keyword"] for h in await recall(word_client, query, "keyword")}
        hybrid = await recall(word_client, query, "hybrid")
        assert {h["id"] for h in hybrid} <= set(dense)
        for hit in hybrid:
            # both sides computed exactly for every candidate, not filled in as 0 when one side missed it
            assert hit["dense"] == pytest.approx(dense[hit["id"]], abs=1e-5), (query, hit["content"])
            assert hit["keyword"] == pytest.approx(keyword.get(hit["id"], 0.0), abs=1e-5), (query, hit["content"])
        # and a memory found by both sides outranks what only one side finds, as the scale says
        both = [h for h in hybrid if h["keyword"] > 0 and h["dense"] > 0]
        assert both and hybrid[0]["id"] in {h["id"] for h in both}, query


async def test_a_clear_match_in_a_new_small_community_scores_as_a_match(client: ClientSession) -> None:
    """With the real embedder: in a community of two memories, the one that has every word of the
    question scores as a likely match in hybrid and keyword mode, the other stays near zero (keyword
    weights are computed as if a community held at least keywords.MIN_ROWS memories; with one or two,
    every word looked common and a perfect keyword match scored about 0.04)."""
    await call(client, "remember", content="The staging deploy uses blue-green switching.", community="tiny")
    await call(client, "remember", content="Lunch on Fridays is pizza in the kitchen.", community="tiny")
    question = {"query": "blue-green staging deploy", "community": "tiny"}
    hybrid = (await call(client, "recall", **question))["hits"]
    keyword = (await call(client, "recall", **question, mode="keyword"))["hits"]
    assert hybrid[0]["content"].startswith("The staging deploy") and hybrid[0]["score"] >= 0.3
    assert all(h["score"] < 0.05 for h in hybrid[1:])
    assert keyword[0]["content"].startswith("The staging deploy") and keyword[0]["score"] >= 0.2
