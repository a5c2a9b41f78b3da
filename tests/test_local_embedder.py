"""The local model's direct pass (`embeddings._direct_forward`): bit for bit what
SentenceTransformer.encode gives, or not used at all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from mcp_memory_server import embeddings
from mcp_memory_server.embeddings import LocalEmbedder, _encode

TEXTS = ["what does the audit log keep?", "", "   spaces around   ", "Grüße, 日本語のテキスト and an emoji 🚀",
         "tabs\tand\nnew lines", "word " * 400,  # longer than the model reads: truncated at 256 tokens
         "ok", "a somewhat longer sentence about the staging cluster and who owns its certificates",
         "what does the audit log keep?"]


def test_the_direct_pass_gives_what_encode_gives_bit_for_bit() -> None:
    embedder = LocalEmbedder(batch_size=4)  # 9 texts: three batches, sorted longest first as encode sorts them
    embedder.warm_up()
    assert embedder.direct
    model = embedder._model
    together = np.asarray(embedder.embed(TEXTS), dtype=np.float32)
    assert np.array_equal(together, _encode(model, TEXTS, 4))
    for text in TEXTS:
        alone = np.asarray(embedder.embed([text]), dtype=np.float32)
        assert np.array_equal(alone, _encode(model, [text], 4))
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-6)


class _Skewed:
    """The real model, except that `encode` gives slightly other numbers (or lacks an attribute)."""

    def __init__(self, inner: Any, *, skew: float = 0.0, drop: str = "") -> None:
        self._inner, self._skew, self._drop = inner, skew, drop

    def __getattr__(self, name: str) -> Any:
        if name == self._drop:
            raise AttributeError(name)
        return getattr(self._inner, name)

    def encode(self, texts: Sequence[str], **options: Any) -> Any:
        vectors = self._inner.encode(texts, **options)
        vectors[:, 0] += self._skew
        return vectors


@pytest.mark.parametrize("skew, drop", [(1e-7, ""), (0.0, "tokenizer")], ids=["one ulp off", "no tokenizer"])
def test_a_direct_pass_that_does_not_reproduce_encode_is_not_used(monkeypatch: pytest.MonkeyPatch, skew: float,
                                                                    drop: str) -> None:
    real = embeddings._load_local_model()
    assert embeddings._direct_forward(real, 64) is not None
    skewed = _Skewed(real, skew=skew, drop=drop)
    assert embeddings._direct_forward(skewed, 64) is None
    monkeypatch.setattr(embeddings, "_load_local_model", lambda: skewed)
    embedder = LocalEmbedder()
    embedder.warm_up()
    assert not embedder.direct
    assert embedder.embed(["ok"]) == [v.tolist() for v in skewed.encode(["ok"], batch_size=64,
                                                                          normalize_embeddings=True,
                                                                          show_progress_bar=False,
                                                                          convert_to_numpy=True)]
