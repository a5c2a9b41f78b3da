"""Settings, read from the environment and `.env`. No I/O beyond that.

Every setting has an environment variable of the same name in upper case
(`milvus_uri` -> `MILVUS_URI`). The README lists them all with their defaults.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

COMMUNITY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_COMMUNITY = re.compile(COMMUNITY_PATTERN)
# A MILVUS_URI starting with one of these names a Milvus server; anything else is a Milvus Lite path.
SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")


def is_community_name(value: object) -> bool:
    """Whether `value` is a valid community name. A full match: `re.match` with `$` would also
    accept a trailing newline ("default\\n", a look-alike of "default")."""
    return isinstance(value, str) and _COMMUNITY.fullmatch(value) is not None


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_data_dir() -> Path:
    """Per-user data directory: `$XDG_DATA_HOME/mcp-memory-server` (default `~/.local/share/...`)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mcp-memory-server"


class Limits(BaseSettings):
    """Input limits. Anything over a limit is refused with a clear error and nothing is stored."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_MAX_", env_file=".env", extra="ignore")

    content_chars: int = Field(8_000, ge=1)
    query_chars: int = Field(2_000, ge=1)
    batch: int = Field(512, ge=1)
    tags: int = Field(16, ge=0)
    tag_chars: int = Field(64, ge=1)
    metadata_bytes: int = Field(8_192, ge=2)
    metadata_depth: int = Field(6, ge=1)
    k: int = Field(100, ge=1)
    communities: int = Field(64, ge=1)  # community names in one recall
    kinds: int = Field(16, ge=1)  # kinds named in one recall / forget
    request_bytes: int = Field(16 * 1024 * 1024, ge=1024)  # one HTTP request body to the hub
    sessions_per_token: int = Field(32, ge=1)  # MCP sessions one hub token may have open at once
    agent_id_chars: int = Field(128, ge=1)
    kind_chars: int = Field(64, ge=1)


class Fusion(BaseSettings):
    """How hybrid recall gathers candidates (`MEMORY_FUSION_*`); how it scores them is ranking.py's."""

    model_config = SettingsConfigDict(env_prefix="MEMORY_FUSION_", env_file=".env", extra="ignore", frozen=True)

    # Candidates each side (dense, keyword) contributes, at least k. Every candidate is scored with
    # both sides' exact values, so a deeper list only costs time: 20, 50 and 100 ranked LoCoMo alike.
    depth: int = Field(20, ge=1)


