"""Errors a caller can act on. Raised inside a tool, each becomes an MCP tool error (`isError`)
whose message says what to change.

    MemoryServerError
    ├── InvalidInput          bad argument: empty/oversized content, bad community name, bad k, ...
    │   └── UnknownCommunity  a named community holds no memories yet
    ├── Forbidden             the caller's token does not grant that community
    ├── RateLimited           too many calls for this token; retry after the given seconds
    ├── StoreError            Milvus cannot be opened or reached, or its collection does not fit
    │   └── DimensionMismatch the collection's vector dimension differs from the embedder's
    ├── EmbeddingError        the embedding model or API failed
    ├── HubUnavailable        a stdio server cannot reach the hub it was told to join
    └── ConfigError           a setting or the token file (MEMORY_AUTH_FILE / MEMORY_AUTH_TOKENS) is invalid
"""

from __future__ import annotations


class MemoryServerError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidInput(MemoryServerError, ValueError):
    """An argument is outside what the server accepts; the message names it and the limit."""


class UnknownCommunity(InvalidInput):
    """A call named a community that holds no memories yet."""


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


class EmbeddingError(MemoryServerError):
    """The embedding model could not be loaded or the embedding API failed."""


class HubUnavailable(MemoryServerError):
    """A stdio server was told to join a hub that does not answer."""


class ConfigError(MemoryServerError):
    """A setting, or the token file, is invalid; the message names the source and the fix."""
