"""Milvus Lite in this process, without a listening port, and how the store copes with its quirks.

pymilvus opens a `.db` path by starting Lite's gRPC server on a loopback TCP port and dialling it:
every call pays a protobuf round trip, and any local user could connect to that port, with no
token, and read or delete every community. `open_lite` instead opens the database itself (as
Lite's own server manager does: same files, same LOCK) and hands pymilvus a `grpc.Channel` whose
calls run Lite's servicer in the calling thread. pymilvus' `MilvusClient` takes a ready channel
(`channel=`, passed through to its gRPC handler), so the store keeps one code path for Lite and a
Milvus server. Nothing listens; a call costs ~0.05 ms instead of ~0.6 ms (measured, issue 10).

A search, the one call a recall waits for, goes one step further: `LiteDatabase.search` asks the
engine itself and returns the hits as pymilvus would have decoded them, skipping the protobuf that
the servicer builds from them and pymilvus parses back (per hit and field, in Python: ~60% of a
search at 1k memories). It is used only on the Lite code it was checked against (`search_refused`),
and `tests/test_lite_search.py` compares it with the pymilvus path field by field.

Only `store.py` and `collection.py` use this module.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import itertools
import json
import os
import threading
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import grpc
import numpy as np

_SERVICE = "/milvus.proto.milvus.MilvusService/"
_connections = itertools.count(1)


class _Finished(grpc.Call, grpc.Future):  # type: ignore[misc]
    """A finished in-process call, as a grpc Call and Future."""

    def __init__(self, code: grpc.StatusCode, details: str, response: Any = None) -> None:
        self._code, self._details, self._response = code, details, response

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def result(self, timeout: float | None = None) -> Any:
        return self._response

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return None

    def traceback(self, timeout: float | None = None) -> None:
        return None

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def cancel(self) -> bool:
        return False

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def add_callback(self, callback: Any) -> bool:
        return False

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()


class DirectRpcError(grpc.RpcError, _Finished):  # type: ignore[misc]
    """A failed in-process call, shaped like grpc's own error (an RpcError that is also a finished
    Call and Future whose result() raises it): grpc's interceptors and pymilvus rely on that."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        grpc.RpcError.__init__(self, details)
        _Finished.__init__(self, code, details)

    def __str__(self) -> str:
        return f"<DirectRpcError: status = {self._code}, details = {self._details!r}>"

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self


class _Context:
    """What Lite's servicer uses of grpc.ServicerContext."""

    def __init__(self, metadata: Any) -> None:
        self._metadata = tuple(metadata or ())
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None

    def invocation_metadata(self) -> tuple[Any, ...]:
        return self._metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise DirectRpcError(code, details)

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> None:
        return None

    def peer(self) -> str:
        return "in-process"


class _Unary(grpc.UnaryUnaryMultiCallable):  # type: ignore[misc]
    def __init__(self, method: str, handler: Callable[[Any, _Context], Any] | None) -> None:
        self._method, self._handler = method, handler

    def _invoke(self, request: Any, metadata: Any) -> Any:
        if self._handler is None:
            raise DirectRpcError(grpc.StatusCode.UNIMPLEMENTED, f"{self._method} is not served in process")
        context = _Context(metadata)
        try:
            response = self._handler(request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:  # what a gRPC server answers for an exception in its handler
            code = context.code if context.code not in (None, grpc.StatusCode.OK) else grpc.StatusCode.UNKNOWN
            raise DirectRpcError(code, context.details or f"Exception calling application: {exc}") from exc
        if context.code not in (None, grpc.StatusCode.OK):
            raise DirectRpcError(context.code, context.details or "")
        return response

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
                 wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        return self._invoke(request, metadata)

    def with_call(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
                  wait_for_ready: bool | None = None, compression: Any = None) -> tuple[Any, Any]:
        response = self._invoke(request, metadata)
        return response, _Finished(grpc.StatusCode.OK, "", response)

    def future(self, request: Any, timeout: float | None = None, metadata: Any = None, credentials: Any = None,
               wait_for_ready: bool | None = None, compression: Any = None) -> Any:
        try:
            return _Finished(grpc.StatusCode.OK, "", self._invoke(request, metadata))
        except DirectRpcError as exc:
            return exc


class DirectChannel(grpc.Channel):  # type: ignore[misc]
    """A grpc.Channel whose unary calls run Lite's servicer in the calling thread."""

    def __init__(self, servicer: Any) -> None:
        self._servicer = servicer

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                    _registered_method: bool = False) -> _Unary:
        handler = getattr(self._servicer, method[len(_SERVICE):], None) if method.startswith(_SERVICE) else None
        return _Unary(method, handler)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> _Unary:
        return _Unary(method, None)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> _Unary:
        return _Unary(method, None)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> _Unary:
        return _Unary(method, None)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        return None  # always ready: nothing to watch

    def unsubscribe(self, callback: Any) -> None:
        return None

    def close(self) -> None:
        return None


