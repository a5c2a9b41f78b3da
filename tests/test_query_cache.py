"""A recall's query is embedded once per distinct text (query_cache.py), and a recall hops to a
worker thread once: the model call and the search run in the same thread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import numpy as np
import pytest

from mcp_memory_server.embeddings import Embedder
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import MemoryIn, RecallIn
from mcp_memory_server.query_cache import QueryCache
from mcp_memory_server.service import MemoryService

pytestmark = pytest.mark.anyio


class Counting:
    """The service's embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dimension = inner, inner.name, inner.dimension
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def close(self) -> None:
        self.inner.close()


def service_of(runtime: Runtime) -> MemoryService:
    assert runtime.service is not None
    return runtime.service


async def test_a_repeated_query_skips_the_model_and_finds_the_same_memories(runtime: Runtime) -> None:
    service = service_of(runtime)
    await service.remember(MemoryIn(content="The on-call rotation changes every Monday at 9:00.", community="ops"))
    await service.remember(MemoryIn(content="Grafana dashboards live in the observability folder.", community="ops"))
    counting = Counting(service.embedder)
    service.embedder = counting  # type: ignore[assignment]
    query = "when does on-call change?"
    first = await service.recall(RecallIn(query=query, community="ops"))
    again = await service.recall(RecallIn(query=query, community="ops"))
    semantic = await service.recall(RecallIn(query=query, community="ops", mode="semantic"))
    assert counting.texts == [query]
    assert [h.model_dump() for h in again.hits] == [h.model_dump() for h in first.hits]
    assert "Monday" in first.hits[0].content and "Monday" in semantic.hits[0].content
    await service.recall(RecallIn(query="where are the dashboards?", community="ops"))
    assert counting.texts == [query, "where are the dashboards?"]


async def test_a_recall_hops_to_a_worker_thread_once(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    service = service_of(runtime)
    await service.remember(MemoryIn(content="Releases are tagged from the main branch.", community="dev"))
    hops: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    for mode in ("hybrid", "semantic", "keyword"):
        hops.clear()
        found = await service.recall(RecallIn(query=f"which branch are releases tagged from ({mode})?",
                                              community="dev", mode=mode))
        assert found.hits and len(hops) == 1, (mode, hops)


def test_the_query_cache_keeps_the_most_recently_used_queries_as_float32() -> None:
    cache = QueryCache(2)
    cache.put("a", [0.1, 0.2])
    cache.put("b", [0.3, 0.4])
    assert cache.get("a") == np.asarray([0.1, 0.2], dtype=np.float32).tolist()  # a is now the newest
    cache.put("c", [0.5, 0.6])
    assert len(cache) == 2 and cache.get("b") is None and cache.get("a") is not None
    assert cache._vectors["c"].dtype == np.float32
    none = QueryCache(0)
    none.put("a", [1.0])
    assert none.get("a") is None and len(none) == 0
