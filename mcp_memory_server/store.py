"""The Milvus collection behind the memory: schema, partition key, filters, search.

The only module that imports pymilvus. Every method is blocking; callers run them in a worker
thread. One `MemoryStore` per process: Milvus Lite lets a single process open a database.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import SERVER_SCHEMES
from .errors import DimensionMismatch, StoreError
from .filters import MemoryFilter, quote_list

# pymilvus parses $MILVUS_URI when it is imported and raises on a Milvus Lite path. We read
# MILVUS_URI ourselves (config.py), so a local path is hidden from pymilvus during its import.
_lite_uri = os.environ.get("MILVUS_URI", "")
if _lite_uri and not _lite_uri.startswith(SERVER_SCHEMES):
    del os.environ["MILVUS_URI"]
try:
    import grpc
    from pymilvus import (
        AnnSearchRequest,
        DataType,
        Function,
        FunctionType,
        MilvusClient,
        RRFRanker,
        WeightedRanker,
    )
    from pymilvus.exceptions import ConnectError, MilvusException, MilvusUnavailableException
finally:
    if _lite_uri:
        os.environ["MILVUS_URI"] = _lite_uri

log = logging.getLogger(__name__)
# query_iterator against Milvus Lite makes pymilvus warn ("failed to get mvccTs") and Lite's in-process
# gRPC server log AllocTimestamp as unimplemented, on every call; both are harmless.
logging.getLogger("pymilvus").setLevel(logging.ERROR)
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)

SearchMode = Literal["hybrid", "semantic", "keyword"]

# Hard ceilings fixed in the schema; configurable limits must stay below them.
MAX_CONTENT_BYTES = 65_535
MAX_TAGS = 64
MAX_TAG_BYTES = 256
MAX_AGENT_ID_BYTES = 256
MAX_KIND_BYTES = 128
MAX_COMMUNITY_BYTES = 64

FIELDS = ["id", "content", "community", "kind", "tags", "agent_id", "created_at", "content_hash", "metadata"]


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

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> MemoryRecord:
        return cls(**{name: entity.get(name) for name in FIELDS})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Fusion:
    """How hybrid search fuses its dense and keyword rankings."""

    ranker: Literal["rrf", "weighted"] = "rrf"
    rrf_k: int = 60
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    depth: int = 20  # candidates each ranking contributes (at least k)


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
                    raise StoreError(
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
            self._lite_buckets = _lite_partition_buckets(client, self.collection) if is_local else None

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
                    _release_lite(self.uri)

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
            return
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("content", DataType.VARCHAR, max_length=MAX_CONTENT_BYTES, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]})
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimension)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("community", DataType.VARCHAR, max_length=MAX_COMMUNITY_BYTES, is_partition_key=True)
        schema.add_field("kind", DataType.VARCHAR, max_length=MAX_KIND_BYTES)
        schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_TAGS,
                         max_length=MAX_TAG_BYTES)
        schema.add_field("agent_id", DataType.VARCHAR, max_length=MAX_AGENT_ID_BYTES)
        schema.add_field("created_at", DataType.INT64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("metadata", DataType.JSON)
        schema.add_function(Function(name="content_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["content"], output_field_names=["sparse"]))
        index = client.prepare_index_params()
        index.add_index("dense", index_type=self.index_type, metric_type="COSINE", params=self._index_params())
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        # Strong consistency: an acknowledged remember is visible to the very next recall.
        client.create_collection(self.collection, schema=schema, index_params=index, consistency_level="Strong")
        client.load_collection(self.collection)

    def _index_params(self) -> dict[str, Any]:
        if self.index_type == "HNSW":
            return {"M": 16, "efConstruction": 200}
        if self.index_type in ("IVF_FLAT", "IVF_SQ8"):
            return {"nlist": 128}
        return {}

    def _search_params(self, k: int) -> dict[str, Any]:
        if self.index_type == "HNSW":
            return {"metric_type": "COSINE", "params": {"ef": max(64, 2 * k)}}
        if self.index_type in ("IVF_FLAT", "IVF_SQ8"):
            return {"metric_type": "COSINE", "params": {"nprobe": 16}}
        return {"metric_type": "COSINE", "params": {}}

    # -- writes ----------------------------------------------------------------------------

    def insert(self, records: Sequence[MemoryRecord], vectors: Sequence[Sequence[float]]) -> None:
        """Insert records with their dense vectors. The call returns once Milvus acknowledged it."""
        rows = []
        for record, vector in zip(records, vectors, strict=True):
            row: dict[str, Any] = {name: getattr(record, name) for name in FIELDS}
            row["dense"] = list(vector)
            rows.append(row)
        if rows:
            self._call(self.client.insert, self.collection, rows)
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
        return [MemoryRecord.from_entity(r) for r in rows]

    def get_with_vectors(self, flt: MemoryFilter, limit: int = 1000) -> list[tuple[MemoryRecord, list[float]]]:
        """Like `get`, with each memory's dense vector."""
        rows = self._call(self.client.query, self.collection, filter=flt.expression(), output_fields=[*FIELDS, "dense"],
                          limit=limit, partition_names=self._partitions(flt.communities))
        return [(MemoryRecord.from_entity(r), [float(x) for x in r["dense"]]) for r in rows]

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
                                filter=expr, limit=k, output_fields=FIELDS, search_params=self._search_params(k),
                                partition_names=partitions)
        elif mode == "keyword":
            assert text is not None
            result = self._call(self.client.search, self.collection, data=[text], anns_field="sparse",
                                filter=expr, limit=k, output_fields=FIELDS,
                                search_params={"metric_type": "BM25", "params": {}}, partition_names=partitions)
        else:
            assert vector is not None and text is not None
            depth = max(k, self.fusion.depth)
            requests = [
                AnnSearchRequest([list(vector)], "dense", self._search_params(depth), depth, expr=expr),
                AnnSearchRequest([text], "sparse", {"metric_type": "BM25", "params": {}}, depth, expr=expr),
            ]
            ranker = (RRFRanker(self.fusion.rrf_k) if self.fusion.ranker == "rrf"
                      else WeightedRanker(self.fusion.dense_weight, self.fusion.keyword_weight))
            result = self._call(self.client.hybrid_search, self.collection, requests, ranker, limit=k,
                                output_fields=FIELDS, partition_names=partitions)
        hits = _distinct(result[0] if result else [])
        # Milvus Lite reports BM25 as a negated distance, a Milvus server as a positive score.
        convert = abs if mode == "keyword" else float
        return [(MemoryRecord.from_entity(h["entity"]), convert(float(h["distance"]))) for h in hits]

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
        return sorted({f"{prefix}{_lite_bucket(c, n)}" for c in communities})

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
            if _timed_out(exc):
                raise StoreError(f"Milvus at {self.uri} did not answer within {self.timeout:g} s (MILVUS_TIMEOUT): "
                                 "it may be down or overloaded; retry later") from exc
            if not (client_call and _connection_lost(exc)):
                raise StoreError(f"Milvus call failed: {_message(exc)}") from exc
            log.warning("lost the connection to Milvus at %s (%s): reconnecting", self.uri, _message(exc))
            try:
                self._reconnect(fn.__self__)
                return getattr(self.client, fn.__name__)(*args, **kwargs)
            except (MilvusException, grpc.RpcError, StoreError) as again:
                raise StoreError(f"Milvus at {self.uri} is unreachable: {_message(again)}") from again

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