class LiteDatabase:
    """A Milvus Lite database opened in this process: `client_options` make a MilvusClient use it."""

    def __init__(self, path: str) -> None:
        from milvus_lite.adapter.grpc.servicer import MilvusServicer
        from milvus_lite.db import MilvusLite

        self.path = os.path.abspath(os.path.expanduser(path))
        self._db = MilvusLite(self.path)  # raises DataDirLockedError when another process holds it
        try:
            servicer = MilvusServicer(self._db)
        except Exception:
            self._db.close()
            raise
        # The unix: URI is never dialled (the channel is given); it names the connection, which
        # pymilvus shares by address: each open database gets its own.
        self.uri = f"unix:/in-process/milvus-lite/{os.getpid()}/{next(_connections)}"
        self.client_options: dict[str, Any] = {"channel": DirectChannel(servicer), "dedicated": True}

    @property
    def engine(self) -> Any:
        """Lite's own database object (`milvus_lite.db.MilvusLite`)."""
        return self._db

    def search(self, collection: str, data: Any, anns_field: str, *, limit: int, expr: str,
               output_fields: Sequence[str], search_params: dict[str, Any],
               partition_names: Sequence[str] | None, raw: Collection[str] = ()) -> list[dict[str, Any]]:
        """The hits of one query, as pymilvus' `MilvusClient.search` returns them through Lite's
        servicer ({"id", "distance", "entity"}, vectors as lists and dicts, JSON parsed, distances
        rounded to float32), from Lite's engine directly: what the servicer's `Search` does around
        `Collection.search` for a plain search, without the protobuf the servicer encodes and pymilvus
        decodes (~3 ms of the ~5 ms of a hybrid recall's two searches at 1k memories, issue 10).
        Only while `search_refused()` is None. Raises pymilvus' MilvusException, as the client would.
        The fields named in `raw` are left undecoded, for a caller that reads few of them: a dense
        vector as a read-only float32 array (a view of the segment's column, `vector_views`; a row
        still in the memtable: Lite's list), a sparse one as its bytes (which `_sparse` decodes),
        JSON as its text."""
        from milvus_lite.adapter.grpc.errors import to_status_kwargs
        from pymilvus import MilvusException

        if "*" in output_fields:
            raise ValueError("LiteDatabase.search takes the output fields by name")
        # pymilvus sends a query's values as float32, a sparse one in index order: the engine must add
        # up the same numbers in the same order (equal scores keep their order then).
        if isinstance(data, dict):
            terms = sorted((int(k), v) for k, v in data.items())
            values = np.asarray([v for _, v in terms], dtype=np.float32).tolist()
            data = {k: v for (k, _), v in zip(terms, values, strict=True)}
        else:
            data = np.asarray(data, dtype=np.float32).tolist()
        try:
            col = self._db.get_collection(collection)
            decode = _decoders(col)
            views = any(decode.get(name) is _float_list for name in raw)
            with vector_views() if views else nullcontext():
                [hits] = col.search(
                    query_vectors=[data], top_k=limit,
                    metric_type=col.resolve_search_metric(anns_field, search_params.get("metric_type")),
                    partition_names=list(partition_names or ()) or None, expr=expr or None,
                    output_fields=list(output_fields), anns_field=anns_field,
                    search_params=search_params.get("params") or {})
        except Exception as exc:  # what the servicer answers, and pymilvus raises
            status = to_status_kwargs(exc)
            raise MilvusException(code=status["code"], message=status["reason"]) from exc
        pk = col._pk_name
        with_pk = pk in output_fields
        decoded = [(name, decode[name]) for name in decode.keys() - set(raw) if name in output_fields]
        distances = np.asarray([hit["distance"] for hit in hits], dtype=np.float32).tolist()
        out = []
        for hit, distance in zip(hits, distances, strict=True):
            entity = dict(hit["entity"])  # a copy: a row still in the memtable may be Lite's own dict
            for name, decoder in decoded:
                if name in entity:
                    entity[name] = decoder(entity[name])
            if with_pk:
                entity[pk] = hit["id"]
            out.append({"id": hit["id"], "distance": distance, "entity": entity})
        return out

    def close(self) -> None:
        self._db.close()


