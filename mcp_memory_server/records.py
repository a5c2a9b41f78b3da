"""A memory as it is stored: a tool's input validated into a `MemoryRecord`, and back out as the
memory a reader sees (`StoredMemory`), with its times in ISO-8601.

Every write builds its records here (remember, remember_many, register_expert, update, import), so a
memory is checked the same way whichever verb stores it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from . import validation as check
from .access import Caller
from .config import Limits
from .errors import Forbidden, InvalidInput
from .models import MemoryIn, MemoryRecord, StoredMemory, memory_id

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_record(item: MemoryIn, caller: Caller, *, community: str, limits: Limits, now: int, position: int = 0,
              many: bool = False, past_ok: bool = False) -> MemoryRecord:
    """`item` validated as the record it would be stored as in `community` (the item's, or the
    default), by `caller`. Raises InvalidInput / Forbidden, prefixed with "memory N: " when `many`.
    `past_ok`: an expiry already passed is accepted (an import skips such a memory)."""
    try:
        name = check.community_name(community)
        caller.require(name)
        text = check.content(item.content, limits)
        thread = check.thread(item.thread, limits) if item.thread is not None else ""
        created_at = check.moment(item.created_at, "created_at") or now
        return MemoryRecord(
            id=memory_id(name, text, thread),
            content=text,
            community=name,
            kind=check.kind(item.kind, limits),
            tags=check.tags(item.tags or [], limits),
            agent_id=caller.agent_id or check.agent_id(item.agent_id or "anonymous", limits),
            created_at=created_at,
            content_hash=content_hash(text),
            metadata=check.metadata({} if item.metadata is None else item.metadata, limits),
            thread=thread,
            seq=created_at * 1_000_000 + position,
            expires_at=check.expiry(item.ttl_seconds, item.expires_at, now, past_ok=past_ok),
        )
    except (InvalidInput, Forbidden) as exc:
        raise type(exc)(f"memory {position}: {exc}" if many else str(exc)) from exc


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stored(record: MemoryRecord) -> StoredMemory:
    """The memory as a reader sees it (a recall hit without a score)."""
    return StoredMemory(**stored_fields(record))


def stored_fields(record: MemoryRecord) -> dict[str, Any]:
    """The fields of `stored(record)`, for the models that extend it (a recall's `Hit`)."""
    return {"id": record.id, "content": record.content, "community": record.community, "kind": record.kind,
            "tags": list(record.tags or []), "agent_id": record.agent_id, "thread": record.thread or None,
            "created_at": iso(record.created_at), "metadata": dict(record.metadata or {}),
            "expires_at": iso(record.expires_at) if record.expires_at else None}


def iso(epoch_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC, the way every output says when a memory was stored (exact
    to the millisecond: `check.moment` reads it back as the same number)."""
    return (_EPOCH + timedelta(milliseconds=epoch_ms)).isoformat().replace("+00:00", "Z")


def is_live(record: MemoryRecord, now: int) -> bool:
    """Whether the memory has not expired at `now` (epoch ms)."""
    return record.expires_at == 0 or record.expires_at > now
