"""The glossary's definitions as vectors: the knowledge an expert's profile implies, for `route`
(`routing.implied_by`).

Embedding the ~1,340 shipped definitions takes ~10 s of a CPU core with the local model, so their
vectors under the default model ship with the package (`glossary_vectors.npz`, written by
`python -m mcp_memory_server.glossary_vectors` after any change to `glossary.tsv`; a test fails
until it is). A process reads them at its first `route` with an expert that has no memories,
re-embeds a few to check that its model gives the same vectors, and embeds only what the file lacks:
MEMORY_GLOSSARY's definitions, or every definition under another embedder (an OpenAI model: once per
process).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from . import glossary
from .embeddings import LocalEmbedder
from .routing import unit

log = logging.getLogger(__name__)

FILE = "glossary_vectors.npz"
CHECKED = 4  # shipped vectors re-embedded before the others are trusted
TOLERANCE = 1e-4  # largest difference of a component between the file and this process's model
CHUNK = 64  # definitions per embedding call


def shipped(embedder: str) -> dict[str, np.ndarray]:
    """definition -> vector from the shipped file, or nothing when it was made with another embedder."""
    with resources.files(__package__).joinpath(FILE).open("rb") as f, np.load(f, allow_pickle=False) as data:
        if str(data["embedder"]) != embedder:
            return {}
        return dict(zip((str(t) for t in data["texts"]), data["vectors"], strict=True))


def agree(computed: Sequence[Sequence[float]], stored: Sequence[np.ndarray]) -> bool:
    """Whether this process's model gives the stored vectors (to `TOLERANCE`)."""
    return bool(np.abs(np.asarray(computed, dtype=np.float32) - np.asarray(stored, dtype=np.float32)).max()
                <= TOLERANCE)


async def vectors(texts: Sequence[str], embedder: str,
                  embed: Callable[[list[str]], Awaitable[list[list[float]]]]) -> np.ndarray:
    """Unit-length rows, one per definition of `texts`: the shipped vectors where they exist and
    agree with `embed` on a sample, the rest embedded with `embed`."""
    known = shipped(embedder)
    sample = [t for t in texts if t in known][:CHECKED]
    if sample and not agree(await embed(sample), [known[t] for t in sample]):
        log.warning("the shipped glossary vectors do not match this %s model; embedding its %d definitions",
                    embedder, len(texts))
        known = {}
    missing = [t for t in texts if t not in known]
    if len(missing) > CHUNK:
        log.info("embedding %d glossary definitions for route (once per process)", len(missing))
    for start in range(0, len(missing), CHUNK):
        part = missing[start:start + CHUNK]
        known.update(zip(part, (np.asarray(v, dtype=np.float32) for v in await embed(part)), strict=True))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return unit(np.stack([known[t] for t in texts]).astype(np.float32))


def build(path: Path) -> int:
    """Write the shipped definitions' vectors under the local model to `path`; their number."""
    embedder = LocalEmbedder()
    texts = glossary.load().meanings  # the shipped glossary's
    rows = np.asarray([v for start in range(0, len(texts), CHUNK)
                       for v in embedder.embed(texts[start:start + CHUNK])], dtype=np.float32)
    with path.open("wb") as f:
        np.savez_compressed(f, embedder=np.asarray(embedder.name), texts=np.asarray(texts), vectors=rows)
    return len(texts)


if __name__ == "__main__":
    target = Path(__file__).with_name(FILE)
    print(f"{build(target)} definitions -> {target}")
