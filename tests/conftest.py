"""Shared fixtures: real Milvus Lite in a temp dir, the real embedder, the real MCP server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import CallToolResult, TextContent

from mcp_memory_server.config import Settings
from mcp_memory_server.runtime import Runtime
from mcp_memory_server.server import build_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on a fresh Milvus Lite database; no .env or environment leaks in."""
    for name in ("MILVUS_URI", "MEMORY_HUB_URL", "MEMORY_HUB_TOKEN", "EMBEDDING_PROVIDER", "MEMORY_COLLECTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return Settings(milvus_uri=str(tmp_path / "memory.db"))


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = Runtime(settings)
    async with rt.running(own=True):
        await rt.wait_ready()
        yield rt


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[ClientSession]:
    """An MCP client session connected in memory to the real server."""
    async with create_connected_server_and_client_session(build_server(runtime)) as session:
        yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured result."""
    result = await session.call_tool(tool, arguments)
    assert not result.isError, error_text(result)
    assert result.structuredContent is not None
    return result.structuredContent


async def call_error(session: ClientSession, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail with a tool error; return the message."""
    result = await session.call_tool(tool, arguments)
    assert result.isError, f"{tool} succeeded unexpectedly: {result.structuredContent}"
    return error_text(result)


def error_text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@pytest.fixture(scope="session")
def repo_root() -> Iterator[Path]:
    yield Path(__file__).resolve().parents[1]
