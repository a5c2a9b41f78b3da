"""The hub on a Milvus *server* (MILVUS_URI=http://...) that hangs, dies and comes back.

The server is Milvus Lite's gRPC server run in its own process on a loopback port: to the store it
is a Milvus server reached over the network, and unlike a real one it can be frozen (SIGSTOP),
killed (SIGKILL) and restarted on the same port and data here.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.launch import free_port
from mcp_memory_server.memory import Runtime
from mcp_memory_server.server import build_server
from tests.conftest import call, call_error
from tests.procs import milvus_server

pytestmark = pytest.mark.anyio

TIMEOUT = 3.0


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[tuple[ClientSession, Path, int, int]]:
    port = free_port()
    runtime = Runtime(Settings(milvus_uri=f"http://127.0.0.1:{port}", milvus_timeout=TIMEOUT,
                               memory_index_type="FLAT"))
    with milvus_server(tmp_path / "milvus", port) as server:
        async with runtime.running(own=True), \
                create_connected_server_and_client_session(build_server(runtime)) as client:
            await runtime.wait_ready()
            yield client, tmp_path / "milvus", server.pid, port


async def test_a_hung_or_dead_milvus_server_gives_a_prompt_tool_error_and_the_hub_recovers(
        session: tuple[ClientSession, Path, int, int]) -> None:
    client, data, pid, port = session
    note = {"content": "the staging cluster runs Milvus 2.5", "community": "ops"}
    stored = await call(client, "remember", **note)

    os.kill(pid, signal.SIGSTOP)  # frozen: connections stay open, nothing answers
    with anyio.fail_after(60):  # unbounded, pymilvus would retry for minutes
        error = await call_error(client, "recall", query="staging cluster", community="ops")
    assert f"did not answer within {TIMEOUT:g} s (MILVUS_TIMEOUT)" in error
    os.kill(pid, signal.SIGCONT)
    hits = (await call(client, "recall", query="staging cluster", community="ops"))["hits"]
    assert [h["id"] for h in hits] == [stored["id"]]

    os.kill(pid, signal.SIGKILL)  # dead: connections refused
    with anyio.fail_after(60):
        error = await call_error(client, "recall", query="staging cluster", community="ops")
    assert "unreachable" in error

    with milvus_server(data, port):  # back on the same port and data
        hits = []
        with anyio.fail_after(60):
            while not hits:
                result = await client.call_tool("recall", {"query": "staging cluster", "community": "ops"})
                if result.isError:  # the first call may still meet the old, refused connection
                    await anyio.sleep(0.5)
                    continue
                hits = (result.structuredContent or {})["hits"]
        assert [h["id"] for h in hits] == [stored["id"]]  # the acknowledged write survived the crash
        again = await call(client, "remember", content="the production cluster runs Milvus 2.6", community="ops")
        assert not again["duplicate"]
        assert len((await call(client, "recall", query="cluster Milvus", community="ops"))["hits"]) == 2