def _float_list(value: Any) -> list[float]:
    return [float(x) for x in value]


_views = threading.local()


@contextmanager
def vector_views() -> Iterator[None]:
    """Within (this thread): the float vectors a search on Milvus Lite returns from its segments are
    read-only float32 arrays, views of the segment's column, instead of lists of floats (`lite_masks`
    reads them so: 384 Python floats a hit cost ~5 µs to make, and a recall's keyword search returns
    20 hits with their dense vectors)."""
    before = getattr(_views, "on", False)
    _views.on = True
    try:
        yield
    finally:
        _views.on = before


def vectors_as_views() -> bool:
    """Whether this thread is within `vector_views`."""
    return bool(getattr(_views, "on", False))


def _sparse(value: Any) -> dict[int, float]:
    if isinstance(value, dict):
        return {int(k): float(v) for k, v in value.items()}
    from milvus_lite.analyzer.sparse import bytes_to_sparse

    return bytes_to_sparse(value)  # type: ignore[no-any-return]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


Decoder = Callable[[Any], Any]
_DECODERS: dict[str, Decoder] = {"FLOAT_VECTOR": _float_list, "SPARSE_FLOAT_VECTOR": _sparse, "JSON": _json}
_decoded: weakref.WeakKeyDictionary[Any, dict[str, Decoder]] = weakref.WeakKeyDictionary()


def _decoders(collection: Any) -> dict[str, Decoder]:
    """For each field of the collection that pymilvus returns decoded (vectors, JSON), how."""
    found = _decoded.get(collection)
    if found is None:
        found = {f.name: _DECODERS[f.dtype.name] for f in collection.schema.fields if f.dtype.name in _DECODERS}
        _decoded[collection] = found
    return found


# sha256 (first 16 hex digits) of the source of the servicer's Search and the engine's search as in
# milvus-lite 3.2.2: `LiteDatabase.search` does what the first does around the second. Another
# version: re-read both, re-run tests/test_lite_search.py, add its values.
SEARCH_CHECKED = {"MilvusServicer.Search": {"16559dfa3cebce6f"}, "Collection.search": {"3c32a0a2928440cf"}}


def _search_code() -> dict[str, Any]:
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from milvus_lite.engine.collection import Collection

    return {"MilvusServicer.Search": MilvusServicer.Search, "Collection.search": Collection.search}


def _search_refusal() -> str | None:
    return unchecked_code(_search_code, SEARCH_CHECKED)


def is_locked_elsewhere(exc: BaseException) -> bool:
    """Whether opening failed because another process holds the database."""
    from milvus_lite.exceptions import DataDirLockedError

    return isinstance(exc, DataDirLockedError)


@functools.lru_cache(maxsize=4096)  # a hash per search otherwise
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


def source_fingerprint(fn: Any) -> str:
    """sha256 (first 16 hex digits) of a function's source, beneath any wrapper (`__wrapped__`): how
    lite_scope and lite_masks recognise the Milvus Lite code they were checked against."""
    return hashlib.sha256(inspect.getsource(inspect.unwrap(fn)).encode()).hexdigest()[:16]


def unchecked_code(code: Callable[[], dict[str, Any]], checked: dict[str, set[str]]) -> str | None:
    """Why the Milvus Lite functions `code()` names (name -> function) are not the code a module was
    checked against (`checked`: name -> the fingerprints known good), or None when each one is: how
    lite_scope, lite_masks and `LiteDatabase.search` decide whether they may be used."""
    try:
        import milvus_lite

        seen = {name: source_fingerprint(fn) for name, fn in code().items()}
    except (ImportError, AttributeError, OSError, TypeError) as exc:
        return f"Milvus Lite's code cannot be read ({exc})"
    for name, value in seen.items():
        if value not in checked[name]:
            return (f"milvus-lite {getattr(milvus_lite, '__version__', '?')}: {name} is not the code this was "
                    f"checked against ({value})")
    return None


class CheckedOnce:
    """A refusal check that reads Lite's source (a few ms), made at the first call in the process
    and remembered: `check()` returns why not, or None."""

    def __init__(self, check: Callable[[], str | None]) -> None:
        self._check = check
        self._lock = threading.Lock()
        self._result: str | None = None
        self._done = False

    def __call__(self) -> str | None:
        with self._lock:
            if not self._done:
                self._result, self._done = self._check(), True
            return self._result


search_refused = CheckedOnce(_search_refusal)  # `_search_refusal()`, once per process
