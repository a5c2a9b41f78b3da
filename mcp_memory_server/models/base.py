"""The stored record, its id, and the limits of the schema."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

SearchMode = Literal["hybrid", "semantic", "keyword"]

# Hard ceilings fixed in the Milvus schema; configurable limits (config.Limits) stay below them.
MAX_CONTENT_BYTES = 65_535
MAX_TAGS = 64
MAX_TAG_BYTES = 256
MAX_AGENT_ID_BYTES = 256
MAX_KIND_BYTES = 128
MAX_COMMUNITY_BYTES = 64
MAX_ID_CHARS = 64

MAX_TTL_SECONDS = 100 * 365 * 86_400  # the longest ttl_seconds (a century)

RECALL_K = 10  # memories `recall` returns when the call gives no k (at most the MEMORY_MAX_K limit)
ROUTE_K = 3  # experts `route` may return when the call gives no k (likewise)
LATEST_LIMIT = 20  # newest memories `latest` returns when the call gives no limit
LATEST_MAX = 100  # and at most (also how many per community the service keeps in memory)


def memory_id(community: str, content: str, thread: str = "") -> str:
    """Stable id: the same content in the same community (and thread, when it has one) always gets
    the same id, so a retried write finds the first one instead of storing twice. A thread is part
    of the id: "Thanks!" in two conversations is two memories."""
    key = f"{community}\x00{content}" if not thread else f"{community}\x00{thread}\x00{content}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class MemoryRecord:
    """One stored memory, without its vectors."""

    id: str
    content: str
    community: str
    kind: str
    tags: list[str]
    agent_id: str
    created_at: int  # epoch milliseconds
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)
    thread: str = ""  # "" = in no thread
    seq: int = 0  # order within the thread: created_at (ms) x 1,000,000 + the position in its batch
    expires_at: int = 0  # epoch milliseconds; 0 = never


@dataclass
class IndexedMemory:
    """A memory with what it is found by: its dense vector (with its thread context) and its keyword
    vector (`keywords.doc_sparse`) and length."""

    record: MemoryRecord
    dense: list[float]
    sparse: dict[int, float]
    kw_len: float
