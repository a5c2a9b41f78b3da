"""The memory in its Milvus collection: write rows, read rows, scan them, search by vector.

With `collection.py` (the connection: open, close, bounded calls), `milvus.py` (pymilvus itself,
the schema, what its errors mean), `lite.py` (Milvus Lite in this process, and its quirks) and
`migrate.py` (older schemas), the only code that talks to Milvus. Every method is blocking;
callers run them in a worker thread. One `MemoryStore` per process: Milvus Lite lets a single
process open a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from . import lite_masks, lite_scope
from .collection import MilvusCollection
from .filters import MemoryFilter, quote_list
from .keywords import sparse_dot
from .lite import _sparse as lite_sparse
from .lite import distinct, lite_bucket, search_refused
from .milvus import FIELDS, SPARSE_SEARCH, search_params
from .models import IndexedMemory, MemoryRecord

QUERY_LIMIT = 16_384  # the most rows one Milvus query returns


def _record(entity: dict[str, Any]) -> MemoryRecord:
    fields: dict[str, Any] = {name: entity.get(name) for name in FIELDS}
    fields["thread"] = fields["thread"] or ""
    fields["tags"] = list(fields["tags"] or ())  # its own list: Lite's rows are kept (lite_masks._SegmentRows)
    for name in ("seq", "expires_at"):
        fields[name] = int(fields[name] or 0)
    return MemoryRecord(**fields)


def _indexed(entity: dict[str, Any]) -> IndexedMemory:
    dense = entity["dense"]  # pymilvus gives a list of floats: copying it float by float cost ~0.5 ms a recall
    return IndexedMemory(_record(entity), dense if isinstance(dense, list) else [float(x) for x in dense],
                         _sparse(entity.get("sparse")), float(entity.get("kw_len") or 0.0))


def _sparse(value: Any) -> dict[int, float]:
    """A sparse vector as pymilvus returns it (a dict, or a scipy-like row), or as Milvus Lite holds
    it (bytes: `LiteDatabase.search(raw=...)`), as {term: weight}."""
    if not value:
        return {}
    if isinstance(value, bytes):
        value = lite_sparse(value)
    if isinstance(value, dict):
        return {int(k): float(v) for k, v in value.items()}
    return {int(k): float(v) for k, v in zip(value.indices, value.data, strict=True)}


def _once(rows: Iterable[dict[str, Any]], seen: set[str]) -> Iterator[dict[str, Any]]:
    """Rows whose id was not seen yet (Milvus Lite can hold a replayed row twice: lite.distinct)."""
    for row in rows:
        if row["id"] not in seen:
            seen.add(row["id"])
            yield row


def _row(memory: IndexedMemory) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(memory.record, name) for name in FIELDS}
    row.update(dense=memory.dense, sparse=memory.sparse, kw_len=memory.kw_len)
    return row


class MemoryStore(MilvusCollection):
    """The memory's rows in one Milvus collection: write, read, scan and search them."""

    def __init__(self, uri: str, collection: str, dimension: int, *, narrow: bool = True, **options: Any) -> None:
        super().__init__(uri, collection, dimension, **options)
        self.narrow = narrow  # on Milvus Lite, keyword searches read only the buckets searched (lite_scope)
        self.direct = narrow  # on Milvus Lite, searches ask the engine without protobuf (lite.LiteDatabase.search)

    def open(self) -> None:
        super().open()
        lite = self.lite
        if self.narrow and lite is not None:
            lite_masks.install()  # exact for any collection; first: lite_scope wraps what it installs
        # Sound for this collection only: an id hashes its community, the partition key (lite_scope).
        if self.narrow and lite is not None and self._lite_buckets is not None:
            lite_scope.narrow(lite.path, self.collection)

    def close(self) -> None:
        lite = self.lite
        if lite is not None:
            lite_scope.release(lite.path, self.collection)
        super().close()

    @property
    def narrowed(self) -> bool:
        """Whether keyword searches read only the partition-key buckets searched (Milvus Lite)."""
        lite = self.lite
        return lite is not None and lite_scope.active(lite.path, self.collection)

    def narrowing(self) -> str | None:
        """For /health and `doctor`: how a keyword search reads Milvus Lite (None on a server)."""
        if self.lite is None:
            return None
        if self.narrowed:
            return "the communities' buckets only"
        why = "MEMORY_LITE_NARROW is off" if not self.narrow else lite_scope.refused() or "unknown partitions"
        return f"the whole collection ({why})"

    def row_checks(self) -> str | None:
        """For /health and `doctor`: how a search on Milvus Lite (dense or keyword) decides which
        rows of the segments it reads count (lite_masks; None on a server)."""
        if self.lite is None:
            return None
        if lite_masks.installed():
            return "each segment's key index"
        why = "MEMORY_LITE_NARROW is off" if not self.narrow else lite_masks.refused() or "not installed"
        return f"a loop over every row (Lite's own; {why})"

    def search_path(self) -> str | None:
        """For /health: how a search reaches Milvus Lite (None on a server)."""
        if self.lite is None:
            return None
        if self.searches_engine:
            return "the engine directly"
        why = "MEMORY_LITE_NARROW is off" if not self.direct else search_refused() or "turned off"
        return f"pymilvus through the servicer ({why})"

    # -- writes ----------------------------------------------------------------------------

    def insert(self, memories: Sequence[IndexedMemory]) -> None:
        """Insert memories with their vectors. Returns once Milvus acknowledged them. On a server,
        as an upsert: Milvus does not enforce unique primary keys, and two hubs that both find new
        content absent (each checks before it writes) would store it twice; ids are derived from the
        content, so an upsert keeps one row whichever hub writes last."""
        self._write("insert" if self.is_lite else "upsert", memories)

    def upsert(self, memories: Sequence[IndexedMemory]) -> None:
        """Replace memories (same ids) with new vectors or fields."""
        self._write("upsert", memories)

    def _write(self, how: str, memories: Sequence[IndexedMemory]) -> None:
        if not memories:
            return
        self._call(getattr(self.client, how), self.collection, [_row(m) for m in memories])
        if self._lite is not None:
            # Milvus Lite searches unflushed rows without an index, in Python, at ~50 us a row (a
            # 400-row memtable costs ~25 ms per recall; it holds up to 128 MB). A flush (~20 ms)
            # moves them into an indexed segment; Lite compacts the small segments in the background.
            self._call(self.client.flush, self.collection)

    def delete(self, community: str, ids: Sequence[str]) -> None:
        """Delete the memories `ids` of `community`."""
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            self._call(self.client.delete, self.collection,
                       filter=MemoryFilter(communities=[community], ids=chunk).expression())

    # -- reads -----------------------------------------------------------------------------

    def existing_ids(self, communities: Sequence[str], ids: Sequence[str], live_at: int | None = None) -> set[str]:
        """Which of `ids` are stored in `communities` (and have not expired at `live_at`, epoch ms)."""
        return {i for i, expires in self.expiries(communities, ids).items()
                if live_at is None or expires == 0 or expires > live_at}

    def expiries(self, communities: Sequence[str], ids: Sequence[str]) -> dict[str, int]:
        """{id: expires_at} of those of `ids` stored in `communities` (0: never expires)."""
        if not ids:
            return {}
        # By primary key alone, then the community in Python: an `id in [...]` query is a key lookup
        # (~1 ms), while adding the community clause makes Milvus Lite scan (~30 ms at 2k rows).
        rows = self._call(self.client.query, self.collection, filter=f"id in {quote_list(ids)}",
                          output_fields=["id", "community", "expires_at"])
        wanted = set(communities)
        return {r["id"]: int(r.get("expires_at") or 0) for r in rows if r["community"] in wanted}

    def get(self, flt: MemoryFilter, limit: int = 1000) -> list[MemoryRecord]:
        rows = self._call(self.client.query, self.collection, filter=flt.expression(),
                          output_fields=FIELDS, limit=limit, partition_names=self._partitions(flt.communities))
        return [_record(r) for r in rows]

    def get_by_ids(self, ids: Sequence[str]) -> list[MemoryRecord]:
        """The memories with these ids, whatever their community (the caller checks it): a key lookup,
        fast on Milvus Lite, where adding a community clause would scan the community's bucket."""
        if not ids:
            return []
        rows = self._call(self.client.query, self.collection, filter=f"id in {quote_list(ids)}", output_fields=FIELDS)
        return [_record(r) for r in _once(rows, set())]

    def get_indexed_by_ids(self, ids: Sequence[str]) -> list[IndexedMemory]:
        """Like `get_by_ids`, with each memory's vectors."""
        if not ids:
            return []
        rows = self._call(self.client.query, self.collection, filter=f"id in {quote_list(ids)}",
                          output_fields=[*FIELDS, "dense", "sparse", "kw_len"])
        return [_indexed(r) for r in _once(rows, set())]

    def stamps(self, flt: MemoryFilter, limit: int) -> list[tuple[str, int]]:
        """(id, created_at) of at most `limit` memories the filter matches, in no particular order:
        two small fields, so that reading many costs little (recent.newest reads these)."""
        rows = self._call(self.client.query, self.collection, filter=flt.expression(),
                          output_fields=["id", "created_at"], limit=limit,
                          partition_names=self._partitions(flt.communities))
        return [(str(r["id"]), int(r["created_at"])) for r in rows]

    def get_indexed(self, flt: MemoryFilter, limit: int = 1000) -> list[IndexedMemory]:
        """Like `get`, with each memory's vectors."""
        rows = self._call(self.client.query, self.collection, filter=flt.expression(),
                          output_fields=[*FIELDS, "dense", "sparse", "kw_len"], limit=limit,
                          partition_names=self._partitions(flt.communities))
        return [_indexed(r) for r in rows]

    def scan(self, communities: Sequence[str] | None, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every row of `communities` (None: the whole collection), each id once, with `fields`.
        On Milvus Lite one query per partition-key bucket (its query iterator re-sorts every row
        for each page: quadratic); elsewhere Milvus' query iterator."""
        seen: set[str] = set()
        flt = MemoryFilter(communities=communities).expression()
        output = sorted({"id", "community", *fields})
        if self._lite_buckets is not None:
            prefix, n = self._lite_buckets
            buckets = ([f"{prefix}{lite_bucket(c, n)}" for c in communities] if communities is not None
                       else [f"{prefix}{i}" for i in range(n)])
            for bucket in sorted(set(buckets)):
                rows = self._call(self.client.query, self.collection, filter=flt, output_fields=output,
                                  limit=QUERY_LIMIT, partition_names=[bucket])
                if len(rows) >= QUERY_LIMIT:  # a bucket too big for one query: iterate it
                    rows = self._iterate(flt, output, [bucket])
                yield from _once(rows, seen)
            return
        yield from _once(self._iterate(flt, output, None), seen)

    def health(self) -> dict[str, Any]:
        """A cheap look at the collection (no scan): rows, load state, dense index state.
        Raises StoreError when Milvus does not answer."""
        rows = self._call(self.client.get_collection_stats, self.collection)
        load = self._call(self.client.get_load_state, self.collection)
        index = self._call(self.client.describe_index, self.collection, "dense") or {}
        return {"rows": int(rows.get("row_count", 0)), "load_state": str(load.get("state", "")).split(".")[-1],
                "index": {"type": index.get("index_type", self.index_type), "state": index.get("state", "unknown"),
                          "pending_rows": index.get("pending_index_rows", 0)}}

    def search_dense(self, flt: MemoryFilter, vector: Sequence[float], k: int) -> list[tuple[MemoryRecord, float]]:
        """The k memories whose dense vector has the largest inner product with `vector`, best first."""
        hits = self._search(flt, "dense", list(vector), k, search_params(self.index_type, k), FIELDS)
        return [(_record(h["entity"]), float(h["distance"])) for h in hits]

    def search_sparse(self, flt: MemoryFilter, weights: dict[int, float], k: int) -> list[tuple[MemoryRecord, float]]:
        """The k memories whose keyword vector has the largest inner product with the query's
        `weights` (their BM25), best first."""
        if not weights:
            return []
        hits = self._search(flt, "sparse", weights, k, SPARSE_SEARCH, FIELDS)
        return [(_record(h["entity"]), float(h["distance"])) for h in hits]

    def candidates(self, flt: MemoryFilter, vector: Sequence[float], weights: dict[int, float],
                   depth: int) -> list[tuple[MemoryRecord, float, float]]:
        """The union of the `depth` best memories by dense and by keyword vector, each with its
        inner product with `vector` (the cosine) and with `weights` (its BM25): a hybrid recall scores
        every candidate on both sides (ranking.fuse). A side's search gives its own value for the
        memories it found; the other value comes from the other stored vector, which is the only
        vector fetched (a 384-float vector fetched and decoded costs ~0.05 ms a hit)."""
        query = list(vector)
        # The other side's vector is read only for the memories one search found (`raw`: on Milvus
        # Lite, not decoded for the others, ~0.1 ms a recall at 1k memories).
        by_vector = self._search(flt, "dense", query, depth, search_params(self.index_type, depth),
                                 [*FIELDS, "sparse"], raw=("sparse",))
        by_words = self._search(flt, "sparse", weights, depth, SPARSE_SEARCH, [*FIELDS, "dense"],
                                raw=("dense",)) if weights else []
        by_id = {hit["entity"]["id"]: hit for hit in by_words}
        found = []
        for hit in by_vector:
            entity, also = hit["entity"], by_id.pop(hit["entity"]["id"], None)
            bm25 = float(also["distance"]) if also else sparse_dot(weights, _sparse(entity.get("sparse")))
            found.append((_record(entity), float(hit["distance"]), bm25))
        if by_id:  # found by keyword only, in the keyword search's order: the cosine from the stored vector
            unit = np.asarray(query, dtype=np.float64)  # (a float32 array from Lite, a list from a server)
            for hit in by_id.values():
                cosine = float(unit @ np.asarray(hit["entity"]["dense"], dtype=np.float64))
                found.append((_record(hit["entity"]), cosine, float(hit["distance"])))
        return found

    def _search(self, flt: MemoryFilter, field: str, data: Any, k: int, params: dict[str, Any],
                fields: list[str], raw: tuple[str, ...] = ()) -> list[Any]:
        """The hits of one search. A filter of live memories is sent with its time rounded down to the
        second (MemoryFilter.loose_live: the same text all second, so Milvus compiles it once); when a
        hit turns out to have expired since that second began, the search is made again with the
        exact time (rare: a memory that expired within the last second was among the best)."""
        loose = flt.loose_live() if "expires_at" in fields else None
        if loose is None or flt.live_at_ms is None:
            return self._search_expr(flt, flt.expression(), field, data, k, params, fields, raw)
        hits = self._search_expr(flt, loose, field, data, k, params, fields, raw)
        if any(0 < int(hit["entity"].get("expires_at") or 0) <= flt.live_at_ms for hit in hits):
            return self._search_expr(flt, flt.expression(), field, data, k, params, fields, raw)
        return hits

    def _search_expr(self, flt: MemoryFilter, expr: str, field: str, data: Any, k: int, params: dict[str, Any],
                     fields: list[str], raw: tuple[str, ...] = ()) -> list[Any]:
        lite = self.lite
        if lite is not None and self.searches_engine:
            hits = self._call(lite.search, self.collection, data, field, limit=k, expr=expr,
                              output_fields=fields, search_params=params,
                              partition_names=self._partitions(flt.communities), raw=raw)
            return distinct(hits)
        result = self._call(self.client.search, self.collection, data=[data], anns_field=field, filter=expr,
                            limit=k, output_fields=fields, search_params=params,
                            partition_names=self._partitions(flt.communities))
        return distinct(result[0] if result else [])

    @property
    def searches_engine(self) -> bool:
        """Whether searches ask Milvus Lite's engine directly (lite.LiteDatabase.search)."""
        return self.direct and self.lite is not None and search_refused() is None
