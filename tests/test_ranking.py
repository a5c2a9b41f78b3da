"""Ranking through the real service and Milvus Lite, with a deterministic embedder: the order of
hits follows from the words the memories share with the query, exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mcp_memory_server.config import Settings
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.keywords import KeywordStats, doc_sparse, query_sparse, term_id
from mcp_memory_server.models import MemoryIn, RecallIn, RememberManyIn
from mcp_memory_server.service import MemoryService
from mcp_memory_server.store import MemoryStore
from tests.fakes import WordHashEmbedder

pytestmark = pytest.mark.anyio

MEMORIES = ["red apples grow on trees", "apples and pears", "the sea is deep and blue", "green apples taste sour"]


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[MemoryService]:
    embedder = WordHashEmbedder()
    store = MemoryStore(settings.milvus_uri, "ranking", embedder.dimension, index_type="FLAT")
    svc = MemoryService(settings, store, embedder)
    await svc.open()
    await svc.remember_many(RememberManyIn(memories=[MemoryIn(content=m, community="c") for m in MEMORIES]))
    try:
        yield svc
    finally:
        await svc.close()


async def test_semantic_recall_ranks_by_the_embedders_cosine_exactly(service: MemoryService) -> None:
    embedder = service.embedder
    assert isinstance(embedder, WordHashEmbedder)
    query = "sour green apples"
    found = await service.recall(RecallIn(query=query, community="c", k=4, mode="semantic"))
    q = embedder.vector(query)
    expected = sorted(MEMORIES, key=lambda m: -sum(a * b for a, b in zip(q, embedder.vector(m), strict=True)))
    assert [h.content for h in found.hits] == expected
    assert found.hits[0].content == "green apples taste sour"
    assert found.hits[0].dense == pytest.approx(sum(a * b for a, b in zip(q, embedder.vector(expected[0]),
                                                                            strict=True)), abs=1e-4)


async def test_the_stored_vector_is_the_embedding_of_the_content(service: MemoryService) -> None:
    rows = service.store.get_indexed(MemoryFilter(communities=["c"]))
    embedder = service.embedder
    assert isinstance(embedder, WordHashEmbedder)
    for row in rows:
        assert row.dense == pytest.approx(embedder.vector(row.record.content), abs=1e-6)


async def test_hybrid_recall_puts_a_memory_found_by_both_sides_first(service: MemoryService) -> None:
    found = await service.recall(RecallIn(query="deep blue sea", community="c", k=2))
    assert found.hits[0].content == "the sea is deep and blue"


def test_a_query_word_the_statistics_have_not_counted_weighs_only_where_they_may_lag() -> None:
    stats = KeywordStats()
    for text in ["kafka brokers", "kafka topics", "the payments api"]:
        sparse, length = doc_sparse(text, [], 0.0)
        stats.add(sparse, length)
    kafka, retention, payments = (term_id(w) for w in ("kafka", "retention", "payment"))
    exact = query_sparse("kafka retention for payments", stats)
    assert set(exact) == {kafka, payments}  # exact statistics: no memory holds "retention"
    lagging = query_sparse("kafka retention for payments", stats, unseen=True)
    assert {t: lagging[t] for t in exact} == exact
    assert lagging[retention] == stats.idf(payments) > stats.idf(kafka) > 0  # as rare as a word of one memory
    assert query_sparse("retention", stats) == {} and set(query_sparse("retention", stats, True)) == {retention}
