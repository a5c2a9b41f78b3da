"""Bring a collection of an older schema up to the current one, keeping every memory.

Schema 1 (version 0.1) searched keywords with Milvus' BM25 function over `content` and stored
COSINE-indexed dense vectors; it had no threads or expiry. Its memories are in no thread, so their
dense vector (the unit embedding of the content) is exactly what schema 2 stores for them, and
their keyword vector is computed from the content: no re-embedding. The migration copies every row
into a new collection, then renames: the old collection is kept as `<name>_schema1_<time>` until
its owner drops it, so that nothing acknowledged is ever lost, even if the process dies mid-way
(the next open starts the copy again).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .keywords import KeywordStats, doc_sparse
from .milvus import FIELDS, MilvusClient, create_collection

log = logging.getLogger(__name__)

_V1_FIELDS = ["id", "content", "community", "kind", "tags", "agent_id", "created_at", "content_hash", "metadata",
              "dense"]


def migrate_v1(client: MilvusClient, name: str, dimension: int, index_type: str, batch: int = 1000) -> int:
    """Copy the schema-1 collection `name` into a schema-2 one of the same name; return how many
    memories were copied."""
    staging = f"{name}_schema2_staging"
    if client.has_collection(staging):  # a migration that did not finish: start it again
        client.drop_collection(staging)
    create_collection(client, staging, dimension, index_type)
    log.warning("collection %r has the schema of version 0.1: copying its memories into the current schema", name)
    client.load_collection(name)
    stats: dict[str, KeywordStats] = {}
    seen: set[str] = set()
    copied = 0
    iterator = client.query_iterator(name, batch_size=batch, filter="", output_fields=_V1_FIELDS)
    try:
        while rows := iterator.next():
            fresh = [row for row in rows if row["id"] not in seen]  # Lite can hold a replayed row twice
            seen.update(row["id"] for row in fresh)
            if fresh:
                client.insert(staging, [_convert(row, stats) for row in fresh])
                copied += len(fresh)
    finally:
        iterator.close()
    client.flush(staging)
    backup = f"{name}_schema1_{time.strftime('%Y%m%d%H%M%S')}"
    client.release_collection(name)
    client.rename_collection(name, backup)
    client.rename_collection(staging, name)
    log.warning("migrated %d memories; the old collection is kept as %r (drop it when satisfied)", copied, backup)
    return copied


def _convert(row: dict[str, Any], stats: dict[str, KeywordStats]) -> dict[str, Any]:
    community_stats = stats.setdefault(row["community"], KeywordStats())
    sparse, length = doc_sparse(row["content"], (), community_stats.avgdl)
    community_stats.add(sparse, length)
    out = {name: row.get(name) for name in FIELDS}
    out.update(thread="", seq=int(row["created_at"]) * 1_000_000, expires_at=0, dense=[float(x) for x in row["dense"]],
               sparse=sparse, kw_len=length)
    return out
