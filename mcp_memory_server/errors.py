"""Errors a caller can act on. Raised inside a tool, each becomes an MCP tool error (`isError`)
whose message says what to change, and whose `_meta` names the class (`ERROR_META_KEY`), so that a
hub client re-raises the same class on the other side (`from_wire`).

    MemoryServerError
    ├── InvalidInput          bad argument: empty/oversized content, bad community name, bad k, ...
    │   ├── UnknownCommunity  a named community holds no memories yet
    │   └── UnknownMemory     no memory with that id in the communities the caller may read (or it expired)
    ├── Forbidden             the caller's token does not grant that community
    ├── RateLimited           too many requests or open sessions for this token; retry after the given seconds
    ├── StoreError            Milvus cannot be opened or reached, or its collection does not fit
    │   ├── DimensionMismatch the collection's vector dimension differs from the embedder's
    │   ├── StoreLocked       the Milvus Lite database is open in another process
    │   └── StoreUnavailable  Milvus did not answer in time or cannot be reached: retry later
    ├── EmbeddingError        the embedding model or API failed
    ├── HubUnavailable        a stdio server or an agent cannot reach the hub it was told to join
    ├── HubError              the hub refused a call with an error this version does not know
    └── ConfigError           a setting or the token file (MEMORY_AUTH_FILE / MEMORY_AUTH_TOKENS) is invalid
"""

from __future__ import annotations

from typing import Any


class MemoryServerError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidInput(MemoryServerError, ValueError):
    """An argument is outside what the server accepts; the message names it and the limit."""


class UnknownCommunity(InvalidInput):
    """A call named a community that holds no memories yet."""


class UnknownMemory(InvalidInput):
    """A call named a memory id that the caller's communities do not hold (never stored, forgotten,
    replaced or expired)."""


class Forbidden(MemoryServerError):
    """The caller is not granted the community it named."""


class RateLimited(MemoryServerError):
    """The caller's token is over its rate limit. Retryable after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(MemoryServerError):
    """Milvus could not be opened or reached, or the collection does not fit this server."""


class DimensionMismatch(StoreError):
    """The existing collection's vector dimension differs from the embedder's."""


class StoreLocked(StoreError):
    """The Milvus Lite database is open in another process (only one process may open it)."""


class StoreUnavailable(StoreError):
    """Milvus did not answer within MILVUS_TIMEOUT, or cannot be reached; the call may succeed later."""


class EmbeddingError(MemoryServerError):
    """The embedding model could not be loaded or the embedding API failed."""


class HubUnavailable(MemoryServerError):
    """A stdio server or an agent was told to join a hub that does not answer."""


class HubError(MemoryServerError):
    """The hub refused a call with an error class this side does not know; the message is the hub's."""


class ConfigError(MemoryServerError):
    """A setting, or the token file, is invalid; the message names the source and the fix."""


# -- across the hub ------------------------------------------------------------------------------

#: Key of a tool error's `_meta` that names the error: {"type": "Forbidden", "retry_after": 1.5}.
ERROR_META_KEY = "mcp-memory-server/error"

_CLASSES: dict[str, type[MemoryServerError]] = {
    cls.__name__: cls for cls in (InvalidInput, UnknownCommunity, UnknownMemory, Forbidden, RateLimited, StoreError,
                                  DimensionMismatch, StoreLocked, StoreUnavailable, EmbeddingError, HubUnavailable,
                                  HubError, ConfigError)
}


def to_wire(error: MemoryServerError) -> dict[str, Any]:
    """What a tool error carries in `_meta` so that the other side can rebuild `error`."""
    wire: dict[str, Any] = {"type": type(error).__name__}
    if isinstance(error, RateLimited):
        wire["retry_after"] = error.retry_after
    return wire


def from_wire(wire: Any, message: str) -> MemoryServerError:
    """The error a tool error's `_meta` describes, with the hub's message; HubError when the class
    is missing or unknown (a newer hub, or another server)."""
    name = wire.get("type") if isinstance(wire, dict) else None
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    if cls is RateLimited:
        try:
            return RateLimited(message, retry_after=float(wire["retry_after"]))
        except (KeyError, TypeError, ValueError):
            return RateLimited(message, retry_after=1.0)
    return (cls or HubError)(message)
