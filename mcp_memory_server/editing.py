"""`update`: change one memory. Tags, kind, metadata and expiry change in place (they are not part of
what a memory is found by, so its vectors stay); a new text or thread replaces the memory with one
under a new id, since ids follow community, thread and content (`models.memory_id`): the new memory
is stored first, then the old one is removed, so there is never a moment with neither.

Who may update a memory: whoever may `forget` it (the token's communities). A new text is the
updater's words: with a token, the new memory carries the token's agent id, as `remember` would.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio.to_thread

from . import validation as check
from .access import Caller
from .config import Limits
from .errors import InvalidInput, UnknownMemory
from .models import IndexedMemory, MemoryRecord, Updated, UpdateIn, memory_id
from .records import content_hash, is_live

if TYPE_CHECKING:
    from .service import MemoryService


class Editing:
    """`update` of a MemoryService."""

    def __init__(self, service: MemoryService) -> None:
        self.service = service

    async def update(self, request: UpdateIn, caller: Caller) -> Updated:
        """Change the fields given; see the module docstring. Raises UnknownMemory when the
        community holds no memory with that id (forgotten, replaced, expired), InvalidInput when a
        new text or thread would make it identical to another memory."""
        service, limits = self.service, self.service.settings.limits
        name = check.community_name(service.community(request.community))
        caller.require(name)
        [wanted] = check.memory_ids([request.id], limits)
        now = int(time.time() * 1000)
        found = [m for m in await anyio.to_thread.run_sync(service.store.get_indexed_by_ids, [wanted])
                 if m.record.community == name and is_live(m.record, now)]
        if not found:
            raise UnknownMemory(f"no memory with id {wanted!r} in community {name!r} (it may have been forgotten, "
                                "replaced or expired)")
        old = found[0]
        new, changed = changes(old.record, request, caller, now, service.settings.limits)
        if not changed:
            return Updated(id=old.record.id, community=name, changed=[])
        if new.id == old.record.id:  # same text and thread: the vectors stay
            await service.writer.reindex([old], [IndexedMemory(new, old.dense, old.sparse, old.kw_len)])
            service.recent.forgot(name)
            return Updated(id=new.id, community=name, changed=changed)
        if await anyio.to_thread.run_sync(service.store.existing_ids, [name], [new.id], now):
            raise InvalidInput(f"memory {new.id!r} already holds this text{' in that thread' if new.thread else ''} "
                               f"in community {name!r}: forget {old.record.id!r} instead, or update that memory")
        await service.write([new], appended=set())
        await service.indexer.remove(name, [old])
        service.recent.forgot(name)
        return Updated(id=new.id, previous_id=old.record.id, community=name, changed=changed)


def changes(record: MemoryRecord, request: UpdateIn, caller: Caller, now: int,
            limits: Limits) -> tuple[MemoryRecord, list[str]]:
    """The record as the update leaves it, and the names of the fields that changed."""
    new = replace(record, tags=list(record.tags or []), metadata=dict(record.metadata or {}))
    if request.kind is not None:
        new.kind = check.kind(request.kind, limits)
    if request.tags is not None:
        new.tags = check.tags(list(request.tags), limits)
    if request.metadata is not None:
        new.metadata = check.metadata(request.metadata, limits)
    if request.expires_at == "never" and request.ttl_seconds is None:
        new.expires_at = 0
    elif request.expires_at is not None or request.ttl_seconds is not None:
        new.expires_at = check.expiry(request.ttl_seconds, request.expires_at, now)
    if request.content is not None:
        new.content = check.content(request.content, limits)
    if request.thread is not None:
        new.thread = check.thread(request.thread, limits) if request.thread else ""
    changed = [f for f in ("content", "thread", "kind", "tags", "metadata", "expires_at")
               if getattr(new, f) != getattr(record, f)]
    if "content" in changed or "thread" in changed:
        new.id = memory_id(record.community, new.content, new.thread)
        new.content_hash = content_hash(new.content)
        if "content" in changed and caller.agent_id:
            new.agent_id = caller.agent_id
        if "thread" in changed:  # its place in the new thread: by its time
            new.seq = record.created_at * 1_000_000
    return new, changed
