"""Scale-out: two hubs, as separate processes, over one Milvus server, through the real MCP client.

The server is Milvus Lite's own gRPC server in its own process (tests/procs.milvus_server): to the
hubs it is a Milvus server reached over the network. It is not a Milvus cluster (see README,
"Deployment": what this does and does not prove).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from pymilvus import MilvusClient

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.launch import free_port
from mcp_memory_server.models import IndexedMemory, MemoryRecord, memory_id
from mcp_memory_server.store import MemoryStore
from tests import procs
from tests.conftest import call
from tests.hub_sessions import http_session

pytestmark = pytest.mark.anyio

# MEMORY_STATS_TTL of both hubs: another hub's writes show in stats within it. Long enough that the
# keyword recall below reads hub one's statistics from before hub two's write (its new words unknown).
TTL = 3.0


class LoadBalancer(httpx.AsyncBaseTransport):
    """Sends each request to the next live hub in turn, as a round-robin load balancer would."""

    def __init__(self, bases: Sequence[str]) -> None:
        self.ports = itertools.cycle([httpx.URL(base).port for base in bases])
        self.served: list[int | None] = []
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = next(self.ports)
        self.served.append(port)
        request.url = request.url.copy_with(port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def balanced_session(bases: Sequence[str]) -> AsyncIterator[tuple[ClientSession, LoadBalancer]]:
    balancer = LoadBalancer(bases)
    async with httpx.AsyncClient(transport=balancer, timeout=httpx.Timeout(60.0)) as http, \
            streamable_http_client(f"{bases[0]}/mcp", http_client=http) as (read, write, _), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session, balancer


def rows_per_id(uri: str, ids: list[str]) -> dict[str, int]:
    """How many rows the server holds for each id (Milvus does not enforce unique primary keys)."""
    client = MilvusClient(uri=uri)
    try:
        quoted = ", ".join(f'"{i}"' for i in ids)
        rows = client.query(Settings().memory_collection, filter=f"id in [{quoted}]", output_fields=["id"])
    finally:
        client.close()
    counts = dict.fromkeys(ids, 0)
    for row in rows:
        counts[row["id"]] += 1
    return counts


async def stats_of(session: ClientSession, community: str) -> dict[str, Any] | None:
    stats = await call(session, "stats")
    return next((c for c in stats["communities"] if c["community"] == community), None)


async def test_two_hubs_on_one_milvus_server_share_one_memory_and_each_serves_alone(tmp_path: Path) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {"MILVUS_URI": uri, "MEMORY_INDEX_TYPE": "FLAT", "MEMORY_STATS_TTL": str(TTL)}
    with procs.milvus_server(tmp_path / "milvus", port), \
            procs.hub_process(tmp_path, tmp_path, **env) as (one, first), \
            procs.hub_process(tmp_path, tmp_path, **env) as (two, _):
        assert httpx.get(f"{one}/health", timeout=30).json()["event_loop"] == "uvloop"  # `serve`'s loop
        async with http_session(f"{one}/mcp") as a, http_session(f"{two}/mcp") as b:
            with anyio.fail_after(240):
                # A write through either hub is read back through the other at once.
                x = await call(a, "remember", content="The payments API rotates its keys every 90 days.",
                               community="ops")
                found = await call(b, "recall", query="how often are payment keys rotated?", community="ops")
                assert [h["id"] for h in found["hits"]] == [x["id"]]
                # Hub one's keyword statistics of "ops", read now (its stats too), lag hub two's next
                # write for TTL seconds; the words only that write holds must still find it.
                await anyio.sleep(TTL)
                await call(a, "recall", query="payments", community="ops", mode="keyword")
                assert (await stats_of(a, "ops") or {}).get("total") == 1
                y = await call(b, "remember", content="Kafka retention on the events topic is 7 days.",
                               community="ops")
                found = await call(a, "recall", query="events topic retention", community="ops", mode="keyword")
                assert (await stats_of(a, "ops") or {}).get("total") == 1  # not re-read: the words were unknown
                assert y["id"] in [h["id"] for h in found["hits"]]
                # Dedup ids agree: the content one hub stored is a duplicate through the other.
                again = await call(b, "remember", content="The payments API rotates its keys every 90 days.",
                                   community="ops")
                assert again == {"id": x["id"], "community": "ops", "duplicate": True}

                # The same new content through both hubs at once: one id, one row.
                raced: list[dict[str, Any]] = []

                async def write(session: ClientSession, text: str) -> None:
                    raced.append(await call(session, "remember", content=text, community="race"))

                for i in range(5):
                    async with anyio.create_task_group() as tg:
                        for session in (a, b):
                            tg.start_soon(write, session, f"race {i}: the build cache lives on volume {i}")
                ids = [r["id"] for r in raced]
                assert all(ids[i] == ids[i + 1] for i in range(0, 10, 2)) and len(set(ids)) == 5
                assert set(rows_per_id(uri, sorted(set(ids))).values()) == {1}

                # Counts of the other hub's writes show within MEMORY_STATS_TTL (+ one re-read).
                await call(b, "remember", content="Only hub two wrote this.", community="tallied")
                assert (await stats_of(b, "tallied") or {}).get("total") == 1
                with anyio.fail_after(TTL + 30):
                    while (await stats_of(a, "tallied") or {}).get("total") != 1:
                        await anyio.sleep(0.2)
                await call(b, "forget", community="tallied", kinds=["note"])
                with anyio.fail_after(TTL + 30):
                    while await stats_of(a, "tallied") is not None:
                        await anyio.sleep(0.2)

                # Stateless streamable HTTP (the default on a server): one MCP session whose requests
                # a load balancer spreads over both hubs.
                async with balanced_session([one, two]) as (moving, balancer):
                    for i in range(4):
                        found = await call(moving, "recall", query="payment keys rotation", community="ops")
                        assert found["hits"][0]["id"] == x["id"]
                        await call(moving, "remember", content=f"balanced write {i}", community="lb")
                    assert {httpx.URL(one).port, httpx.URL(two).port} <= set(balancer.served[-8:])
                with anyio.fail_after(TTL + 30):
                    while (await stats_of(a, "lb") or {}).get("total") != 4:
                        await anyio.sleep(0.2)

                # One hub killed: the other keeps serving reads and writes.
                first.kill()
                first.wait(10)
                found = await call(b, "recall", query="how often are payment keys rotated?", community="ops")
                assert found["hits"][0]["id"] == x["id"]
                z = await call(b, "remember", content="Hub one is gone; hub two still writes.", community="ops")
                assert z["duplicate"] is False


def test_a_store_on_a_milvus_server_writes_new_memories_by_upsert(tmp_path: Path) -> None:
    # A real Milvus server keeps two rows with one primary key when two hubs both insert it (the
    # stand-in overwrites, so the race above cannot show it): the write must be an upsert there.
    port = free_port()
    with procs.milvus_server(tmp_path / "milvus", port):
        store = MemoryStore(f"http://127.0.0.1:{port}", "memory", 384, index_type="FLAT")
        store.open()
        try:
            calls: list[str] = []
            client = store.client
            for how in ("insert", "upsert"):
                method = getattr(client, how)
                setattr(client, how, lambda *args, _how=how, _method=method, **kwargs: (
                    calls.append(_how), _method(*args, **kwargs))[1])
            indexed = _memory()
            store.insert([indexed])
            store.insert([indexed])
            assert calls == ["upsert", "upsert"]
            assert len(store.client.query("memory", filter=f'id == "{indexed.record.id}"', output_fields=["id"])) == 1
        finally:
            store.close()


def _memory() -> IndexedMemory:
    record = MemoryRecord(id=memory_id("ops", "upserted once", ""), content="upserted once", community="ops",
                          kind="note", tags=[], agent_id="a", created_at=1, content_hash="h", metadata={},
                          thread="", seq=1, expires_at=0)
    return IndexedMemory(record, [1.0] + [0.0] * 383, {1: 1.0}, 1.0)
