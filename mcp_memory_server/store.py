"""The Milvus collection behind the memory: schema, partition key, filters, search.

With `milvus.py` (pymilvus itself, the schema, what its errors mean) and `lite.py` (Milvus Lite's
quirks), the only code that talks to Milvus. Every method is blocking; callers run them in a
worker thread. One `MemoryStore` per process: Milvus Lite lets a single process open a database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .config import SERVER_SCHEMES, Fusion
from .errors import DimensionMismatch, StoreError, StoreLocked, StoreUnavailable
from .filters import MemoryFilter, quote_list
from .lite import distinct, lite_bucket, lite_partition_buckets, release_lite
from .milvus import (
    AnnSearchRequest,
    MilvusClient,
    MilvusException,
    RRFRanker,
    WeightedRanker,
    connection_lost,
    create_collection,
    grpc,
    message,
    search_params,
    timed_out,
)
from .models import MemoryRecord, SearchMode

log = logging.getLogger(__name__)
# query_iterator against Milvus Lite makes pymilvus warn ("failed to get mvccTs") and Lite's in-process
# gRPC server log AllocTimestamp as unimplemented, on every call; both are harmless.
logging.getLogger("pymilvus").setLevel(logging.ERROR)
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
# Milvus Lite logs a traceback when another process holds the database; StoreLocked says it in one line.
logging.getLogger("milvus_lite.server_manager").addFilter(
    lambda record: not record.getMessage().startswith("Failed to start MilvusLite server"))

FIELDS = ["id", "content", "community", "kind", "tags", "agent_id", "created_at", "content_hash", "metadata"]


def _record(entity: dict[str, Any]) -> MemoryRecord:
    fields: dict[str, Any] = {name: entity.get(name) for name in FIELDS}
    return MemoryRecord(**fields)


class MemoryStore:
    """Owns one Milvus connection and one collection. Constructing it does no I/O; `open` does."""

    def __init__(
        self,
        uri: str,
        collection: str,
        dimension: int,
        *,
        token: str | None = None,
        index_type: str = "HNSW",
        fusion: Fusion | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.uri = uri
        self.timeout = timeout  # seconds per Milvus call, retries included
        self.collection = collection
        self.dimension = dimension
        self.index_type = index_type
        self.fusion = fusion or Fusion()
        self._token = token
        self._client: MilvusClient | None = None
        self._open_lock = threading.Lock()
        self._lite = False
        self._lite_buckets: tuple[str, int] | None = None
        self._lost = False  # the connection broke and reopening failed: the next call tries again

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, create the collection if missing, check its dimension and load it.

        Raises StoreError (the database is locked by another process, or unreachable) or
        DimensionMismatch.
        """
        with self._open_lock:
            if self._client is not None:
                return
            is_local = not self.uri.startswith(SERVER_SCHEMES)
            if is_local and not self.uri.endswith(".db"):
                # pymilvus only treats a path ending in .db as a Milvus Lite database.
                raise StoreError(f"MILVUS_URI {self.uri!r} is neither a Milvus Lite path ending in .db nor a "
                                 "server URI (http://, https://, tcp://, unix:)")
            if is_local:
                Path(self.uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
            try:
                client = MilvusClient(uri=str(Path(self.uri).expanduser()) if is_local else self.uri,
                                      token=self._token or "", timeout=self.timeout)
            except MilvusException as exc:
                if is_local and (Path(self.uri).expanduser() / "LOCK").exists():
                    raise StoreLocked(
                        f"Milvus Lite database {self.uri} is open in another process (only one process "
                        "may open it). Run one hub (`mcp-memory-server serve --transport streamable-http`) "
                        "and point other servers at it with MEMORY_HUB_URL."
                    ) from exc
                raise StoreError(f"cannot open Milvus at {self.uri}: {exc}") from exc
            try:
                self._ensure_collection(client)
            except MilvusException as exc:
                client.close()
                raise StoreError(f"cannot prepare collection {self.collection!r} at {self.uri}: {exc}") from exc
            except Exception:
                client.close()
                raise
            self._client = client
            self._lost = False
            self._lite = is_local
            self._lite_buckets = self._buckets(client) if is_local else None

    def close(self) -> None:
        with self._open_lock:
            if self._client is not None:
                try:
                    self._client.flush(self.collection)
                except MilvusException as exc:  # closing anyway; the WAL keeps acknowledged writes
                    log.warning("flush on close failed: %s", exc)
                self._client.close()
                self._client = None
                if self._lite:
                    release_lite(self.uri)

    @property
    def exclusive(self) -> bool:
        """Whether this process alone writes the collection: a Milvus Lite database is opened by one
        process; a Milvus server may have other writers."""
        return not self.uri.startswith(SERVER_SCHEMES)

    @property
    def client(self) -> MilvusClient:
        if self._client is None and self._lost:
            self.open()  # Milvus was unreachable at the last attempt: it may be back (raises StoreError if not)
        if self._client is None:
            raise StoreError("the memory store is not open")
        return self._client

    def _ensure_collection(self, client: MilvusClient) -> None:
        if client.has_collection(self.collection):
            desc = client.describe_collection(self.collection)
            for f in desc["fields"]:
                if f["name"] == "dense":
                    existing = int(f["params"]["dim"])
                    if existing != self.dimension:
                        raise DimensionMismatch(
                            f"collection {self.collection!r} at {self.uri} stores {existing}-dimensional "
                            f"vectors but the embedder produces {self.dimension}-dimensional ones; use "
                            "the embedder it was built with, or another MEMORY_COLLECTION / MILVUS_URI"
                        )
            client.load_collection(self.collection)
            # MEMORY_INDEX_TYPE applies when a collection is created: an existing one keeps its index,
            # and its search parameters (and what stats report) must be the index's, not the setting's.
            actual = (client.describe_index(self.collection, "dense") or {}).get("index_type")
            if actual and actual != self.index_type:
                log.info("collection %r has a %s index (MEMORY_INDEX_TYPE=%s applies to new collections)",
                         self.collection, actual, self.index_type)
                self.index_type = str(actual)
            return
        create_collection(client, self.collection, self.dimension, self.index_type)

    def _buckets(self, client: MilvusClient) -> tuple[str, int] | None:
        try:
            return lite_partition_buckets(set(client.list_partitions(self.collection)))
        except MilvusException:
            return None

    # -- writes ----------------------------------------------------------------------------

    def insert(self, records: Sequence[MemoryRecord], vectors: Sequence[Sequence[float]]) -> None:
        """Insert records with their dense vectors. The call returns once Milvus acknowledged it."""
        self._write("insert", records, vectors)

    def upsert(self, records: Sequence[MemoryRecord], vectors: Sequence[Sequence[float]]) -> None:
        """Replace the memories with these records' ids (or insert them), each in one Milvus operation."""
        self._write("upsert", records, vectors)

    def _write(self, method: str, records: Sequence[MemoryRecord], vectors: Sequence[Sequence[float]]) -> None:
        rows = []
        for record, vector in zip(records, vectors, strict=True):
            row: dict[str, Any] = {name: getattr(record, name) for name in FIELDS}
            row["dense"] = list(vector)
            rows.append(row)
        if rows:
            self._call(getattr(self.client, method), self.collection, rows)
            if self._lite:
                # Milvus Lite searches unflushed rows without an index, in Python, at ~50 us a row (a
                # 400-row memtable costs ~25 ms per recall; it holds up to 128 MB). A flush (~20 ms)
                # moves them into an indexed segment; Lite compacts the small segments in the background.
                self._call(self.client.flush, self.collection)

    def delete(self, flt: MemoryFilter) -> int:
        """Delete every memory the filter matches; return how many there were."""
        ids = [r["id"] for r in self._iterate(flt.expression(), ["id"])]
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            self._call(self.client.delete, self.collection,
                       filter=MemoryFilter(communities=flt.communities, ids=chunk).expression())
        return len(ids)

    # -- reads -----------------------------------------------------------------------------

    def existing_ids(self, communities: Sequence[str], ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        # By primary key alone, then the community in Python: an `id in [...]` query is a key lookup
        # (~1 ms), while adding the community clause makes Milvus Lite scan (~30 ms at 2k rows).
        rows = self._call(self.client.query, self.collection, filter=f"id in {quote_list(ids)}",
                          output_fields=["id", "community"])
        wanted = set(communities)
        return {r["id"] for r in rows if r["community"] in wanted}

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
        return [_record(r) for r in rows]

    def stamps(self, flt: MemoryFilter, limit: int) -> list[tuple[str, int]]:
        """(id, created_at) of at most `limit` memories the filter matches, in no particular order:
        two small fields, so that reading many costs little (recent.newest reads these)."""
        rows = self._call(self.client.query, self.collection, filter=flt.expression(),
                          output_fields=["id", "created_at"], limit=limit,
                          partition_names=self._partitions(flt.communities))
        return [(str(r["id"]), int(r["created_at"])) for r in rows]

    def get_with_vectors(self, flt: MemoryFilter, limit: int = 1000) -> list[tuple[MemoryRecord, list[float]]]:
        """Like `get`, with each memory's dense vector."""
        rows = self._call(self.client.query, self.collection, filter=flt.expression(), output_fields=[*FIELDS, "dense"],
                          limit=limit, partition_names=self._partitions(flt.communities))
        return [(_record(r), [float(x) for x in r["dense"]]) for r in rows]

    def count(self, flt: MemoryFilter) -> int:
        rows = self._call(self.client.query, self.collection, filter=flt.expression(),
                          output_fields=["count(*)"], partition_names=self._partitions(flt.communities))
        return int(rows[0]["count(*)"]) if rows else 0

    def health(self) -> dict[str, Any]:
        """A cheap look at the collection (no scan): rows, load state, dense index state.
        Raises StoreError when Milvus does not answer."""
        rows = self._call(self.client.get_collection_stats, self.collection)
        load = self._call(self.client.get_load_state, self.collection)
        index = self._call(self.client.describe_index, self.collection, "dense") or {}
        return {"rows": int(rows.get("row_count", 0)), "load_state": str(load.get("state", "")).split(".")[-1],
                "index": {"type": index.get("index_type", self.index_type), "state": index.get("state", "unknown"),
                          "pending_rows": index.get("pending_index_rows", 0)}}

    def group_counts(self) -> dict[tuple[str, str], int]:
        """Number of memories per (community, kind), over the whole collection."""
        counts: dict[tuple[str, str], int] = {}
        seen: set[str] = set()
        for row in self._iterate("", ["id", "community", "kind"]):
            if row["id"] in seen:  # a row Milvus Lite replayed twice (see `_distinct`)
                continue
            seen.add(row["id"])
            key = (row["community"], row["kind"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    def search(
        self,
        flt: MemoryFilter,
        k: int,
        mode: SearchMode,
        *,
        vector: Sequence[float] | None = None,
        text: str | None = None,
    ) -> list[tuple[MemoryRecord, float]]:
        """The k best memories for the query, best first, with their scores.

        `semantic` needs `vector`, `keyword` needs `text`, `hybrid` needs both.
        """
        expr = flt.expression()
        partitions = self._partitions(flt.communities)
        if mode == "semantic":
            assert vector is not None
            result = self._call(self.client.search, self.collection, data=[list(vector)], anns_field="dense",
                                filter=expr, limit=k, output_fields=FIELDS,
                                search_params=search_params(self.index_type, k), partition_names=partitions)
        elif mode == "keyword":
            assert text is not None
            result = self._call(self.client.search, self.collection, data=[text], anns_field="sparse",
                                filter=expr, limit=k, output_fields=FIELDS,
                                search_params={"metric_type": "BM25", "params": {}}, partition_names=partitions)
        else:
            assert vector is not None and text is not None
            depth = max(k, self.fusion.depth)
            requests = [
                AnnSearchRequest([list(vector)], "dense", search_params(self.index_type, depth), depth, expr=expr),
                AnnSearchRequest([text], "sparse", {"metric_type": "BM25", "params": {}}, depth, expr=expr),
            ]
            ranker = (RRFRanker(self.fusion.rrf_k) if self.fusion.ranker == "rrf"
                      else WeightedRanker(self.fusion.dense_weight, self.fusion.keyword_weight))
            result = self._call(self.client.hybrid_search, self.collection, requests, ranker, limit=k,
                                output_fields=FIELDS, partition_names=partitions)
        hits = distinct(result[0] if result else [])
        # Milvus Lite reports BM25 as a negated distance, a Milvus server as a positive score.
        convert = abs if mode == "keyword" else float
        return [(_record(h["entity"]), convert(float(h["distance"]))) for h in hits]

    # -- helpers ---------------------------------------------------------------------------

    def _partitions(self, communities: Sequence[str] | None) -> list[str] | None:
        """On Milvus Lite, the partition-key buckets that can hold `communities` (None elsewhere,
        and for a search over every community).

        A Milvus server prunes partition-key buckets from the filter by itself; Milvus Lite does
        not, and scans every row of every bucket in Python (~2 us a row: ~200 ms per search at 100k
        memories). Naming the buckets restricts the scan to the communities searched.
        """
        if self._lite_buckets is None or communities is None:
            return None
        prefix, n = self._lite_buckets
        return sorted({f"{prefix}{lite_bucket(c, n)}" for c in communities})

    def _iterate(self, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        iterator = self._call(self.client.query_iterator, self.collection, batch_size=1000, filter=expr,
                              output_fields=fields)
        try:
            while True:
                batch = self._call(iterator.next)
                if not batch:
                    break
                yield from batch
        finally:
            iterator.close()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a client call, bounded by `timeout`; on a lost connection, reconnect once and retry
        it. Raises StoreError."""
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
            try:
                broken.close()
            except (MilvusException, grpc.RpcError):  # already broken: that is why we reconnect
                pass
        self.open()