class Settings(BaseSettings):
    """Everything the server can be told. Defaults run fully offline on Milvus Lite."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    milvus_uri: str = Field(default_factory=lambda: str(default_data_dir() / "memory.db"))
    milvus_token: str | None = None
    # Seconds one Milvus call may take, pymilvus' retries included, before the tool fails with an error
    # (unbounded, pymilvus keeps retrying an unreachable server for minutes).
    milvus_timeout: float = Field(30.0, gt=0)
    memory_collection: str = "agent_memory"
    memory_default_community: str = "default"
    # HNSW keeps a community-filtered search at 100k memories in a few ms; FLAT is exact but scans.
    memory_index_type: Literal["HNSW", "FLAT", "IVF_FLAT", "IVF_SQ8", "AUTOINDEX"] = "HNSW"
    # With a Milvus server, other hubs write too: this hub re-reads a community's counts and keyword
    # statistics after this many seconds (tallies.py). Milvus Lite has one writer and needs none.
    memory_stats_ttl: float = Field(30.0, gt=0)
    # Seconds between two purges of expired memories by the process that owns the store (expiry.py).
    # Reads hide an expired memory at once; the purge only reclaims its row and re-indexes its thread.
    memory_expiry_interval: float = Field(60.0, gt=0)
    # Recall queries whose vectors are kept (query_cache.py): a repeated query skips the model. 0: none.
    memory_query_cache: int = Field(4096, ge=0)
    # On Milvus Lite, keyword searches read only the partition-key buckets of the communities searched
    # (lite_scope.py; applied only to the milvus-lite code it was checked against). False: stock Lite.
    memory_lite_narrow: bool = True

    embedding_provider: Literal["local", "openai"] = "local"
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_dimension: int | None = Field(None, ge=1)
    embedding_batch_size: int = Field(64, ge=1)
    # torch threads for the local model. 1 by default: on a busy host, intra-op threads spin against
    # other processes (measured on 2 shared cores: 13 ms per query with 1 thread, 400-700 ms with 2).
    embedding_threads: int = Field(1, ge=1)
    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"

    memory_hub_url: str | None = None
    memory_hub_token: str | None = None
    # Seconds a stdio server or an agent waits for the hub's answer to one call (a hub that died
    # mid-call is noticed at once; this bounds a hub that hangs).
    memory_hub_timeout: float = Field(60.0, gt=0)
    # Each OpenAgents agent's own hub token (openagents_bridge): JSON {"agent_id": "token", ...}, or
    # the path of a JSON / YAML file holding it. Agents not listed use MEMORY_HUB_TOKEN.
    memory_agent_tokens: str | None = None
    memory_host: str = "127.0.0.1"
    memory_port: int = Field(8765, ge=0, le=65535)
    # Hub auth (auth.py): a token file (JSON / YAML / TOML) and/or the same JSON inline.
    memory_auth_file: str | None = None
    memory_auth_tokens: str | None = None
    # Extra Host / Origin values the hub accepts besides loopback (DNS-rebinding protection),
    # comma-separated, e.g. "memory.example.org:*" and "https://memory.example.org".
    memory_allowed_hosts: str = ""
    memory_allowed_origins: str = ""
    # Streamable HTTP without sessions: every request stands alone, so any hub behind a load balancer
    # can answer it. Unset: on when MILVUS_URI is a Milvus server (several hubs may serve it), off on
    # Milvus Lite (one hub; sessions cost ~1-2 ms less per call and cap each token's sessions).
    memory_stateless_http: bool | None = None
    # `serve` runs its event loop on uvloop when uvloop is installed (a dependency on Linux and macOS):
    # the hub's HTTP, MCP and task plumbing costs a few tenths of a millisecond less per call (measured,
    # two hubs side by side). Off: asyncio's own loop.
    memory_uvloop: bool = True
    # More technical names for `route` (glossary.py): a file of `name|alias<TAB>definition` lines,
    # added to the shipped glossary (a name it already has is redefined).
    memory_glossary: Path | None = None

    limits: Limits = Field(default_factory=lambda: Limits())
    fusion: Fusion = Field(default_factory=lambda: Fusion())

    @field_validator("memory_default_community")
    @classmethod
    def _community_name(cls, value: str) -> str:
        if not is_community_name(value):
            raise ValueError(f"MEMORY_DEFAULT_COMMUNITY must match {COMMUNITY_PATTERN}, got {value!r}")
        return value

    @field_validator("memory_glossary")
    @classmethod
    def _glossary_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            from .glossary import read  # checked at start, so a bad file stops the server with its line

            try:
                read(value)  # the file alone: the shipped glossary is read at the first `route`
            except ConfigError as exc:
                raise ValueError(f"MEMORY_GLOSSARY: {exc}") from None
        return value

    @property
    def missing_api_key(self) -> str | None:
        """Why the OpenAI-compatible embedder will be refused before it is called, or None: the
        provider is `openai`, OPENAI_API_KEY is unset and OPENAI_BASE_URL is not a local server
        (one on this machine may need no key)."""
        if self.embedding_provider != "openai" or self.openai_api_key:
            return None
        host = (urlparse(self.openai_base_url).hostname or "").strip("[]")
        if host == "localhost" or _is_loopback_address(host):
            return None
        return (f"EMBEDDING_PROVIDER=openai but OPENAI_API_KEY is not set: {self.openai_base_url} will refuse "
                "every embedding; set OPENAI_API_KEY (or OPENAI_BASE_URL to a local server that needs none)")

    @property
    def is_lite(self) -> bool:
        """True when MILVUS_URI names a local Milvus Lite database file rather than a server."""
        return not self.milvus_uri.startswith(SERVER_SCHEMES)

    @property
    def stateless_http(self) -> bool:
        """Whether the hub serves streamable HTTP without sessions (MEMORY_STATELESS_HTTP, see above)."""
        return not self.is_lite if self.memory_stateless_http is None else self.memory_stateless_http

    @property
    def dimension(self) -> int:
        """The embedding dimension the collection is created with."""
        if self.embedding_dimension is not None:
            return self.embedding_dimension
        if self.embedding_provider == "local":
            return 384
        return 1536  # text-embedding-3-small


def load_settings() -> Settings:
    """The settings from the environment and `.env`. Raises ConfigError naming each invalid
    variable, its value and what it may be."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError("; ".join(_explain(exc.title, error) for error in exc.errors())) from None


_PREFIXES = {"Limits": "MEMORY_MAX_", "Fusion": "MEMORY_FUSION_"}


def _explain(model: str, error: Any) -> str:
    variable = _PREFIXES.get(model, "") + str(error["loc"][0]).upper() if error["loc"] else model
    given = error.get("input")
    message = str(error["msg"]).removeprefix("Value error, ").replace("Input should be", "it must be")
    if error["type"] == "literal_error":
        allowed = str(error["ctx"]["expected"]).replace("'", "")
        return f"{variable}={given} is not allowed: use one of {allowed}"
    if error["type"] == "value_error":
        return message
    return f"{variable}={given} is not allowed: {message}"
