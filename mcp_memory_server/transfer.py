"""`export` and `import`: every memory out, as the lines of an export file (`exchange.py`), and back in.

Export pages through a snapshot: the first call lists the ids of every memory the caller may read in
the communities asked (one scan), newest last within each community, and later calls read them by id,
a page at a time, so that a page costs a key lookup however large the memory is. A snapshot is kept
for SNAPSHOT_TTL seconds after its last use and answers only the caller that began it; a memory
forgotten during the export is left out, one written during it is not in it.

Import checks every memory of a call before it writes any (a bad one is named by its line), keeps
each memory's time, thread order, expiry and, for a caller granted every community, its author
(others' imports carry their token's agent id, as their `remember`s do). It goes through the same
indexing as `remember`, so that a memory in a thread gets its context here; the dense vectors an
export brings are kept when they come from the same embedder and the context is the same
(`indexing.Given`), and are computed again otherwise. Ids are stable: importing twice stores once.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio.to_thread

from .access import Caller, read_scope
from .config import Limits
from .errors import Forbidden, InvalidInput
from .exchange import EXPORT_PAGE_MAX, ExportedMemory, ExportHeader, ExportIn, ExportPage, Imported, ImportIn
from .indexing import Given
from .models import MemoryIn, MemoryRecord
from .progress import Progress, report
from .records import is_live, iso, to_record

if TYPE_CHECKING:
    from .service import MemoryService

SNAPSHOT_TTL = 900.0  # seconds an unfinished export's snapshot is kept after its last page
MAX_SNAPSHOTS = 16  # unfinished exports kept at once (the oldest goes first)
_INT64_MAX = 2**63 - 1


@dataclass
class _Snapshot:
    caller: Caller
    header: ExportHeader
    ids: list[str]
    used_at: float


class Transfer:
    """`export` and `import` of a MemoryService."""

    def __init__(self, service: MemoryService) -> None:
        self.service = service
        self._snapshots: dict[str, _Snapshot] = {}

    async def export(self, request: ExportIn, caller: Caller, progress: Progress | None = None) -> ExportPage:
        """One page of the memories of `request.communities` (default: every community the caller
        may read), in export-file form. Raises InvalidInput for a bad limit or an unknown cursor,
        Forbidden / UnknownCommunity for a community the caller may not read or that is empty."""
        limit = request.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= EXPORT_PAGE_MAX:
            raise InvalidInput(f"limit must be a whole number from 1 to {EXPORT_PAGE_MAX}, got {limit!r}")
        token, offset = (await self._begin(request, caller), 0) if request.cursor is None else _cursor(request.cursor)
        snapshot = self._snapshots.get(token)
        if snapshot is None or snapshot.caller != caller or offset > len(snapshot.ids):
            raise InvalidInput(f"cursor {request.cursor!r} is not one this memory gave you, or its export was left "
                               f"unused for over {SNAPSHOT_TTL:.0f} s: start the export again without a cursor")
        snapshot.used_at = time.monotonic()
        header, ids = snapshot.header, snapshot.ids[offset:offset + limit]
        store = self.service.store
        found: dict[str, tuple[MemoryRecord, list[float] | None]]
        if header.vectors:
            rows = await anyio.to_thread.run_sync(store.get_indexed_by_ids, ids)
            found = {m.record.id: (m.record, m.dense) for m in rows}
        else:
            found = {r.id: (r, None) for r in await anyio.to_thread.run_sync(store.get_by_ids, ids)}
        now = int(time.time() * 1000)
        memories = [exported(*found[i]) for i in ids
                    if i in found and (header.expired or is_live(found[i][0], now))]
        done = offset + len(ids)
        if done >= len(snapshot.ids):
            self._snapshots.pop(token, None)
        await report(progress, done, header.count, "exported")
        return ExportPage(header=header, memories=memories, done=done,
                          next_cursor=f"{token}.{done}" if done < len(snapshot.ids) else None)

    async def _begin(self, request: ExportIn, caller: Caller) -> str:
        service = self.service
        scope = await read_scope(caller, None, request.communities or ["*"], exists=service.exists,
                                 default=service.settings.memory_default_community, limits=service.settings.limits)
        now = int(time.time() * 1000)
        rows = [] if scope == [] else await anyio.to_thread.run_sync(
            lambda: list(service.store.scan(scope, ["created_at", "seq", "expires_at"])))
        keep = [r for r in rows if request.include_expired or not 0 < int(r.get("expires_at") or 0) <= now]
        keep.sort(key=lambda r: (r["community"], int(r.get("created_at") or 0), int(r.get("seq") or 0), r["id"]))
        names = sorted({r["community"] for r in keep}) if scope is None else scope
        header = ExportHeader(embedder=service.embedder.name, dimension=service.embedder.dimension,
                              exported_at=iso(now), communities=names, vectors=request.vectors,
                              expired=request.include_expired, count=len(keep))
        stale = time.monotonic() - SNAPSHOT_TTL
        for old in [t for t, s in self._snapshots.items() if s.used_at < stale]:
            del self._snapshots[old]
        while len(self._snapshots) >= MAX_SNAPSHOTS:
            del self._snapshots[min(self._snapshots, key=lambda t: self._snapshots[t].used_at)]
        token = secrets.token_urlsafe(12)
        self._snapshots[token] = _Snapshot(caller, header, [r["id"] for r in keep], time.monotonic())
        return token

    async def import_memories(self, request: ImportIn, caller: Caller, progress: Progress | None = None) -> Imported:
        """Store memories of an export (see the module docstring). Every one is checked first: a bad
        one fails the call, names its line and nothing is stored. Memories that have expired are
        skipped; `dry_run` checks and stores nothing."""
        service, limits = self.service, self.service.settings.limits
        items = request.memories
        if not items:
            raise InvalidInput("nothing to import: pass at least one memory")
        if len(items) > limits.batch:
            raise InvalidInput(f"{len(items)} memories in one call, the limit is {limits.batch}: send them in "
                               "several calls")
        if request.lines is not None and len(request.lines) != len(items):
            raise InvalidInput(f"lines gives {len(request.lines)} line numbers for {len(items)} memories")
        usable = (request.embedder, request.dimension) == (service.embedder.name, service.embedder.dimension)
        # A caller granted every community restores memories as they were; others sign what they import.
        author = Caller(agent_id=None if caller.is_admin else caller.agent_id, communities=caller.communities)
        now = int(time.time() * 1000)
        records: list[MemoryRecord] = []
        vectors: dict[str, list[float]] = {}
        for i, item in enumerate(items):
            where = f"line {request.lines[i]}" if request.lines is not None else f"memory {i}"
            try:
                record = _record(item, author, now, i, service.settings.limits)
                if usable and item.dense is not None:
                    vectors[record.id] = _dense(item.dense, service.embedder.dimension)
            except (InvalidInput, Forbidden) as exc:
                raise type(exc)(f"{where}: {exc}") from exc
            if record.expires_at == 0 or record.expires_at > now:
                records.append(record)
        lapsed = len(items) - len(records)
        if request.dry_run or not records:
            return Imported(stored=0, duplicates=0, expired=lapsed, checked=len(items))
        inserted = await service.write(records, appended=set(), given=_given(records, vectors), progress=progress)
        await report(progress, len(records), len(records), "stored")
        return Imported(stored=len(inserted), duplicates=len(records) - len(inserted), expired=lapsed,
                        checked=len(items))


def exported(record: MemoryRecord, dense: list[float] | None = None) -> ExportedMemory:
    """A stored memory as a line of an export file."""
    return ExportedMemory(id=record.id, content=record.content, community=record.community, kind=record.kind,
                          tags=list(record.tags or []), agent_id=record.agent_id, thread=record.thread or None,
                          seq=record.seq, created_at=iso(record.created_at),
                          expires_at=iso(record.expires_at) if record.expires_at else None,
                          metadata=dict(record.metadata or {}), dense=dense)


def _record(item: ExportedMemory, author: Caller, now: int, position: int, limits: Limits) -> MemoryRecord:
    memory = MemoryIn(content=item.content, community=item.community, kind=item.kind, tags=item.tags,
                      metadata=item.metadata, agent_id=item.agent_id, thread=item.thread,
                      created_at=item.created_at, expires_at=item.expires_at)
    record = to_record(memory, author, community=item.community, limits=limits, now=now, position=position,
                       past_ok=True)
    if item.seq is not None:
        if not 0 <= item.seq <= _INT64_MAX:
            raise InvalidInput(f"seq {item.seq} is outside 0 to {_INT64_MAX}")
        record.seq = item.seq
    return record


def _dense(vector: list[float], dimension: int) -> list[float]:
    if len(vector) != dimension:
        raise InvalidInput(f"dense has {len(vector)} numbers but the embedder makes {dimension}-dimensional vectors")
    # sum() runs in C: only a vector whose sum is not finite (one non-finite number, or an overflow)
    # is checked number by number (measured: the check took 20% of an import with vectors, now ~1%).
    if not math.isfinite(sum(vector)) and not all(math.isfinite(x) for x in vector):
        raise InvalidInput("dense holds a number that is not finite")
    return vector


def _given(records: list[MemoryRecord], vectors: dict[str, list[float]]) -> Given:
    """Each vector with the memory before its memory in its thread, as the import orders them."""
    before: dict[str, str | None] = {}
    threads: dict[tuple[str, str], list[MemoryRecord]] = defaultdict(list)
    for r in records:
        if r.thread:
            threads[(r.community, r.thread)].append(r)
    for group in threads.values():
        ordered = sorted({r.id: r for r in group}.values(), key=lambda r: (r.seq, r.id))
        for previous, r in zip([None, *ordered], ordered, strict=False):
            before[r.id] = previous.id if previous is not None else None
    return {i: (vector, before.get(i)) for i, vector in vectors.items()}


def _cursor(cursor: str) -> tuple[str, int]:
    token, _, offset = cursor.rpartition(".")
    if not token or not offset.isdigit() or len(offset) > 12:
        raise InvalidInput(f"cursor {cursor[:40]!r} is not an export cursor: pass the next_cursor of the previous "
                           "page, or none to start")
    return token, int(offset)
