"""MCP client sessions against a running hub, with or without a bearer token (shared by the
auth, limits, concurrency, property and durability tests)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from starlette.middleware import Middleware

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.auth import hub_middleware
from mcp_memory_server.hub.ratelimit import RateLimiter
from mcp_memory_server.hub.tokens import Tokens, parse_grants
from mcp_memory_server.store import MemoryStore
from tests import procs
from tests.conftest import Hub, running_hub

ALPHA = "alpha-token-0123456789abcdef"
BETA = "beta-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
GRANTS: dict[str, Any] = {"tokens": {
    ALPHA: {"agent_id": "alice", "communities": ["team-alpha", "shared"]},
    BETA: {"agent_id": "bob", "communities": ["team-beta", "shared"]},
    ADMIN: {"agent_id": "admin", "communities": "*"},
}}


def auth_middleware(grants: dict[str, Any] | None = None, **options: Any) -> list[Middleware]:
    tokens = Tokens(parse_grants(grants if grants is not None else GRANTS, "test grants"))
    return hub_middleware(tokens, limiter=RateLimiter(), **options)


@contextmanager
def auth_hub(settings: Settings, grants: dict[str, Any] | None = None) -> Iterator[Hub]:
    with running_hub(settings, middleware=auth_middleware(grants)) as hub:
        yield hub


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@asynccontextmanager
async def http_session(url: str, token: str | None = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP session over streamable HTTP."""
    async with (
        httpx.AsyncClient(headers=bearer(token), timeout=httpx.Timeout(60.0)) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def sse_session(url: str, token: str | None = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP session over SSE."""
    async with sse_client(url, headers=bearer(token), timeout=30) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


@contextmanager
def hub_process(db: Path, log: Path, timeout: float = 120.0, grants: dict[str, Any] | None = None
                ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`mcp-memory-server serve --transport streamable-http` on a free port (with `grants` as
    MEMORY_AUTH_TOKENS), logging to `log`; yields (process, base URL) once /health answers ok."""
    extra = {"MEMORY_AUTH_TOKENS": json.dumps(grants)} if grants else {}
    with procs.hub_process(db, log.parent, timeout=timeout, log=log, **extra) as (base, process):
        yield process, base


def rows_per_id(db: Path, ids: list[str]) -> dict[str, int]:
    """How many rows the database holds for each id (Milvus does not enforce unique primary keys)."""
    store = MemoryStore(str(db), Settings().memory_collection, 384)
    store.open()
    try:
        counts = dict.fromkeys(ids, 0)
        for start in range(0, len(ids), 200):
            quoted = ", ".join(f'"{i}"' for i in ids[start:start + 200])
            for row in store.client.query(store.collection, filter=f"id in [{quoted}]", output_fields=["id"]):
                counts[row["id"]] += 1
        return counts
    finally:
        store.close()
