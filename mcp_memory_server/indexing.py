"""How a memory is indexed: with its thread context, into a dense vector and a keyword vector.

A memory written into a thread (a conversation, session, ticket, task) is found with the memories
before it in that thread, while its `content` is stored and returned exactly as given:

- dense: the mean of the embeddings of the content alone and of the content followed by the
  previous memory (content first, so that the embedder's truncation cuts context, never the
  memory); searched by inner product, the dense score is the mean of the two cosines.
- keyword: BM25 document weights over the memory's words and, at half weight, the words of the
  two memories before it (`keywords.doc_sparse`).

Measured on LoCoMo (one memory per conversation turn, thread = session): recall@5 0.49 without
context, 0.69 with it and the keyword encoding (benchmarks/locomo.py). Two previous memories, not
the next one: the next arrives later, and using it measured worse.

Order within a thread is `seq`: the time the memory happened (its `created_at`), then its place in
its batch. A memory written now goes after every memory of its thread, however long ago the last
one was (a thread continued days later keeps its context: measured, no time cut-off helps). A
memory whose `created_at` is earlier than some of its thread's (an import, a late arrival) takes
its place by time, and the memories after it are re-indexed with their new context; so are the
memories after one that is forgotten.

An import may bring each memory's dense vector (from the same embedder): it is kept when the memory's
context here is the one it had where it was exported (the same previous memory in its thread), and
the memory is embedded again otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import anyio.to_thread

from .embeddings import Embedder
from .filters import MemoryFilter
from .keywords import doc_sparse
from .models import IndexedMemory, MemoryRecord
from .progress import Progress, report
from .store import QUERY_LIMIT, MemoryStore
from .tallies import Tallies
from .writes import Writer

KEYWORD_CONTEXT = 2  # previous memories whose words index a memory
DENSE_CONTEXT = 1  # previous memories embedded with it
EMBED_CHUNK = 64  # memories embedded between two progress reports (the embedder's own calls are as short)

Thread = tuple[str, str]  # (community, thread)
# Dense vectors an import brings: memory id -> (vector, id of the memory before it in its thread there).
Given = dict[str, tuple[list[float], str | None]]


def dense_text(content: str, previous: Sequence[MemoryRecord]) -> str:
    """The second text embedded for a memory: its content, then the memory before it."""
    return "\n".join([content, *(p.content for p in previous[:DENSE_CONTEXT])])


def mean(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [(x + y) / 2.0 for x, y in zip(a, b, strict=True)]


class Indexer:
    """Indexes new memories and re-indexes the neighbours whose context they change."""

    def __init__(self, store: MemoryStore, embedder: Embedder, writer: Writer) -> None:
        self.store = store
        self.embedder = embedder
        self.writer = writer
        self._locks: dict[Thread, anyio.Lock] = defaultdict(anyio.Lock)

    @property
    def tallies(self) -> Tallies:
        return self.writer.tallies

    @asynccontextmanager
    async def threads_held(self, records: Iterable[MemoryRecord]) -> AsyncIterator[None]:
        """Hold the threads of `records` (in a fixed order: no deadlock) so that contexts computed
        while held stay true until the memories are committed."""
        async with AsyncExitStack() as stack:
            for key in sorted({(r.community, r.thread) for r in records if r.thread}):
                await stack.enter_async_context(self._locks[key])
            yield

    async def index(self, records: Sequence[MemoryRecord], appended: set[str], given: Given | None = None,
                    progress: Progress | None = None) -> tuple[list[IndexedMemory], list[MemoryRecord]]:
        """The new `records` indexed, and the existing memories after them in their threads whose
        context they change (to re-index once they are committed). `appended`: the records written
        now (no time of their own), which go after every memory of their thread. `given`: dense
        vectors an import brought (see the module docstring). Call with the threads held."""
        previous: dict[str, list[MemoryRecord]] = {}
        neighbours: dict[str, MemoryRecord] = {}
        for key, group in _by_thread(records).items():
            existing = await anyio.to_thread.run_sync(self._thread, key)
            last = max((r.seq for r in existing), default=-1)
            for r in sorted(group, key=lambda r: r.seq):
                if r.id in appended and r.seq <= last:  # the same millisecond as the thread's last memory
                    r.seq = last + 1
                last = max(last, r.seq)
            new_ids = {r.id for r in group}
            ordered = sorted([*existing, *group], key=lambda r: (r.seq, r.id))
            for i, r in enumerate(ordered):
                if r.id in new_ids:
                    previous[r.id] = list(reversed(ordered[max(0, i - KEYWORD_CONTEXT):i]))
                    for after in ordered[i + 1:i + 1 + KEYWORD_CONTEXT]:
                        if after.id not in new_ids:
                            neighbours[after.id] = after
        kept = {i: vector for i, (vector, before) in (given or {}).items()
                if [p.id for p in previous.get(i, [])[:DENSE_CONTEXT]] == ([before] if before else [])}
        return await self._vectors(records, previous, kept, progress), list(neighbours.values())

    async def reindex(self, community: str, thread: str, ids: Sequence[str]) -> None:
        """Re-index existing memories of a thread with their current context (call with it held)."""
        if not ids:
            return
        before = await anyio.to_thread.run_sync(lambda: self.store.get_indexed(
            MemoryFilter(communities=[community], ids=list(ids)), limit=len(ids)))
        ordered = await anyio.to_thread.run_sync(self._thread, (community, thread))
        previous = {r.id: list(reversed(ordered[max(0, i - KEYWORD_CONTEXT):i])) for i, r in enumerate(ordered)}
        after = await self._vectors([m.record for m in before], previous)
        await self.writer.reindex(before, after)

    async def remove(self, community: str, doomed: Sequence[IndexedMemory], *, lapsed_at: int | None = None) -> int:
        """Delete memories of `community` and re-index the memories after them in their threads with
        their new context; `lapsed_at`: only those still expired then (writes.Writer.delete).
        Returns how many were deleted."""
        gone = {m.record.id for m in doomed}
        async with self.threads_held(m.record for m in doomed):
            after = {key: await self.followers(key[0], key[1], group, gone)
                     for key, group in _by_thread(m.record for m in doomed).items()}
            deleted = await self.writer.delete(community, doomed, lapsed_at=lapsed_at)
            for (name, thread), ids in after.items():
                await self.reindex(name, thread, ids)
        return deleted

    async def followers(self, community: str, thread: str, doomed: Sequence[MemoryRecord],
                        gone: set[str]) -> list[str]:
        """The memories of a thread that follow `doomed` closely enough for their context to change
        once the memories `gone` are deleted (call with the thread held, before deleting)."""
        ordered = await anyio.to_thread.run_sync(self._thread, (community, thread))
        doomed_ids = {r.id for r in doomed}
        out: dict[str, None] = {}
        for i, r in enumerate(ordered):
            if r.id in doomed_ids:
                for after in ordered[i + 1:i + 1 + KEYWORD_CONTEXT]:
                    if after.id not in gone:
                        out[after.id] = None
        return list(out)

    def _thread(self, key: Thread) -> list[MemoryRecord]:
        community, thread = key
        rows = self.store.get(MemoryFilter(communities=[community], threads=[thread]), limit=QUERY_LIMIT)
        return sorted(rows, key=lambda r: (r.seq, r.id))

    async def _vectors(self, records: Sequence[MemoryRecord], previous: dict[str, list[MemoryRecord]],
                       kept: dict[str, list[float]] | None = None,
                       progress: Progress | None = None) -> list[IndexedMemory]:
        kept = kept or {}
        dense: dict[str, list[float]] = {}
        todo = [r for r in records if r.id not in kept]
        for start in range(0, len(todo), EMBED_CHUNK):
            dense.update(await self._embed(todo[start:start + EMBED_CHUNK], previous))
            await report(progress, start + len(todo[start:start + EMBED_CHUNK]), len(todo), "embedded")
        out = []
        for record in records:
            tally = await self.tallies.get(record.community)
            context = [p.content for p in previous.get(record.id, [])]
            sparse, length = doc_sparse(record.content, context, tally.keywords.avgdl)
            out.append(IndexedMemory(record, kept.get(record.id) or dense[record.id], sparse, length))
        return out

    async def _embed(self, records: Sequence[MemoryRecord],
                     previous: dict[str, list[MemoryRecord]]) -> dict[str, list[float]]:
        texts = [r.content for r in records]
        with_context = [r for r in records if previous.get(r.id)]
        texts += [dense_text(r.content, previous[r.id]) for r in with_context]
        # Abandoned when cancelled: a hub that stops does not wait for a model call nobody will read.
        vectors = await anyio.to_thread.run_sync(self.embedder.embed, texts, abandon_on_cancel=True)
        contextual = dict(zip((r.id for r in with_context), vectors[len(records):], strict=True))
        return {r.id: mean(vector, contextual[r.id]) if r.id in contextual else vector
                for r, vector in zip(records, vectors[:len(records)], strict=True)}


def _by_thread(records: Iterable[MemoryRecord]) -> dict[Thread, list[MemoryRecord]]:
    groups: dict[Thread, list[MemoryRecord]] = defaultdict(list)
    for r in records:
        if r.thread:
            groups[(r.community, r.thread)].append(r)
    return groups
