"""Merge concurrent embedding calls into one model call.

A hub serving many clients embeds one short text per `remember` or `recall`. One model call on
16 texts costs little more than on one, so the embed calls that arrive while the model is busy
are queued and then embedded together: throughput grows with the number of clients instead of
each call waiting its turn behind all the others.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from .embeddings import Embedder


@dataclass
class _Job:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: list[list[float]] | None = None
    error: BaseException | None = None


class CoalescingEmbedder:
    """An `Embedder` wrapping another one. Thread-safe and blocking: callers queue their texts and
    wait; one worker thread embeds everything queued (up to `max_texts` per model call). The worker
    starts on the first call and ends after `idle_seconds` without work. An error reaches every
    caller of the failed model call."""

    def __init__(self, inner: Embedder, max_texts: int = 256, idle_seconds: float = 10.0) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self._max_texts = max_texts
        self._idle_seconds = idle_seconds
        self._work = threading.Condition()
        self._queue: list[_Job] = []
        self._worker: threading.Thread | None = None

    @property
    def loaded(self) -> bool:
        return bool(getattr(self.inner, "loaded", True))

    def warm_up(self) -> None:
        self.inner.warm_up()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        job = _Job(list(texts))
        with self._work:
            self._queue.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="embed-coalescer", daemon=True)
                self._worker.start()
            self._work.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.vectors is not None
        return job.vectors

    def _run(self) -> None:
        while True:
            with self._work:
                if not self._work.wait_for(lambda: bool(self._queue), timeout=self._idle_seconds):
                    self._worker = None
                    return
                batch: list[_Job] = []
                size = 0
                while self._queue and (not batch or size + len(self._queue[0].texts) <= self._max_texts):
                    job = self._queue.pop(0)
                    batch.append(job)
                    size += len(job.texts)
            try:
                vectors = self.inner.embed([text for job in batch for text in job.texts])
            except Exception as exc:  # handed to every waiting caller, who re-raises it
                for job in batch:
                    job.error = exc
                    job.done.set()
                continue
            start = 0
            for job in batch:
                job.vectors = vectors[start:start + len(job.texts)]
                start += len(job.texts)
                job.done.set()
