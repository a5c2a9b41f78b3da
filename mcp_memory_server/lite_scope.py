"""Keyword search on Milvus Lite reads only the partition-key buckets it searches.

Milvus Lite 3.2's sparse search (`Collection._search_sparse`, our keyword side) first maps every
primary key of *every* segment of the collection to its newest version, in a Python loop over all
rows, and only then scores the buckets it was asked to search: at 100k memories that loop is most
of a keyword search (66 ms of it, issue 10), however small the community. The map is there to hide
a row whose key was re-inserted with a different partition-key value. In the memory collection that
cannot happen: a memory's id is a hash of its community (models.memory_id) and the community is the
partition key, so one id always lives in one bucket, and the versions that matter for a bucket are
all in that bucket.

`narrow(database_path, collection)` makes `_search_sparse` of that one collection of that one database read
only the segments of the buckets it was asked for (through `_read_snapshot`, for the duration of the
call, in the calling thread). Same rows, same scores, same order: `tests/test_lite_scope.py` runs
random writes, duplicates, deletes, re-inserts and restarts and compares every search with stock Lite.

It changes Lite's behaviour from outside, so it is applied only to the code it was checked against:
the source of the two methods must hash to the values below, or nothing is changed (stock Lite,
slower, still correct; the hub logs it once, and `/health` and `doctor` say so). A search without named buckets
(no community given) is never narrowed. `MEMORY_LITE_NARROW=false` turns it off.

`lite_masks.py` replaces the same sparse search with one that does not loop over every row; it is
installed first, so the wrapper here narrows that one (and the source check reads Lite's own method
beneath both: `inspect.unwrap`).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

from . import lite_masks
from .lite import CheckedOnce, unchecked_code

log = logging.getLogger(__name__)

# sha256 (first 16 hex digits) of inspect.getsource of the methods this module relies on, as in
# milvus-lite 3.2.2. Another version: re-read both methods, re-run tests/test_lite_scope.py, add it.
CHECKED = {
    "_search_sparse": {"95df328148020ef4"},
    "_read_snapshot": {"65d49ecba774afc8"},
}

_local = threading.local()
_lock = threading.Lock()
_targets: set[tuple[str, str]] = set()  # (real path of the database, collection name)
_decided: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_state: dict[str, Any] = {"installed": False}


def _code() -> dict[str, Any]:
    from milvus_lite.engine.collection import Collection

    return {f"Collection.{name}": getattr(Collection, name) for name in CHECKED}  # Lite's own, beneath lite_masks


def refusal() -> str | None:
    """Why the narrowing cannot be installed on this Milvus Lite, or None if it can."""
    return unchecked_code(_code, {f"Collection.{name}": known for name, known in CHECKED.items()})


refused = CheckedOnce(refusal)  # `refusal()`, once per process


def _install() -> bool:
    """Wrap Lite's two methods once per process (idempotent); False if refused."""
    if refused():
        return False
    lite_masks.install()  # first (idempotent): the wrapper below must call lite_masks' search, not Lite's
    with _lock:
        if _state["installed"]:
            return True
        from milvus_lite.engine.collection import Collection

        search_sparse = Collection._search_sparse
        read_snapshot = Collection._read_snapshot

        def _search_sparse(self: Any, query_vectors: Any, vector_field: str, top_k: int, metric_type: str,
                           partition_names: Any, *args: Any, **kwargs: Any) -> Any:
            if not partition_names or not _targeted(self):
                return search_sparse(self, query_vectors, vector_field, top_k, metric_type, partition_names,
                                     *args, **kwargs)
            outer = getattr(_local, "scope", None)
            _local.scope = (self, frozenset(partition_names))
            try:
                return search_sparse(self, query_vectors, vector_field, top_k, metric_type, partition_names,
                                     *args, **kwargs)
            finally:
                _local.scope = outer

        def _read_snapshot(self: Any) -> Any:
            segments, tombstones = read_snapshot(self)
            scope = getattr(_local, "scope", None)
            if scope is not None and scope[0] is self:
                segments = tuple(s for s in segments if s.partition in scope[1])
            return segments, tombstones

        _search_sparse.__wrapped__ = search_sparse  # type: ignore[attr-defined]
        _read_snapshot.__wrapped__ = read_snapshot  # type: ignore[attr-defined]
        Collection._search_sparse = _search_sparse
        Collection._read_snapshot = _read_snapshot
        _state["installed"] = True
        return True


def _targeted(collection: Any) -> bool:
    decided = _decided.get(collection)
    if decided is None:
        where = os.path.realpath(getattr(collection, "_data_dir", ""))
        name = getattr(collection, "_name", None)
        decided = any(name == target and where.startswith(root + os.sep) for root, target in tuple(_targets))
        _decided[collection] = decided
    return decided


def narrow(database_path: str, collection: str) -> bool:
    """Narrow keyword searches of `collection` in the Lite database at `database_path` (opened in
    this process). Returns whether they are narrowed; logs why not, once."""
    if not _install():
        if not _state.get("logged"):
            _state["logged"] = True
            log.info("keyword search on Milvus Lite scans the whole collection: %s", refused())
        return False
    with _lock:
        _targets.add((os.path.realpath(database_path), collection))
        _decided.clear()
    return True


def release(database_path: str, collection: str) -> None:
    """Stop narrowing `collection` of that database (it was closed)."""
    with _lock:
        _targets.discard((os.path.realpath(database_path), collection))
        _decided.clear()


def active(database_path: str, collection: str) -> bool:
    """Whether keyword searches of that collection are narrowed now."""
    return _state["installed"] and (os.path.realpath(database_path), collection) in _targets
