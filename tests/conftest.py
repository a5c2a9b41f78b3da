"""Shared fixtures: real Milvus Lite in a temp dir, the real embedder, the real MCP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# hypothesis is imported before any runtime freezes the heap (memory.freeze_heap): on its first import
# it registers trio's random generator and looks for the generator's referrers, which gc no longer
# sees once they are frozen (a HypothesisWarning, an error under this project's pytest settings).
import httpx
import hypothesis  # noqa: F401
import pytest
import uvicorn
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import CallToolResult, TextContent

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.app import hub_app
from mcp_memory_server.hub.launch import free_port
from mcp_memory_server.memory import Runtime
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


@dataclass
class Hub:
    """A running hub: `url` is its streamable HTTP endpoint, `base` its root."""

    base: str
    settings: Settings
    runtime: Runtime

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def sse_url(self) -> str:
        return f"{self.base}/sse"


@contextmanager
def running_hub(settings: Settings, middleware: Sequence[Any] = (), timeout: float = 60.0) -> Iterator[Hub]:
    """A hub (uvicorn + hub_app) on a free loopback port, in a thread with its own event loop.
    Yields once /health answers ok; stops it (and closes the store) on exit."""
    runtime = Runtime(settings)
    app = hub_app(build_server(runtime), runtime, middleware=middleware)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="test-hub", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test hub did not start")
            time.sleep(0.02)
        base = f"http://127.0.0.1:{server.config.port}"
        while httpx.get(f"{base}/health", timeout=timeout).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the test hub never became healthy")
            time.sleep(0.05)
        yield Hub(base=base, settings=settings, runtime=runtime)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    with running_hub(settings) as running:
        yield running


@pytest.fixture
def hub_url(hub: Hub) -> str:
    """Streamable HTTP URL of a hub on a free port with a fresh Lite database."""
    return hub.url