def _lite_bucket(community: str, buckets: int) -> int:
    """The bucket Milvus Lite routes a partition-key value to (milvus_lite/engine/collection.py,
    `_insert_with_partition_key`). tests/test_store_lite_pruning.py fails if Lite changes it."""
    return int(hashlib.md5(community.encode(), usedforsecurity=False).hexdigest(), 16) % buckets


def _lite_partition_buckets(client: MilvusClient, collection: str) -> tuple[str, int] | None:
    """(prefix, count) of Milvus Lite's partition-key buckets, if the collection has exactly the
    buckets this module knows how to address; otherwise None (no pruning, still correct)."""
    try:
        from milvus_lite.constants import DEFAULT_NUM_PARTITIONS, PARTITION_KEY_BUCKET_PREFIX
        names = set(client.list_partitions(collection))
    except (ImportError, MilvusException):
        return None
    expected = {f"{PARTITION_KEY_BUCKET_PREFIX}{i}" for i in range(DEFAULT_NUM_PARTITIONS)}
    if not expected <= names or len(names - expected - {"_default"}) > 0:
        return None
    return PARTITION_KEY_BUCKET_PREFIX, int(DEFAULT_NUM_PARTITIONS)


_CONNECTION_LOST = ("should create connection first", "fail connecting", "closed channel", "unavailable",
                    "connection refused", "failed to connect")


def _distinct(hits: Sequence[Any]) -> list[Any]:
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


def _connection_lost(exc: Exception) -> bool:
    """Whether the error means the connection is gone (rather than a bad request)."""
    if isinstance(exc, grpc.RpcError):
        return bool(_grpc_code(exc) == grpc.StatusCode.UNAVAILABLE)
    return isinstance(exc, ConnectError | MilvusUnavailableException) or any(
        marker in _message(exc).lower() for marker in _CONNECTION_LOST)


def _timed_out(exc: Exception) -> bool:
    """Whether the call ran out of its time (pymilvus' retries included)."""
    if isinstance(exc, grpc.RpcError):
        return bool(_grpc_code(exc) == grpc.StatusCode.DEADLINE_EXCEEDED)
    return "retry timeout" in _message(exc).lower() or "deadline exceeded" in _message(exc).lower()


def _grpc_code(exc: grpc.RpcError) -> Any:
    code = getattr(exc, "code", None)
    return code() if callable(code) else None


def _message(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "details", None)):
        return str(exc.details())
    return str(getattr(exc, "message", "") or exc)


def _release_lite(uri: str) -> None:
    """Stop Milvus Lite's in-process server for `uri`: closing the client alone leaves the database
    open (and locked) until the process exits."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(Path(uri).expanduser()))
