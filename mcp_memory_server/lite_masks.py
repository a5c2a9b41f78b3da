"""Searches on Milvus Lite without a Python loop over every row of the segments searched.

Milvus Lite 3.2 decides which rows a search may return with loops in Python over every row of every
segment it searches: its dense search (`milvus_lite.search.executor_indexed.execute_search_with_index`)
maps each primary key to its newest sequence number and then keeps a row only if it is that newest
version and no tombstone covers it; its sparse (keyword) search (`Collection._search_sparse`) does
the same per row. At 100k memories a community's bucket holds 5-12k rows, and those loops are most of
a search inside it (issue 10). Almost always every key is in one segment once and nothing is
deleted, so every row may be returned.

The two functions here are Lite's, with those loops replaced by set operations on each segment's
own key index (`Segment.pk_to_row`, built by Lite when it loads the segment):

- a row is stale when another segment the search reads, or Lite's memtable, holds its key with a
  larger sequence number: keys found in more than one place are found with set intersections, and
  only those are compared;
- a row is deleted when a tombstone (`DeltaIndex`, or a delete still in the memtable) with a larger
  sequence number names its key: the tombstones are intersected with the segment's keys.

The keys held by more than one segment are kept per set of segments (segments never change), and
the rows returned are read in one Arrow `take` per segment, only the columns the search asks for
(Lite reads every cell of a returned row on its own, the 384-float vector included, whether asked
for or not: ~0.05 ms a row), and kept (`_SegmentRows`). Everything else is Lite's code unchanged
(memtable rows keep Lite's own loop: there are few). The rows and values returned are exactly
Lite's (one exception below), for any collection, so unlike `lite_scope` this needs no property of
the memory's ids. A segment that holds one key twice
(`pk_to_row` shorter than its rows) is left to Lite's own function. `tests/test_lite_masks.py`
runs random writes, rewrites, upserts, deletes (flushed and still in the memtable), rows in the
memtable, a reopen and a compaction, and compares every search (ids, distances, order and every
field returned) with stock Lite.

Each row a search returns then goes through Lite's projection, which `project` replaces for a
search whose plan has no dynamic field (the memory's): the same fields in the same order, without the
work such a plan discards (~30 µs a row).

One change of result, in the dense search: a segment with a graph index (HNSW) whose rows the filter
keeps only some of is searched exactly, row by row, when it keeps few of them (`_exact_is_better`: at
most 2,048 rows, or Milvus' own engine's rule, up to 16,384). Lite walks the graph skipping the rows
filtered out, and misses many of the best: a community of 60 memories in the partition of one of
2,000 lost a quarter of its top 10 (`tests/test_lite_masks.py`). Lite's flat index is searched
exactly already, so the tests against stock Lite (flat) are unchanged.

Two more things Lite redid at every search, now kept (issue 10): which rows of a segment a filter
keeps (`_filter_mask`: per segment and compiled filter; a hybrid recall filters the same segment for
both its searches, and a recall's filter text stays the same for a second, see
`filters.MemoryFilter.loose_live`), and, once the memtable's rows are flushed, the empty table of the
schema it built for them at every dense search (the snapshot now asks for the table only when the
memtable holds rows).

Like `lite_scope`, it changes Lite from outside, so it is installed only over the code it was
checked against (the source of the functions replaced and of the helpers whose behaviour they rely on
must hash to the values below); otherwise stock Lite. A store on Milvus Lite turns it on when it
opens, unless `MEMORY_LITE_NARROW=false`; `/health` says `search_row_checks: each segment's key index`.

Adapted from milvus-lite 3.2.2 (Apache License 2.0, https://github.com/milvus-io/milvus-lite).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .lite import CheckedOnce, unchecked_code, vectors_as_views

log = logging.getLogger(__name__)

# sha256 (first 16 hex digits) of inspect.getsource, as in milvus-lite 3.2.2. Another version:
# re-read each of these, re-run tests/test_lite_masks.py, add its hashes.
CHECKED = {
    "executor_indexed.execute_search_with_index": {"e22ce49c5ee11c95"},
    "Collection._search_sparse": {"95df328148020ef4"},
    "DeltaIndex.is_deleted": {"d44a30f32148f015"},
    "Segment.__init__": {"298125cb97406fa4"},
    "MemTable.delete_index_snapshot": {"ee95893522e45912"},
    "MemTable.pk_index_snapshot": {"fc21944bde60b050"},
    "MemTable.to_search_snapshot": {"8980f72ede285b77"},  # `_pk_index` is the rows it snapshots
    "indexed_filter.evaluate_segment_filter": {"d8c79bc706b8fc6a"},  # a mask of the segment's rows alone
    "Segment.row_to_dict": {"9f604369db5ae737"},
    # `project`: Lite's projection of a returned row, and what it calls.
    "projection.project_record": {"1a05f13dfb2f8d56"},
    "projection.extract_dynamic_fields": {"d4522fd1fb4bbded"},
    "projection._is_primary": {"a069b72caddbfb01"},
    "projection.decode_meta": {"856030ecbffcd9b7"},
}

_lock = threading.Lock()
_state: dict[str, Any] = {"installed": False, "on": False}
_stock: dict[str, Callable[..., list[list[dict[str, Any]]]]] = {}  # Lite's own functions
_stock_project: list[Callable[..., dict[str, Any]]] = []  # Lite's project_record


def _checked_code() -> dict[str, Any]:
    from milvus_lite.engine import projection
    from milvus_lite.engine.collection import Collection
    from milvus_lite.search import executor_indexed, indexed_filter
    from milvus_lite.storage.delta_index import DeltaIndex
    from milvus_lite.storage.memtable import MemTable
    from milvus_lite.storage.segment import Segment

    return {"executor_indexed.execute_search_with_index": executor_indexed.execute_search_with_index,
            "Collection._search_sparse": Collection._search_sparse,  # Lite's own beneath wrappers (unwrapped)
            "DeltaIndex.is_deleted": DeltaIndex.is_deleted, "Segment.__init__": Segment.__init__,
            "MemTable.delete_index_snapshot": MemTable.delete_index_snapshot,
            "MemTable.pk_index_snapshot": MemTable.pk_index_snapshot,
            "MemTable.to_search_snapshot": MemTable.to_search_snapshot,
            "indexed_filter.evaluate_segment_filter": indexed_filter.evaluate_segment_filter,
            "Segment.row_to_dict": Segment.row_to_dict,  # _segment_rows reads rows as it does
            "projection.project_record": projection.project_record,
            "projection.extract_dynamic_fields": projection.extract_dynamic_fields,
            "projection._is_primary": projection._is_primary, "projection.decode_meta": projection.decode_meta}


def refusal() -> str | None:
    """Why the replacement cannot be installed on this Milvus Lite, or None if it can."""
    return unchecked_code(_checked_code, CHECKED)


refused = CheckedOnce(refusal)  # `refusal()`, once per process


def install() -> bool:
    """Turn the replacements on; False if refused. The first call puts them in Lite's place (once per
    process: `lite_scope` wraps the sparse one afterwards, which is why `uninstall` only turns them
    off and they then call Lite's own functions)."""
    if refused():
        if not _state.get("logged"):
            _state["logged"] = True
            log.info("searches on Milvus Lite check every row in Python: %s", refused())
        return False
    with _lock:
        if not _state["installed"]:
            from milvus_lite.engine import collection

            _stock["dense"] = collection.execute_search_with_index
            _stock["sparse"] = collection.Collection._search_sparse
            _stock_project.append(collection.project_record)
            dense.__wrapped__ = _stock["dense"]  # type: ignore[attr-defined]
            sparse.__wrapped__ = _stock["sparse"]  # type: ignore[attr-defined]
            project.__wrapped__ = _stock_project[0]  # type: ignore[attr-defined]
            collection.execute_search_with_index = dense
            collection.Collection._search_sparse = sparse
            collection.project_record = project  # what Collection.search hands the dense search
            _state["installed"] = True
        _state["on"] = True
        return True


