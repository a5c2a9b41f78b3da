"""The newest memories: how to read them from the store without reading every row, and the ones
the service keeps in memory so that a page view does not read the store at all.

Milvus has no ORDER BY, so `newest` asks for the memories of a time window, `created_at >= now - w`,
widening the window until it holds enough of them, and narrowing it (bisection) when it holds more
than one query returns. On a Milvus server such a query uses the window; Milvus Lite 3.2 still walks
every row of the partitions it reads, in Python (~10 us a row: ~1.2 s for 100k memories, ~0.1 s
for one community's bucket), which is why `RecentWrites` exists.

`RecentWrites` holds, per community (and for "every community", `ALL`), the newest memories a
reader asked for, read once with `newest` and then kept true by the service's own writes and
forgets, and read again once it is `ttl` seconds old: after 5 s when other hubs may write the same
collection (a Milvus server); after 10 min when this process alone writes it (Milvus Lite: one
process opens a database), in case a write escaped the service's notice (a caller cancelled while
its write waited, which another caller's group commit then stored).

Not thread-safe on purpose: the service calls it from its event loop only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from .filters import MemoryFilter
from .models import MemoryRecord

ALL = "*"  # the key of the list over every community (no community name can be "*")
HOUR_MS = 3_600_000
SHARED_TTL_S = 5.0  # how long a list stays valid when other processes may write the collection
OWN_TTL_S = 600.0  # and when this process alone writes it

Stamps = Callable[[MemoryFilter, int], list[tuple[str, int]]]  # MemoryStore.stamps: (id, created_at) pairs


def newest(stamps: Stamps, flt: MemoryFilter, n: int, now_ms: int, *, cap: int = 400,
           first_window_ms: int = HOUR_MS, growth: int = 16, max_reads: int = 48) -> list[str]:
    """The ids of the `n` newest memories `flt` matches, newest first, read with `stamps(filter,
    limit)` over time windows: the first covers the last hour, each next one `growth` times more,
    until a window holds `n` memories or covers all time. A window that fills a whole read (`cap`
    rows: more may exist, and a read returns them in no particular order) is narrowed: to the n-th
    newest memory that read returned (a window that surely holds n), or by half, whichever is
    narrower. When more than `cap` memories share one millisecond the newest cannot be told apart:
    any `n` of them come back."""
    if n < 1:
        return []
    cap = max(cap, n + 1)
    short = 0  # a window known to hold fewer than n memories
    full: int | None = None  # a window known to fill a whole read
    full_rows: list[tuple[str, int]] = []
    rows: list[tuple[str, int]] = []
    window = first_window_ms
    for _ in range(max_reads):
        everything = full is None and window >= now_ms
        lower = None if everything else now_ms - window
        if flt.since_ms is not None and (lower is None or lower <= flt.since_ms):
            lower, everything = flt.since_ms, full is None  # the window covers all the filter asks for
        rows = stamps(replace(flt, since_ms=lower), cap)
        if len(rows) >= cap:
            full, full_rows = window, rows
        elif len(rows) >= n or everything:
            return _top(rows, n)
        else:
            short = window
        if full is None:
            window *= growth
            continue
        nth = sorted((t for _, t in full_rows), reverse=True)[n - 1]
        window = min((short + full) // 2, max(now_ms - nth, short + 1))
        if window in (short, full):
            break  # a millisecond holds more than a read returns
    return _top(full_rows or rows, n)


def _top(rows: Iterable[tuple[str, int]], n: int) -> list[str]:
    return [i for i, _ in sorted(rows, key=lambda row: (-row[1], row[0]))[:n]]


def _by_time(records: Iterable[MemoryRecord]) -> list[MemoryRecord]:
    """Newest first; ties by id, so that the order is the same on every read."""
    return sorted(records, key=lambda r: (-r.created_at, r.id))


def merge(lists: Iterable[list[MemoryRecord]], n: int) -> list[MemoryRecord]:
    """The `n` newest of several newest-first lists (each memory once)."""
    seen: dict[str, MemoryRecord] = {}
    for records in lists:
        for record in records:
            seen.setdefault(record.id, record)
    return _by_time(seen.values())[:n]


@dataclass
class _Entry:
    records: list[MemoryRecord]  # newest first, at most `depth`
    read_at: float


class RecentWrites:
    """The newest `depth` memories of each community a reader asked for; see the module docstring."""

    def __init__(self, depth: int, *, ttl: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.depth = depth
        self.ttl = ttl  # None: a list never goes stale
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._generation: dict[str, int] = {}

    def cached(self, key: str) -> list[MemoryRecord] | None:
        """The kept list of `key` (a community, or ALL), or None when it must be read."""
        entry = self._entries.get(key)
        if entry is None or (self.ttl is not None and self._clock() - entry.read_at > self.ttl):
            return None
        now = int(time.time() * 1000)
        if any(0 < r.expires_at <= now for r in entry.records):  # one expired: the list is read again
            del self._entries[key]
            return None
        return entry.records

    def generation(self, key: str) -> int:
        """Take this before reading `key` from the store and hand it to `keep`."""
        return self._generation.get(key, 0)

    def keep(self, key: str, records: list[MemoryRecord], generation: int) -> None:
        """Keep what was read for `key`, unless a write or forget touched `key` during the read (the
        read may have missed it: the next reader reads again)."""
        if self._generation.get(key, 0) == generation:
            self._entries[key] = _Entry(_by_time(records)[: self.depth], self._clock())

    def wrote(self, records: Iterable[MemoryRecord]) -> None:
        """Memories this process just stored."""
        touched: dict[str, list[MemoryRecord]] = {}
        for record in records:
            touched.setdefault(record.community, []).append(record)
            touched.setdefault(ALL, []).append(record)
        for key, new in touched.items():
            self._generation[key] = self._generation.get(key, 0) + 1
            entry = self._entries.get(key)
            if entry is not None:
                entry.records = merge([new, entry.records], self.depth)

    def forgot(self, community: str) -> None:
        """Memories of `community` were removed (which ones is not known here): its list and the
        list over every community are read again when next asked for."""
        for key in (community, ALL):
            self._generation[key] = self._generation.get(key, 0) + 1
            self._entries.pop(key, None)
