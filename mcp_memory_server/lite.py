"""What Milvus Lite 3.2 does differently from a Milvus server, and how the store copes.

Only `store.py` calls these; none of them imports pymilvus.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def lite_bucket(community: str, buckets: int) -> int:
    """The bucket Milvus Lite routes a partition-key value to (milvus_lite/engine/collection.py,
    `_insert_with_partition_key`). tests/test_store_lite_pruning.py fails if Lite changes it."""
    return int(hashlib.md5(community.encode(), usedforsecurity=False).hexdigest(), 16) % buckets


def lite_partition_buckets(names: set[str]) -> tuple[str, int] | None:
    """(prefix, count) of Milvus Lite's partition-key buckets, if the collection's partitions
    `names` are exactly the buckets this module knows how to address; otherwise None (no pruning,
    still correct)."""
    try:
        from milvus_lite.constants import DEFAULT_NUM_PARTITIONS, PARTITION_KEY_BUCKET_PREFIX
    except ImportError:
        return None
    expected = {f"{PARTITION_KEY_BUCKET_PREFIX}{i}" for i in range(DEFAULT_NUM_PARTITIONS)}
    if not expected <= names or len(names - expected - {"_default"}) > 0:
        return None
    return PARTITION_KEY_BUCKET_PREFIX, int(DEFAULT_NUM_PARTITIONS)


def distinct(hits: Sequence[Any]) -> list[Any]:
    """Search hits without repeated ids, best first. Milvus Lite 3.2 can hold a row twice after a
    kill -9 between a flush and the removal of its WAL (the replayed row and the flushed one); its
    query path deduplicates them by primary key, its dense search and iterators do not."""
    seen: set[str] = set()
    out = []
    for hit in hits:
        key = hit["entity"].get("id", hit.get("id"))
        if key not in seen:
            seen.add(key)
            out.append(hit)
    return out


def release_lite(uri: str) -> None:
    """Stop Milvus Lite's in-process server for `uri`: closing the client alone leaves the database
    open (and locked) until the process exits."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(Path(uri).expanduser()))