def uninstall() -> None:
    """Back to Lite's own loops (tests compare the two)."""
    _state["on"] = False


def installed() -> bool:
    """Whether searches on Milvus Lite use the key indexes now."""
    return bool(_state["installed"] and _state["on"])


# -- which rows may be returned ---------------------------------------------------------------------

def _versions(segments: Sequence[Any], memtable: dict[Any, int]) -> tuple[dict[Any, int], dict[Any, int]]:
    """The newest sequence number of the keys whose rows Lite compares, from `segments` and the
    memtable's keys (`memtable`: key -> its largest sequence number there): (for segment rows:
    the keys held in more than one place, `_newest_elsewhere`; for memtable rows: every memtable
    key, as Lite's own memtable loop reads it)."""
    newest = _newest_elsewhere(segments, memtable)
    for_memtable = dict(memtable)
    for_memtable.update((pk, seq) for pk, seq in newest.items() if pk in memtable)
    return newest, for_memtable


_shared: dict[tuple[tuple[Any, ...] | None, ...], frozenset[Any]] = {}  # see _shared_keys
_masks: dict[tuple[tuple[Any, ...], str], tuple[Any, np.ndarray]] = {}  # see _filter_mask
_KEPT = 256  # entries of each of the two


def _keep(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Put `value` in `cache`, dropping the oldest entry beyond _KEPT."""
    with _lock:
        if len(cache) >= _KEPT:
            del cache[next(iter(cache))]
        cache[key] = value


def _segment_key(seg: Any) -> tuple[Any, ...] | None:
    """What tells a segment apart from every other (None: nothing does): its file (named after its
    sequence range), row count (a compaction that keeps the range and drops rows changes it) and
    first and last keys (another database at the same path). A segment never changes: Lite writes a
    new file for new rows or a compaction."""
    if not seg.file_path or not seg.pks:
        return None
    return os.path.abspath(seg.file_path), int(seg.num_rows), seg.pks[0], seg.pks[-1]


def _filter_mask(seg: Any, compiled_filter: Any, indexed_filter_plan: Any) -> np.ndarray:
    """Lite's `evaluate_segment_filter`: which rows of `seg` the filter keeps, from the segment's
    rows alone. Kept per segment and filter (read-only): a hybrid recall filters the same segment
    for its dense and its keyword search, and a filter's text stays the same for a second
    (filters.MemoryFilter.loose_live). Lite evaluated it over every row of the segment at each
    search (~0.1 ms per search at 1k memories)."""
    from milvus_lite.search.indexed_filter import evaluate_segment_filter

    seg_key = _segment_key(seg) if indexed_filter_plan is None else None
    source = getattr(compiled_filter, "source", None)
    if seg_key is None or not isinstance(source, str):
        return evaluate_segment_filter(seg, compiled_filter, indexed_filter_plan)  # type: ignore[no-any-return]
    key = (seg_key, source)
    found = _masks.get(key)
    if found is not None and found[0] is compiled_filter:  # the same compiled filter (Lite keeps one a text)
        return found[1]
    mask = np.asarray(evaluate_segment_filter(seg, compiled_filter, None), dtype=bool)
    mask.flags.writeable = False  # shared by the searches that find it here
    _keep(_masks, key, (compiled_filter, mask))
    return mask


def _shared_keys(segments: Sequence[Any]) -> frozenset[Any]:
    """The keys that more than one of `segments` holds. A segment never changes (Lite writes a new
    file for new rows or a compaction), so this is kept per set of segments, each known by its file
    (named after its sequence range), row count (a compaction that keeps the range and drops rows
    changes it) and first and last keys (another database at the same path): building the set of
    every key of the segments read cost ~1.4 ms a search at 100k memories."""
    keys = [_segment_key(seg) for seg in segments]
    key = None if None in keys else tuple(keys)
    if key is not None:
        found = _shared.get(key)
        if found is not None:
            return found
    shared: set[Any] = set()
    seen: set[Any] = set()
    for seg in segments:
        keys = seg.pk_to_row.keys()
        shared |= keys & seen
        seen |= keys
    found = frozenset(shared)
    if key is not None:
        _keep(_shared, key, found)
    return found


def _newest_elsewhere(segments: Sequence[Any], extra: dict[Any, int]) -> dict[Any, int]:
    """The largest sequence number of every key that more than one of `segments` holds
    (`_shared_keys`), or that `extra` (key -> largest sequence number elsewhere: the memtable's) and
    a segment hold. Keys held once are left out: their only row is their newest version."""
    if len(segments) + bool(extra) <= 1:
        return {}
    doubled = set(_shared_keys(segments)) if len(segments) > 1 else set()
    doubled.update(pk for pk in extra if any(pk in seg.pk_to_row for seg in segments))
    newest: dict[Any, int] = {}
    for pk in doubled:
        best = extra.get(pk, -1)
        for seg in segments:
            row = seg.pk_to_row.get(pk)
            if row is not None:
                best = max(best, int(seg.seqs[row]))
        newest[pk] = best
    return newest


def segment_mask(seg: Any, newest: dict[Any, int], tombstones: dict[Any, int],
                 pending: dict[Any, tuple[int, Any]], pending_applies: Callable[[Any, Any], bool]) -> np.ndarray:
    """The rows of `seg` that are their key's newest version (`newest`: keys held elsewhere too)
    and that no tombstone with a larger sequence number covers (`tombstones`: key -> delete
    sequence; `pending`: deletes still in the memtable, key -> (sequence, partition), counted when
    `pending_applies(partition, seg)`)."""
    mask = np.ones(seg.num_rows, dtype=bool)
    index = seg.pk_to_row
    seqs = seg.seqs
    for pk in index.keys() & newest.keys():
        row = index[pk]
        if int(seqs[row]) < newest[pk]:
            mask[row] = False
    for pk in index.keys() & tombstones.keys():
        row = index[pk]
        if tombstones[pk] > int(seqs[row]):
            mask[row] = False
    for pk in index.keys() & pending.keys():
        row = index[pk]
        entry = pending[pk]
        if entry[0] > int(seqs[row]) and pending_applies(entry[1], seg):
            mask[row] = False
    return mask


def _gather(into: list[list[tuple[Any, ...]]], local_ids: np.ndarray, dists: np.ndarray, top_k: int,
            tail: Callable[[int], tuple[Any, ...]]) -> None:
    """Lite's loop over one source's top-k: per query, (distance, *tail(local id)) until the -1
    padding."""
    for q, hits in enumerate(into):
        for j in range(top_k):
            lid = int(local_ids[q, j])
            if lid < 0:
                break
            hits.append((float(dists[q, j]), *tail(lid)))


def _one_row_per_key(segments: Iterable[Any]) -> bool:
    return all(len(seg.pk_to_row) == seg.num_rows for seg in segments)


# -- the projection of a returned row -------------------------------------------------------------

def project(record: dict[str, Any], schema: Any, plan: Any) -> dict[str, Any]:
    """Lite's `project_record` (same result). For a search whose plan returns no dynamic field (the
    memory's collection has none) it copies the plan's fields but the primary key, as Lite does,
    without Lite's work that such a plan discards: unpacking the row's dynamic fields into a dict
    nobody reads, and a scan of every schema field to test each returned field for the primary key
    (~30 µs a row, a third of a search at 1k memories). Anything else is Lite's own function."""
    if not _state["on"] or plan.api_kind != "search" or plan.include_all_dynamic or plan.explicit_dynamic_fields:
        return _stock_project[0](record, schema, plan)
    last = _projected[0]  # a search projects each of its rows with one plan
    if last[0] is plan and last[1] is schema:
        names = last[2]
    else:
        primary = {field.name for field in schema.fields if field.is_primary}
        names = tuple(name for name in plan.response_schema_fields if name not in primary and name != "$meta")
        _projected[0] = (plan, schema, names)
    return {name: record[name] for name in names if name in record}


_projected: list[tuple[Any, Any, tuple[str, ...]]] = [(None, None, ())]  # the last plan: (plan, schema, names)


# -- Lite's dense search, the per-row loops replaced -----------------------------------------------

def dense(query_vectors: np.ndarray, segments: Iterable[Any], memtable: Any, delta_index: Any, top_k: int,
          metric_type: str, pk_field: str, vector_field: str, partition_names: list[str] | None = None,
          compiled_filter: Any = None, output_fields: list[str] | None = None, indexed_filter_plan: Any = None,
          project_record_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
          search_params: dict[str, Any] | None = None) -> list[list[dict[str, Any]]]:
    """Lite's `execute_search_with_index` (same arguments, same results), the validity of segment
    rows computed from key indexes instead of row by row."""
    from milvus_lite.index.brute_force import BruteForceIndex

    segments = list(segments)
    partition_filter = set(partition_names) if partition_names else None
    in_scope = [s for s in segments if s.num_rows > 0 and (partition_filter is None or s.partition in partition_filter)]
    if not _state["on"] or not _one_row_per_key(in_scope) or not isinstance(getattr(delta_index, "_map", None), dict):
        return _stock["dense"](query_vectors, segments, memtable, delta_index, top_k, metric_type, pk_field,
                               vector_field, partition_names, compiled_filter, output_fields, indexed_filter_plan,
                               project_record_fn, search_params)

    if query_vectors.ndim == 1:
        query_vectors = query_vectors.reshape(1, -1)
    if query_vectors.dtype != np.float32:
        query_vectors = query_vectors.astype(np.float32, copy=False)
    nq = int(query_vectors.shape[0])
    if nq == 0 or top_k <= 0:
        return [[] for _ in range(nq)]

    # The memtable's rows as a table, for the filter, only when it holds rows: Lite builds an empty
    # table of the schema otherwise (~0.1 ms of every search once the rows are flushed). Rows that
    # arrive between the test and the snapshot: the snapshot is taken again, with the table.
    with_table = compiled_filter is not None and bool(memtable._pk_index)
    mt_pks, mt_seqs, mt_vecs, mt_row_refs, mt_table = memtable.to_search_snapshot(
        vector_field=vector_field, partition_names=partition_names, include_table=with_table)
    if compiled_filter is not None and not with_table and mt_pks:
        mt_pks, mt_seqs, mt_vecs, mt_row_refs, mt_table = memtable.to_search_snapshot(
            vector_field=vector_field, partition_names=partition_names, include_table=True)
    if not in_scope and not mt_pks:
        return [[] for _ in range(nq)]

    # 1. The newest version of the keys held in more than one place (Lite: a map of every row).
    mt_newest: dict[Any, int] = {}
    for pk, seq in zip(mt_pks, mt_seqs.tolist() if hasattr(mt_seqs, "tolist") else list(mt_seqs), strict=True):
        if int(seq) > mt_newest.get(pk, -1):
            mt_newest[pk] = int(seq)
    newest, global_max_seqs = _versions(in_scope, mt_newest)  # the second: what the memtable loop reads

    # 2. Filter masks (Lite's code).
    seg_filter_masks: dict[int, np.ndarray] = {}
    mt_filter_mask: np.ndarray | None = None
    if compiled_filter is not None:
        from milvus_lite.search.filter import evaluate_mask
        for seg in in_scope:
            seg_filter_masks[id(seg)] = _filter_mask(seg, compiled_filter, indexed_filter_plan)
        if mt_pks and mt_table is not None:
            mt_filter_mask = evaluate_mask(compiled_filter, mt_table)

    # 3. Per-source recall (Lite's code, but the segment masks).
    per_query_candidates: list[list[tuple[float, int, int]]] = [[] for _ in range(nq)]
    sources: list[tuple[list[Any], np.ndarray, np.ndarray]] = []
    mt_deletes = memtable.delete_index_snapshot()  # {pk: (seq, partition)}
    tombstones: dict[Any, int] = delta_index._map

    def _memtable_mask(pks: list[Any], seqs: np.ndarray, filter_mask: np.ndarray | None) -> np.ndarray:
        n = len(pks)
        local_mask = np.zeros(n, dtype=bool)
        for i in range(n):
            pk = pks[i]
            seq = int(seqs[i])
            if global_max_seqs.get(pk) != seq:
                continue
            if delta_index.is_deleted(pk, seq):
                continue
            mt_entry = mt_deletes.get(pk)
            if mt_entry is not None and mt_entry[0] > seq:
                continue
            local_mask[i] = True
        if filter_mask is not None:
            local_mask = local_mask & filter_mask.astype(bool)
        return local_mask

    def _recall_source(source_idx: int, local_mask: np.ndarray, vectors: np.ndarray, index: Any) -> None:
        if len(local_mask) == 0 or not local_mask.any():
            return
        if index is None or (not isinstance(index, BruteForceIndex) and _exact_is_better(local_mask, top_k)):
            index = BruteForceIndex.build(vectors, metric_type)
        local_ids, dists = index.search(query_vectors, top_k, valid_mask=None if local_mask.all() else local_mask,
                                        params=search_params)
        _gather(per_query_candidates, local_ids, dists, top_k, lambda lid: (source_idx, lid))

    for seg in in_scope:
        seg_vectors, seg_vector_null_mask = seg.vector_data(vector_field)
        sources.append((seg.pks, seg.seqs, seg_vectors))  # Lite copies the key list: not needed, read only
        mask = segment_mask(seg, newest, tombstones, mt_deletes, lambda partition, seg: True)
        combined_mask = seg_filter_masks.get(id(seg))
        if combined_mask is not None:
            mask &= combined_mask.astype(bool)
        if seg_vector_null_mask is not None:
            mask &= seg_vector_null_mask.astype(bool)
        _recall_source(len(sources) - 1, mask, seg_vectors, seg.indexes.get(vector_field))

    if mt_pks:
        sources.append((mt_pks, mt_seqs, mt_vecs))
        _recall_source(len(sources) - 1, _memtable_mask(mt_pks, mt_seqs, mt_filter_mask), mt_vecs, None)

    n_segments = len(in_scope)

    # 4. Global merge and projection (Lite's code).
    if project_record_fn is not None:
        project_entity = project_record_fn
    elif output_fields is None:
        def project_entity(record: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in record.items() if k != pk_field and k != vector_field}
    else:
        keep = set(output_fields)
        keep.discard(pk_field)

        def project_entity(record: dict[str, Any]) -> dict[str, Any]:
            return {k: record[k] for k in keep if k in record}

    wanted = _wanted(output_fields, pk_field)

    results: list[list[dict[str, Any]]] = []
    for q in range(nq):
        candidates = per_query_candidates[q]
        candidates.sort(key=lambda c: (c[0], c[1], c[2]))
        chosen = candidates[:top_k]
        rows = _segment_rows(in_scope, [(s, i) for _, s, i in chosen if s < n_segments], wanted)
        per_query: list[dict[str, Any]] = []
        for dist, source_idx, local_id in chosen:
            record = (rows[source_idx, local_id] if source_idx < n_segments
                      else memtable.materialize_row(*mt_row_refs[local_id]))
            pk = record.get(pk_field) if pk_field in record else sources[source_idx][0][local_id]
            per_query.append({"id": pk, "distance": dist, "entity": project_entity(record)})
        results.append(per_query)
    return results


EXACT_ROWS = 2048  # a segment whose filter keeps at most this many rows is searched exactly
EXACT_MOST = 16_384  # and never more than this many (Lite copies the rows kept to score them)


def _exact_is_better(mask: np.ndarray, top_k: int) -> bool:
    """Whether the rows of a segment that `mask` keeps (some, not all) are better scored one by one
    than found through its graph index: when they are at most EXACT_ROWS or twice top_k, or at most
    7% of the segment's rows, and never more than EXACT_MOST. Milvus' engine (knowhere's HNSW) scores them when the
    filter drops at least 93% of the rows or top_k is at least half the rows kept. A graph walk that
    may return only some rows misses many of the best and is slower than scoring that many rows
    (measured, HNSW with ef 64, 384 dimensions, random vectors: 50 rows kept of 1,000: 17 of the top
    20 found, 0.05 ms against 0.02; 256 of 5,000: 10 of 20, 0.08 ms against 0.03; 2,500 of 5,000:
    14 of 20, 0.18 ms against 0.15)."""
    kept = int(np.count_nonzero(mask))
    return kept < len(mask) and kept <= EXACT_MOST and (kept <= max(EXACT_ROWS, 2 * top_k) or kept <= 0.07 * len(mask))


def _wanted(output_fields: list[str] | None, pk_field: str) -> frozenset[str] | None:
    """The columns a dense search's projection reads from a row (None: every column)."""
    if output_fields is None or "*" in output_fields:
        return None
    return frozenset((*output_fields, pk_field))


def _take(refs: Iterable[tuple[Any, int]], keep: Callable[[str], bool],
          selection: Hashable) -> dict[tuple[int, int], dict[str, Any]]:
    """Rows of segments as dicts of the columns `keep` accepts (`selection` tells that choice of
    columns apart from others: the columns kept are known by it): {(id(segment), row): row's dict},
    read-only (kept, see `_SegmentRows`). Rows not kept yet are read in one Arrow `take` per segment
    (Lite reads each cell on its own: ~1.5 µs a cell, the 384-float vector ~13)."""
    by_segment: dict[int, tuple[Any, list[int]]] = {}
    for seg, row in refs:
        by_segment.setdefault(id(seg), (seg, []))[1].append(row)
    views = vectors_as_views()
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for key, (seg, rows) in by_segment.items():
        kept = _SegmentRows.of(seg, selection, keep)
        out.update(((key, row), value) for row, value in zip(rows, kept.rows(seg, rows, views), strict=True))
    return out


class _SegmentRows:
    """The rows of one segment read so far, as dicts of some of its columns. A segment never changes
    (Lite writes a new file for new rows or a compaction), so each row is read from Arrow once: a
    recall's two searches at 1k memories read 40 rows, ~0.3 ms of Arrow `take` and `to_pylist`, more
    after a model call has emptied the CPU's caches. Float vectors are not kept: they come from the
    segment's own vector matrix (Lite's `Segment.vector_data`) at each read, as read-only rows of it
    within `lite.vector_views` and as lists of floats otherwise (Arrow's values). At most _ROWS_KEPT
    rows of at most _KEPT (segment, columns) are kept, the oldest dropped first; a segment is known by
    its table (a weak reference: a segment compacted away is not kept alive). The first read of a
    segment of at most _WHOLE rows reads all of them (a recall reads 20 of a community's rows: at 1k
    memories, most of the segment)."""

    _kept: dict[tuple[int, Hashable], _SegmentRows] = {}
    _held = 0  # rows kept, over every segment

    def __init__(self, key: tuple[int, Hashable], seg: Any, keep: Callable[[str], bool]) -> None:
        self.key, self.table = key, weakref.ref(seg.table)
        schema = seg.table.schema
        names = [name for name in schema.names if keep(name)]
        self.vectors = tuple(name for name in names if pa.types.is_fixed_size_list(kind := schema.field(name).type)
                             and pa.types.is_float32(kind.value_type))
        self.plain = [name for name in names if name not in self.vectors]
        self.by_row: dict[int, dict[str, Any]] = {}

    @classmethod
    def of(cls, seg: Any, selection: Hashable, keep: Callable[[str], bool]) -> _SegmentRows:
        key = (id(seg), selection)
        found = cls._kept.get(key)
        if found is not None and found.table() is seg.table:
            return found
        made = cls(key, seg, keep)
        with _lock:
            old = cls._kept.pop(key, None)
            cls._held -= len(old.by_row) if old is not None else 0
            cls._kept[key] = made
            cls._trim()
        return made

    def rows(self, seg: Any, rows: list[int], views: bool) -> list[dict[str, Any]]:
        missing = sorted({row for row in rows if row not in self.by_row})
        if missing:
            if seg.num_rows <= _WHOLE:
                missing = [row for row in range(seg.num_rows) if row not in self.by_row]
            self._read(seg, missing)
        if not self.vectors:
            return [self.by_row[row] for row in rows]
        matrices = [(name, *seg.vector_data(name)) for name in self.vectors]
        out = []
        for row in rows:
            value = dict(self.by_row[row])
            for name, matrix, valid in matrices:
                value[name] = (None if valid is not None and not valid[row]
                               else _read_only(matrix[row]) if views else matrix[row].tolist())
            out.append(value)
        return out

    def _read(self, seg: Any, rows: list[int]) -> None:
        values = (seg.table.select(self.plain).take(pa.array(rows, type=pa.int64())).to_pylist() if self.plain
                  else [{} for _ in rows])  # (a table of no column has no rows)
        with _lock:
            fresh = {row: value for row, value in zip(rows, values, strict=True) if row not in self.by_row}
            self.by_row.update(fresh)
            if _SegmentRows._kept.get(self.key) is self:
                _SegmentRows._held += len(fresh)
                _SegmentRows._trim()

    @classmethod
    def _trim(cls) -> None:  # under _lock; the rows of an entry dropped stay readable by whoever holds it
        while cls._kept and (cls._held > _ROWS_KEPT or len(cls._kept) > _KEPT):
            cls._held -= len(cls._kept.pop(next(iter(cls._kept))).by_row)


_ROWS_KEPT = 16_384
_WHOLE = 512


def _read_only(row: np.ndarray) -> np.ndarray:
    view = row.view()
    view.flags.writeable = False
    return view


def _segment_rows(segments: Sequence[Any], refs: list[tuple[int, int]],
                  wanted: frozenset[str] | None) -> dict[tuple[int, int], dict[str, Any]]:
    """Lite's `Segment.row_to_dict` of each (segment index, row), reading only the columns in `wanted`
    and `$meta` (whose keys are the dynamic fields, unpacked as Lite does); every column when
    `wanted` is None. Lite reads every column of a row, the vectors included."""
    taken = _take(((segments[s], row) for s, row in refs),
                  lambda name: name != "_seq" and (wanted is None or name in wanted or name == "$meta"),
                  ("dense", wanted))
    rows = {}
    for s, row in refs:
        result = taken[id(segments[s]), row]
        meta_raw = result.get("$meta")
        if meta_raw is not None:
            result = dict(result)  # the row as read is kept (_SegmentRows)
        if isinstance(meta_raw, str):
            try:
                meta = json.loads(meta_raw)
                if isinstance(meta, dict):
                    result.update(meta)
            except (json.JSONDecodeError, ValueError):
                pass
        elif isinstance(meta_raw, dict):
            result.update(meta_raw)
        rows[s, row] = result
    return rows


# -- Lite's sparse search, the per-row loops replaced ----------------------------------------------

def sparse(self: Any, query_vectors: list[Any], vector_field: str, top_k: int, metric_type: str,
           partition_names: list[str] | None, expr: str | None, output_fields: list[str] | None,
           timezone: str | None = None) -> list[list[dict[str, Any]]]:
    """Lite's `Collection._search_sparse` (same arguments, same results), the validity of segment
    rows computed from key indexes instead of row by row."""
    if not _state["on"]:
        return _stock["sparse"](self, query_vectors, vector_field, top_k, metric_type, partition_names, expr,
                                output_fields, timezone)
    from milvus_lite.analyzer.sparse import bytes_to_sparse
    from milvus_lite.constants import ALL_PARTITIONS
    from milvus_lite.engine.projection import build_projection_plan
    from milvus_lite.index.sparse_factory import (
        _search_prepared_sparse_index,
        create_sparse_index,
        sparse_index_matches,
    )

    partition_filter = set(partition_names) if partition_names else None
    projection_plan = build_projection_plan(
        output_fields, self._schema, api_kind="search"
    )
    read_all = projection_plan.engine_fields is None
    read = set(projection_plan.engine_fields or ())
    schema_names = {field.name for field in self._schema.fields}

    sparse_spec = self._index_specs.get(vector_field)
    index_params = sparse_spec.build_params if sparse_spec else {}

    # Convert query vectors upfront
    query_sparse = self._prepare_sparse_queries(query_vectors, vector_field)
    nq = len(query_sparse)
    compiled_filter = self._compile_filter(expr, timezone=timezone) if expr else None
    indexed_filter_plan = self._indexed_filter_plan(compiled_filter)

    # Per-source candidates: (distance, global_pk, source_ref)
    Candidate = tuple[float, Any, Any]  # (dist, pk, (segment, row_idx))
    per_query_candidates: list[list[Candidate]] = [[] for _ in range(nq)]

    # Read snapshot — keeps segment cache and tombstones from crossing
    # compaction / tombstone-GC generations.
    seg_snapshot, delta_snap = self._read_snapshot()
    mt_deletes = self._memtable.delete_index_snapshot()

    # ── The newest version of the keys held in more than one place ──
    # (Lite: a map of every row of every segment read.) Versions are resolved over every segment
    # read, before partition pruning, and the memtable, as Lite does.
    with_rows = [seg for seg in seg_snapshot if seg.num_rows > 0]
    if not _one_row_per_key(with_rows) or not isinstance(getattr(delta_snap, "_map", None), dict):
        return _stock["sparse"](self, query_vectors, vector_field, top_k, metric_type, partition_names, expr,
                                output_fields, timezone)
    mt_newest: dict[Any, int] = {}
    for pk, (_, _, seq) in self._memtable.pk_index_snapshot():
        mt_newest[pk] = max(int(seq), mt_newest.get(pk, -1))
    newest, global_pk_seq = _versions(with_rows, mt_newest)  # the second: what the memtable loop reads
    tombstones: dict[Any, int] = delta_snap._map

    # ── Per-segment search (cached indexes) ──────────────────
    for seg in seg_snapshot:
        if partition_filter is not None:
            if seg.partition not in partition_filter:
                continue
        table = seg.table
        if table is None or len(table) == 0:
            continue

        # Build or reuse cached sparse index for this segment
        cached_idx = seg.sparse_indexes.get(vector_field)
        if not sparse_index_matches(cached_idx, metric_type, index_params):
            sparse_batch = table.column(vector_field).to_pylist()
            sparse_vecs = [
                bytes_to_sparse(r) if isinstance(r, bytes) else (r or {})
                for r in sparse_batch
            ]
            cached_idx = create_sparse_index(metric_type, index_params)
            cached_idx.build(sparse_vecs)  # no valid_mask — full segment
            seg.sparse_indexes[vector_field] = cached_idx

        # Build valid_mask for this segment (dedup + tombstone + filter), from its key index
        pks = seg.pks
        valid_mask = segment_mask(seg, newest, tombstones, mt_deletes,
                                  lambda partition, seg: partition in (ALL_PARTITIONS, seg.partition))

        # Apply scalar filter
        if compiled_filter is not None:
            valid_mask = valid_mask & _filter_mask(seg, compiled_filter, indexed_filter_plan)

        if not valid_mask.any():
            continue

        # Search this segment's cached index
        local_ids, dists = _search_prepared_sparse_index(
            cached_idx, query_sparse, top_k, valid_mask=valid_mask,
        )
        def segment_hit(lid: int, pks: Any = pks, seg: Any = seg) -> tuple[Any, ...]:
            return pks[lid], (seg, lid)

        _gather(per_query_candidates, local_ids, dists, top_k, segment_hit)

    # ── Memtable search (rebuilt each time — small + mutable) ─
    mt = self._memtable
    mt_pks: list[Any] = []
    mt_sparse: list[Any] = []
    mt_refs: list[Any] = []
    for pk, seq, record in mt.active_record_snapshots(
        partition_names=partition_names
    ):
        if delta_snap.is_deleted(pk, seq) or global_pk_seq.get(pk, -1) > seq:
            continue
        raw = record.get(vector_field)
        mt_pks.append(pk)
        mt_sparse.append(
            bytes_to_sparse(raw) if isinstance(raw, bytes) else (raw or {})
        )
        mt_refs.append((record, seq))

    if mt_pks:
        mt_valid = np.ones(len(mt_pks), dtype=bool)

        if compiled_filter is not None:
            from milvus_lite.search.filter.eval.python_backend import _eval_row
            for i in range(len(mt_pks)):
                if mt_valid[i]:
                    record, _seq = mt_refs[i]
                    if not _eval_row(compiled_filter.ast, record):
                        mt_valid[i] = False

        mt_idx = create_sparse_index(metric_type, index_params)
        mt_idx.build(mt_sparse, valid_mask=mt_valid)
        local_ids, dists = _search_prepared_sparse_index(mt_idx, query_sparse, top_k)
        _gather(per_query_candidates, local_ids, dists, top_k, lambda lid: (mt_pks[lid], mt_refs[lid]))

    # ── Global merge + dedup + materialize ────────────────────
    # Dedup: if same pk appears from segment + memtable, keep
    # the one with the highest seq (latest version).
    def _is_memtable_sparse_ref(source: Any) -> bool:
        return isinstance(source, tuple) and bool(source) and isinstance(source[0], dict)

    def _candidate_seq(source: Any) -> int:
        if _is_memtable_sparse_ref(source):
            return int(source[1])
        seg, row_i = source
        return int(seg.table.column("_seq")[row_i].as_py())

    results: list[list[dict[str, Any]]] = []
    for qi in range(nq):
        candidates = per_query_candidates[qi]
        # First, deduplicate by pk keeping the latest version (highest seq; the first of equal ones).
        # The sequence numbers are read only for a key found twice (Lite reads every candidate's).
        pk_best: dict[Any, Any] = {}  # pk → (dist, pk, (segment, row_i))
        for cand in candidates:
            held = pk_best.get(cand[1])
            if held is None or _candidate_seq(cand[2]) > _candidate_seq(held[2]):
                pk_best[cand[1]] = cand
        deduped = list(pk_best.values())
        # Sort by distance ascending (smaller = better)
        deduped.sort(key=lambda c: c[0])
        chosen = deduped[:top_k]
        taken = _take((source for _, _, source in chosen if not _is_memtable_sparse_ref(source)),
                      lambda name: name not in ("_seq", "_partition")  # only what the projection reads
                      and (read_all or name in read or name not in schema_names),
                      ("sparse", read_all, frozenset(read)))
        hits: list[dict[str, Any]] = []
        for dist, pk, source in chosen:
            # Deferred materialization
            if _is_memtable_sparse_ref(source):
                record, _seq = source
            else:
                seg, row_i = source
                record = taken[id(seg), row_i]
            entity = project(record, self._schema, projection_plan)
            hits.append({"id": pk, "distance": dist, "entity": entity})
        results.append(hits)

    return results
