"""pymilvus, imported safely, and what the store needs to know about it: the collection's schema,
index and search parameters, and what an error from Milvus means (timed out, connection lost).

Only `store.py`, `collection.py` and `migrate.py` import this module.
"""

from __future__ import annotations

import os
from typing import Any

from .config import SERVER_SCHEMES
from .models import (
    MAX_AGENT_ID_BYTES,
    MAX_COMMUNITY_BYTES,
    MAX_CONTENT_BYTES,
    MAX_KIND_BYTES,
    MAX_TAG_BYTES,
    MAX_TAGS,
)

# pymilvus parses $MILVUS_URI when it is imported and raises on a Milvus Lite path. We read
# MILVUS_URI ourselves (config.py), so a local path is hidden from pymilvus during its import.
_lite_uri = os.environ.get("MILVUS_URI", "")
if _lite_uri and not _lite_uri.startswith(SERVER_SCHEMES):
    del os.environ["MILVUS_URI"]
try:
    import grpc
    from pymilvus import DataType, MilvusClient
    from pymilvus.exceptions import ConnectError, MilvusException, MilvusUnavailableException
finally:
    if _lite_uri:
        os.environ["MILVUS_URI"] = _lite_uri

__all__ = ["FIELDS", "SCHEMA_VERSION", "SPARSE_SEARCH", "MilvusClient", "MilvusException", "connection_lost",
           "create_collection", "grpc", "index_params", "message", "schema_version", "search_params", "timed_out"]


SCHEMA_VERSION = 2
# The fields of a memory row, as the store reads and writes them (vectors apart).
FIELDS = ["id", "content", "community", "kind", "tags", "agent_id", "created_at", "content_hash", "metadata",
          "thread", "seq", "expires_at"]


def create_collection(client: MilvusClient, name: str, dimension: int, index_type: str) -> None:
    """Create the memory collection (schema version 2): `dense` holds the memory's vector (with its
    thread context) searched by inner product; `sparse` its keyword vector (BM25 document weights
    computed by keywords.py), searched by inner product; `community` is the partition key. Strong
    consistency: an acknowledged remember is visible to the very next recall."""
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False,
                                  description=f"mcp-memory-server schema {SCHEMA_VERSION}")
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("content", DataType.VARCHAR, max_length=MAX_CONTENT_BYTES)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("kw_len", DataType.FLOAT)
    schema.add_field("community", DataType.VARCHAR, max_length=MAX_COMMUNITY_BYTES, is_partition_key=True)
    schema.add_field("kind", DataType.VARCHAR, max_length=MAX_KIND_BYTES)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_TAGS,
                     max_length=MAX_TAG_BYTES)
    schema.add_field("agent_id", DataType.VARCHAR, max_length=MAX_AGENT_ID_BYTES)
    schema.add_field("thread", DataType.VARCHAR, max_length=MAX_TAG_BYTES)
    schema.add_field("seq", DataType.INT64)
    schema.add_field("created_at", DataType.INT64)
    schema.add_field("expires_at", DataType.INT64)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("metadata", DataType.JSON)
    index = client.prepare_index_params()
    index.add_index("dense", index_type=index_type, metric_type="IP", params=index_params(index_type))
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
    client.load_collection(name)


def schema_version(description: dict[str, Any]) -> int:
    """1 for a collection of the first schema (Milvus' BM25 function over `content`, COSINE), 2 now."""
    names = {f["name"] for f in description.get("fields", [])}
    return 2 if {"thread", "seq", "kw_len", "expires_at"} <= names else 1


def index_params(index_type: str) -> dict[str, Any]:
    if index_type == "HNSW":
        return {"M": 16, "efConstruction": 200}
    if index_type in ("IVF_FLAT", "IVF_SQ8"):
        return {"nlist": 128}
    return {}


def search_params(index_type: str, k: int) -> dict[str, Any]:
    if index_type == "HNSW":
        return {"metric_type": "IP", "params": {"ef": max(64, 2 * k)}}
    if index_type in ("IVF_FLAT", "IVF_SQ8"):
        return {"metric_type": "IP", "params": {"nprobe": 16}}
    return {"metric_type": "IP", "params": {}}


SPARSE_SEARCH = {"metric_type": "IP", "params": {}}


_CONNECTION_LOST = ("should create connection first", "fail connecting", "closed channel", "unavailable",
                    "connection refused", "failed to connect")


def connection_lost(exc: Exception) -> bool:
    """Whether the error means the connection is gone (rather than a bad request)."""
    if isinstance(exc, grpc.RpcError):
        return bool(_grpc_code(exc) == grpc.StatusCode.UNAVAILABLE)
    return isinstance(exc, ConnectError | MilvusUnavailableException) or any(
        marker in message(exc).lower() for marker in _CONNECTION_LOST)


def timed_out(exc: Exception) -> bool:
    """Whether the call ran out of its time (pymilvus' retries included)."""
    if isinstance(exc, grpc.RpcError):
        return bool(_grpc_code(exc) == grpc.StatusCode.DEADLINE_EXCEEDED)
    return "retry timeout" in message(exc).lower() or "deadline exceeded" in message(exc).lower()


def _grpc_code(exc: grpc.RpcError) -> Any:
    code = getattr(exc, "code", None)
    return code() if callable(code) else None


def message(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "details", None)):
        return str(exc.details())
    return str(getattr(exc, "message", "") or exc)
