"""Milvus Lite runs inside the hub without a listening port, and databases written by version 0.1
(schema 1) are migrated at open without losing a memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from pymilvus import DataType, Function, FunctionType, MilvusClient

from mcp_memory_server.config import Settings
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import RecallIn, memory_id
from tests import procs

pytestmark = pytest.mark.anyio


def listening_ports(pid: int) -> tuple[set[int], int]:
    """(TCP ports the process listens on, how many listening Unix sockets it holds)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    unix = sum(1 for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]
               if line.split()[6] in inodes and int(line.split()[3], 16) & 0x10000)  # __SO_ACCEPTCON
    return ports, unix


async def test_the_hub_listens_on_nothing_but_its_own_http_port(tmp_path: Path) -> None:
    with procs.hub_process(tmp_path / "ports.db", tmp_path) as (base, process):
        async with streamable_http_client(f"{base}/mcp") as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            stored = await session.call_tool("remember", {"content": "the store is open and used"})
            assert not stored.isError
        tcp, unix = listening_ports(process.pid)
    assert tcp == {int(base.rsplit(":", 1)[1])}, f"the hub also listens on {tcp}"
    assert unix == 0


def create_schema1(path: Path) -> list[str]:
    """A database as version 0.1 wrote it: Milvus' BM25 function over content, COSINE dense vectors."""
    client = MilvusClient(str(path))
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("content", DataType.VARCHAR, max_length=65535, enable_analyzer=True,
                     analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]})
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=384)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("community", DataType.VARCHAR, max_length=64, is_partition_key=True)
    schema.add_field("kind", DataType.VARCHAR, max_length=128)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=64, max_length=256)
    schema.add_field("agent_id", DataType.VARCHAR, max_length=256)
    schema.add_field("created_at", DataType.INT64)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("metadata", DataType.JSON)
    schema.add_function(Function(name="content_bm25", function_type=FunctionType.BM25,
                                 input_field_names=["content"], output_field_names=["sparse"]))
    index = client.prepare_index_params()
    index.add_index("dense", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection("agent_memory", schema=schema, index_params=index, consistency_level="Strong")
    texts = [("ops", "the staging cluster runs Kubernetes 1.29"), ("ops", "backups run nightly at 02:00 UTC"),
             ("design", "the logo is teal and orange")]
    rows = []
    for i, (community, text) in enumerate(texts):
        vector = [0.0] * 384
        vector[i] = 1.0
        rows.append({"id": memory_id(community, text), "content": text, "dense": vector, "community": community,
                     "kind": "fact", "tags": ["t"], "agent_id": "old-agent", "created_at": 1_700_000_000_000 + i,
                     "content_hash": "h", "metadata": {"n": i}})
    client.insert("agent_memory", rows)
    client.flush("agent_memory")
    client.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(path))
    return [r["id"] for r in rows]


async def test_a_database_of_version_0_1_is_migrated_at_open_and_every_memory_is_kept(settings: Settings) -> None:
    path = Path(settings.milvus_uri)
    ids = create_schema1(path)
    runtime = Runtime(settings)
    async with runtime.running(own=True):
        memory = await runtime.memory()
        stats = await memory.stats()
        assert {c.community: c.total for c in stats.communities} == {"ops": 2, "design": 1}
        found = await memory.recall(RecallIn(query="when do backups run", community="ops", k=2))
        assert found.hits[0].content == "backups run nightly at 02:00 UTC"
        assert found.hits[0].id in ids and found.hits[0].agent_id == "old-agent"
        assert found.hits[0].metadata == {"n": 1} and found.hits[0].tags == ["t"]
        assert runtime.service is not None
        names = runtime.service.store.client.list_collections()
    assert "agent_memory" in names and any(n.startswith("agent_memory_schema1_") for n in names)
    runtime = Runtime(settings)  # a second open finds the current schema: nothing to migrate
    async with runtime.running(own=True):
        assert (await (await runtime.memory()).stats()).total == 3
