"""The glossary's definitions as vectors (`glossary_vectors`): the file shipped for the local model
is complete and agrees with the model; other embedders, and a model that disagrees, embed them."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mcp_memory_server import glossary, glossary_vectors
from mcp_memory_server.embeddings import LocalEmbedder
from tests.fakes import WordHashEmbedder

pytestmark = pytest.mark.anyio

LOCAL = "local:all-MiniLM-L6-v2"


def test_the_shipped_vectors_hold_every_shipped_definition_and_the_local_model_gives_them() -> None:
    vectors = glossary_vectors.shipped(LOCAL)
    expected = set(glossary.shipped().values())
    assert set(vectors) == expected, (
        "glossary.tsv changed: run `python -m mcp_memory_server.glossary_vectors` to rewrite the vectors")
    assert glossary_vectors.shipped("openai:text-embedding-3-small") == {}
    sample = sorted(expected)[:: max(1, len(expected) // 6)]  # spread over the file, short and long ones
    computed = LocalEmbedder().embed(sample)
    assert glossary_vectors.agree(computed, [vectors[t] for t in sample])
    assert not glossary_vectors.agree(computed, [vectors[t] for t in reversed(sample)])


async def test_another_embedder_embeds_every_definition_in_chunks_and_gets_unit_rows() -> None:
    embedder = WordHashEmbedder()
    texts = sorted(set(glossary.shipped().values()))[:150]

    async def embed(batch: list[str]) -> list[list[float]]:
        return embedder.embed(batch)

    rows = await glossary_vectors.vectors(texts, embedder.name, embed)
    assert rows.shape == (150, embedder.dimension)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert np.allclose(rows[7], embedder.vector(texts[7]), atol=1e-6)
    assert [len(batch) for batch in embedder.calls] == [64, 64, 22]


async def test_a_local_model_that_disagrees_with_the_shipped_vectors_embeds_them_all(
        caplog: pytest.LogCaptureFixture) -> None:
    embedder = WordHashEmbedder(dimension=384)  # stands in for a local model whose vectors differ
    texts = sorted(set(glossary.shipped().values()))[:70]

    async def embed(batch: list[str]) -> list[list[float]]:
        return embedder.embed(batch)

    with caplog.at_level(logging.WARNING, logger="mcp_memory_server.glossary_vectors"):
        rows = await glossary_vectors.vectors(texts, LOCAL, embed)
    assert "do not match" in caplog.text
    assert len(embedder.calls[0]) == glossary_vectors.CHECKED  # the check, then all of them
    assert sum(len(batch) for batch in embedder.calls[1:]) == 70
    assert np.allclose(rows[3], embedder.vector(texts[3]), atol=1e-6)


async def test_the_local_model_embeds_only_the_check_and_the_definitions_the_file_lacks() -> None:
    model, asked = LocalEmbedder(), []
    extra = "Zorblax: our billing service's message queue."
    texts = (*sorted(set(glossary.shipped().values())), extra)

    async def embed(batch: list[str]) -> list[list[float]]:
        asked.append(batch)
        return model.embed(batch)

    rows = await glossary_vectors.vectors(texts, LOCAL, embed)
    assert [len(batch) for batch in asked] == [glossary_vectors.CHECKED, 1] and asked[1] == [extra]
    assert rows.shape == (len(texts), 384)
    assert np.allclose(rows[-1], model.embed([extra])[0], atol=1e-6)
