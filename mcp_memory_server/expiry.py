"""Expired memories: hidden at once, removed in the background.

Every read hides a memory from the moment its `expires_at` passes (`filters.MemoryFilter.live_at_ms`;
the counts, `tallies.py`, stop counting it then too). The row itself is deleted by the process that
owns the store, every MEMORY_EXPIRY_INTERVAL seconds (`purge_forever`, started by `memory.Runtime`),
through the writer like a `forget`: counts and keyword statistics stay exact and the memories after
it in its thread are re-indexed with their new context.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .errors import MemoryServerError
from .filters import MemoryFilter
from .indexing import Indexer
from .models import IndexedMemory
from .store import QUERY_LIMIT

if TYPE_CHECKING:
    from .service import MemoryService

log = logging.getLogger(__name__)


async def purge(service: MemoryService, now_ms: int | None = None) -> int:
    """Delete every memory expired at `now_ms` (default: now); returns how many were deleted."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    indexer: Indexer = service.indexer
    flt = MemoryFilter(communities=None, lapsed_at_ms=now)
    deleted = 0
    while lapsed := await anyio.to_thread.run_sync(lambda: service.store.get_indexed(flt, limit=QUERY_LIMIT)):
        groups: dict[str, list[IndexedMemory]] = defaultdict(list)
        for m in lapsed:
            groups[m.record.community].append(m)
        removed = 0
        for community, doomed in sorted(groups.items()):
            removed += await indexer.remove(community, doomed, lapsed_at=now)
            service.recent.forgot(community)
        deleted += removed
        if len(lapsed) < QUERY_LIMIT or removed == 0:
            break
    if deleted:
        log.info("purged %d expired memories", deleted)
    return deleted


async def purge_forever(service: MemoryService, interval: float) -> None:
    """Purge every `interval` seconds until cancelled. A failed purge (Milvus unreachable) is
    logged and tried again at the next turn."""
    while True:
        await anyio.sleep(interval)
        try:
            await purge(service)
        except MemoryServerError as exc:
            log.warning("purging expired memories failed (tried again in %.0f s): %s", interval, exc)
        except Exception:  # never take the hub down: reads hide expired memories anyway
            log.exception("purging expired memories failed (tried again in %.0f s)", interval)
