"""A deterministic embedder for tests of ranking (the pattern of simonw/llm's test embedding model):
every word adds one to the dimension its hash picks, so texts that share words point the same way
and a vector can be asserted exactly. No model, no threads, instant."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from mcp_memory_server.keywords import doc_sparse
from mcp_memory_server.models import IndexedMemory, MemoryRecord


def indexed(record: MemoryRecord, vector: Sequence[float]) -> IndexedMemory:
    """`record` as the store takes it: with `vector` as its dense vector and its keyword vector."""
    sparse, length = doc_sparse(record.content, (), 0.0)
    return IndexedMemory(record, list(vector), sparse, length)


class WordHashEmbedder:
    """`Embedder` for tests: bag of words hashed into `dimension` buckets, unit length."""

    name = "test:word-hash"
    loaded = True

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension
        self.calls: list[list[str]] = []

    def warm_up(self) -> None:
        return None

    def vector(self, text: str) -> list[float]:
        counts = [0.0] * self.dimension
        for word in re.findall(r"\w+", text.lower()):
            counts[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
        norm = math.sqrt(sum(c * c for c in counts)) or 1.0
        return [c / norm for c in counts]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self.vector(t) for t in texts]

    def close(self) -> None:
        return None
