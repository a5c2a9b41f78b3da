"""The Milvus collection behind the memory: open it, write rows, read rows, search by vector.

With `milvus.py` (pymilvus itself, the schema, what its errors mean), `lite.py` (Milvus Lite in
this process, and its quirks) and `migrate.py` (older schemas), the only code that talks to
Milvus. Every method is blocking; callers run them in a worker thread. One `MemoryStore` per
process: Milvus Lite lets a single process open a database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .config import SERVER_SCHEMES
from .errors import DimensionMismatch, StoreError, StoreLocked, StoreUnavailable
from .filters import MemoryFilter, quote_list
from .lite import LiteDatabase, distinct, is_locked_elsewhere, lite_bucket, lite_partition_buckets
from .milvus import (
    FIELDS,
    SPARSE_SEARCH,
    MilvusClient,
    MilvusException,
    connection_lost,
    create_collection,
    grpc,
    message,
    schema_version,
    search_params,
    timed_out,
)
from .models import IndexedMemory, MemoryRecord

log = logging.getLogger(__name__)
logging.getLogger("pymilvus").setLevel(logging.ERROR)  # it logs every failed call it then raises

QUERY_LIMIT = 16_384  # the most rows one Milvus query returns


def _record(entity: dict[str, Any]) -> MemoryRecord:
    fields: dict[str, Any] = {name: entity.get(name) for name in FIELDS}
    fields["thread"] = fields["thread"] or ""
    for name in ("seq", "expires_at"):
        fields[name] = int(fields[name] or 0)
    return MemoryRecord(**fields)


def _indexed(entity: dict[str, Any]) -> IndexedMemory:
    return IndexedMemory(_record(entity), [float(x) for x in entity["dense"]], _sparse(entity.get("sparse")),
                         float(entity.get("kw_len") or 0.0))


def _sparse(value: Any) -> dict[int, float]:
    """A sparse vector as pymilvus returns it (a dict, or a scipy-like row) as {term: weight}."""
    if not value:
        return {}
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


class MemoryStore:
    """Owns one Milvus connection and one collection. Constructing it does no I/O; `open` does."""

    def __init__(self, uri: str, collection: str, dimension: int, *, token: str | None = None,
                 index_type: str = "HNSW", timeout: float = 30.0) -> None:
        self.uri = uri
        self.timeout = timeout  # seconds per Milvus call, retries included (a server's; Lite's run in process)
        self.collection = collection
        self.dimension = dimension
        self.index_type = index_type
        self._token = token
        self._client: MilvusClient | None = None
        self._lite: LiteDatabase | None = None
        self._open_lock = threading.Lock()
        self._lite_buckets: tuple[str, int] | None = None
        self._lost = False  # the connection broke and reopening failed: the next call tries again

    @property
    def lite(self) -> LiteDatabase | None:
        """The Milvus Lite database this process opened (None for a Milvus server, or when closed)."""
        return self._lite

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(SERVER_SCHEMES)

    @property
    def exclusive(self) -> bool:
        """Whether this process alone writes the collection: a Milvus Lite database is opened by one
        process; a Milvus server may have other writers."""
        return self.is_lite

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Connect (Milvus Lite: open the database in this process), create the collection if
        missing (migrating one of an older schema), check its dimension and load it.

        Raises StoreError (the database is locked by another process, or unreachable) or
        DimensionMismatch.
        """
        with self._open_lock:
            if self._client is not None:
                return
            client = self._connect()
            try:
                self._ensure_collection(client)
            except MilvusException as exc:
                self._disconnect(client)
                raise StoreError(f"cannot prepare collection {self.collection!r} at {self.uri}: {exc}") from exc
            except Exception:
                self._disconnect(client)
                raise
            self._client = client
            self._lost = False
            self._lite_buckets = self._buckets(client) if self._lite is not None else None

    def close(self) -> None:
        with self._open_lock:
            if self._client is not None:
                try:
                    self._client.flush(self.collection)
                except (MilvusException, grpc.RpcError) as exc:  # closing anyway; the WAL keeps acknowledged writes
                    log.warning("flush on close failed: %s", exc)
                self._disconnect(self._client)
                self._client = None

    @property
    def client(self) -> MilvusClient:
        if self._client is None and self._lost:
            self.open()  # Milvus was unreachable at the last attempt: it may be back (raises StoreError if not)
        if self._client is None:
            raise StoreError("the memory store is not open")
        return self._client

    def _connect(self) -> MilvusClient:
        if not self.is_lite:
            try:
                return MilvusClient(uri=self.uri, token=self._token or "", timeout=self.timeout)
            except MilvusException as exc:
                raise StoreError(f"cannot open Milvus at {self.uri}: {exc}") from exc
        if not self.uri.endswith(".db"):
            raise StoreError(f"MILVUS_URI {self.uri!r} is neither a Milvus Lite path ending in .db nor a "
                             "server URI (http://, https://, tcp://, unix:)")
        Path(self.uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lite = LiteDatabase(self.uri)
        except Exception as exc:
            if is_locked_elsewhere(exc):
                raise StoreLocked(
                    f"Milvus Lite database {self.uri} is open in another process (only one process may open "
                    "it). Run one hub (`mcp-memory-server serve --transport streamable-http`) and point other "
                    "servers at it with MEMORY_HUB_URL.") from exc
            raise StoreError(f"cannot open Milvus Lite database {self.uri}: {exc}") from exc
        return MilvusClient(uri=self._lite.uri, **self._lite.client_options)

    def _disconnect(self, client: MilvusClient) -> None:
        try:
            client.close()
        except (MilvusException, grpc.RpcError):  # already broken
            pass
        if self._lite is not None:
            self._lite.close()
            self._lite = None

    def _ensure_collection(self, client: MilvusClient) -> None:
        if not client.has_collection(self.collection):
            create_collection(client, self.collection, self.dimension, self.index_type)
            return
        description = client.describe_collection(self.collection)
        for f in description["fields"]:
            if f["name"] == "dense" and int(f["params"]["dim"]) != self.dimension:
                raise DimensionMismatch(
                    f"collection {self.collection!r} at {self.uri} stores {int(f['params']['dim'])}-dimensional "
                    f"vectors but the embedder produces {self.dimension}-dimensional ones; use the embedder it "
                    "was built with, or another MEMORY_COLLECTION / MILVUS_URI")
        if schema_version(description) < 2:
            from .migrate import migrate_v1  # only for databases written by version 0.1

            migrate_v1(client, self.collection, self.dimension, self.index_type)
        client.load_collection(self.collection)
        # MEMORY_INDEX_TYPE applies when a collection is created: an existing one keeps its index,
        # and its search parameters (and what stats report) must be the index's, not the setting's.
        actual = (client.describe_index(self.collection, "dense") or {}).get("index_type")
        if actual and actual != self.index_type:
            log.info("collection %r has a %s index (MEMORY_INDEX_TYPE=%s applies to new collections)",
                     self.collection, actual, self.index_type)
            self.index_type = str(actual)

    def _buckets(self, client: MilvusClient) -> tuple[str, int] | None:
        try:
            return lite_partition_buckets(set(client.list_partitions(self.collection)))
        except (MilvusException, grpc.RpcError):
            return None

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
                   depth: int) -> list[IndexedMemory]:
        """The union of the `depth` best memories by dense and by keyword vector, with their
        vectors (a hybrid recall scores every candidate on both sides: ranking.fuse)."""
        fields = [*FIELDS, "dense", "sparse", "kw_len"]
        hits = self._search(flt, "dense", list(vector), depth, search_params(self.index_type, depth), fields)
        if weights:
            hits += self._search(flt, "sparse", weights, depth, SPARSE_SEARCH, fields)
        return [_indexed(h["entity"]) for h in distinct(hits)]

    def _search(self, flt: MemoryFilter, field: str, data: Any, k: int, params: dict[str, Any],
                fields: list[str]) -> list[Any]:
        result = self._call(self.client.search, self.collection, data=[data], anns_field=field, filter=flt.expression(),
                            limit=k, output_fields=fields, search_params=params,
                            partition_names=self._partitions(flt.communities))
        return distinct(result[0] if result else [])

    # -- helpers ---------------------------------------------------------------------------

    def _partitions(self, communities: Sequence[str] | None) -> list[str] | None:
        """On Milvus Lite, the partition-key buckets that can hold `communities` (None elsewhere,
        and for a search over every community). A Milvus server prunes partition-key buckets by
        itself; Lite scans every bucket in Python unless told which (~200 ms per search at 100k)."""
        if self._lite_buckets is None or communities is None:
            return None
        prefix, n = self._lite_buckets
        return sorted({f"{prefix}{lite_bucket(c, n)}" for c in communities})

    def _iterate(self, expr: str, fields: list[str], partitions: list[str] | None) -> Iterator[dict[str, Any]]:
        iterator = self._call(self.client.query_iterator, self.collection, batch_size=1000, filter=expr,
                              output_fields=fields, partition_names=partitions)
        try:
            while batch := self._call(iterator.next):
                yield from batch
        finally:
            iterator.close()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call, bounded by `timeout`; on a lost connection to a server, reconnect once
        and retry it. Raises StoreError."""
        client_call = getattr(fn, "__self__", None) is self._client
        if client_call:
            kwargs.setdefault("timeout", self.timeout)
        try:
            return fn(*args, **kwargs)
        except (MilvusException, grpc.RpcError) as exc:
            if timed_out(exc):
                raise StoreUnavailable(f"Milvus at {self.uri} did not answer within {self.timeout:g} s "
                                       "(MILVUS_TIMEOUT): it may be down or overloaded; retry later") from exc
            if not (client_call and connection_lost(exc)):
                raise StoreError(f"Milvus call failed: {message(exc)}") from exc
            log.warning("lost the connection to Milvus at %s (%s): reconnecting", self.uri, message(exc))
            try:
                self._reconnect(fn.__self__)
                return getattr(self.client, fn.__name__)(*args, **kwargs)
            except (MilvusException, grpc.RpcError, StoreError) as again:
                raise StoreUnavailable(f"Milvus at {self.uri} is unreachable: {message(again)}") from again

    def _reconnect(self, failed: Any) -> None:
        with self._open_lock:
            broken = self._client
            if broken is None or broken is not failed:  # another thread reconnected already
                return
            self._client = None
            self._lost = True  # until open() succeeds
            self._disconnect(broken)
        self.open()
