"""One Milvus connection and one collection: open it (creating or migrating the collection),
close it, and make bounded calls that reconnect once when a server's connection breaks.

`store.MemoryStore` builds the memory's reads and writes on it. Every method is blocking; callers
run them in a worker thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .config import SERVER_SCHEMES
from .errors import DimensionMismatch, StoreError, StoreLocked, StoreUnavailable
from .lite import LiteDatabase, is_locked_elsewhere, lite_bucket, lite_partition_buckets
from .milvus import (
    MilvusClient,
    MilvusException,
    connection_lost,
    create_collection,
    grpc,
    message,
    schema_version,
    timed_out,
)

log = logging.getLogger(__name__)
logging.getLogger("pymilvus").setLevel(logging.ERROR)  # it logs every failed call it then raises


class MilvusCollection:
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

    # -- calls -----------------------------------------------------------------------------

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
