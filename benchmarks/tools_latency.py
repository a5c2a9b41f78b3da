"""Latency of every tool through MCP, the floor each is made of measured in the same run, and two hubs
against one on one Milvus server (issue 10).

- `floors`: in process, on the loaded store: the embedder alone (one query per call, as a recall
  embeds it), the engine alone (the dense search, the keyword search and the hybrid candidate search
  with a precomputed query vector), and a recall whose query vector is cached (query_cache.py).
- `per_tool`: through a hub process and the MCP streamable HTTP client: recall in each mode,
  remember, stats, list_communities and route. The hub runs with MEMORY_QUERY_CACHE=0 (see
  latency._env), so every timed recall pays for its model call, on the same query texts as the
  floor's embedder.
- `two_hubs`: Milvus Lite's own gRPC server in its own process as the Milvus server (a stand-in: a
  server's engine is not Lite's Python), the memories loaded into it, concurrent MCP clients on one
  hub and then spread over two hubs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from mcp_memory_server.config import Settings
from mcp_memory_server.embeddings import LocalEmbedder
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.hub.launch import free_port, hub_process
from mcp_memory_server.keywords import KeywordStats, query_sparse
from mcp_memory_server.models import RecallIn
from mcp_memory_server.service import MemoryService
from mcp_memory_server.store import MemoryStore

from . import latency

MODES = ("hybrid", "semantic", "keyword")


def floors(store: MemoryStore, embedder: LocalEmbedder, queries: Sequence[tuple[str, str]],
           stats: dict[str, KeywordStats], vectors: np.ndarray) -> dict[str, Any]:
    """The parts of a recall measured alone, in this process (see the module docstring)."""
    embed: list[float] = []
    for text, _ in queries:
        t = time.perf_counter()
        embedder.embed([text])
        embed.append(time.perf_counter() - t)
    depth = Settings().fusion.depth
    dense: list[float] = []
    keyword: list[float] = []
    hybrid: list[float] = []
    for (text, community), array in zip(queries, vectors, strict=True):
        flt = MemoryFilter(communities=[community])
        vector = array.tolist()
        weights = query_sparse(text, stats.get(community, KeywordStats()))
        t0 = time.perf_counter()
        store.search_dense(flt, vector, latency.K)
        t1 = time.perf_counter()
        store.search_sparse(flt, weights, latency.K)
        t2 = time.perf_counter()
        store.candidates(flt, vector, weights, depth)
        t3 = time.perf_counter()
        dense.append(t1 - t0)
        keyword.append(t2 - t1)
        hybrid.append(t3 - t2)
    service = MemoryService(Settings(milvus_uri=store.uri, memory_collection=store.collection), store, embedder)

    async def cached() -> list[float]:
        await service.writer.tallies.everything()
        times = []
        for text, community in queries:
            await service.recall(RecallIn(query=text, community=community, k=latency.K))  # fills the cache
            t = time.perf_counter()
            await service.recall(RecallIn(query=text, community=community, k=latency.K))
            times.append(time.perf_counter() - t)
        return times

    return {"embed_one_query": latency.percentiles(embed), "engine_dense": latency.percentiles(dense),
            "engine_keyword": latency.percentiles(keyword), "engine_hybrid_candidates": latency.percentiles(hybrid),
            "direct_hybrid_cached_query": latency.percentiles(anyio.run(cached))}


async def per_tool(url: str, queries: Sequence[tuple[str, str]], run: str = "") -> dict[str, Any]:
    """p50 / p99 of each tool through one MCP session; every call has a query or content of its own
    (`run` tells the sizes of one database apart: content written at an earlier size is a duplicate)."""
    out: dict[str, Any] = {}
    async with latency.session(url) as s:
        for text, community in queries[:3]:  # warm the session and the hub
            await latency.call(s, "recall", query=f"warm {text}", community=community, k=latency.K)
        for n in range(3):
            await latency.call(s, "register_expert", agent_id=f"expert-{n}", community="experts",
                               description=f"Knows about subject {n}: {queries[n][0]}")

        async def timed(name: str, calls: Sequence[tuple[str, dict[str, Any]]]) -> None:
            times = []
            for tool, args in calls:
                t = time.perf_counter()
                await latency.call(s, tool, **args)
                times.append(time.perf_counter() - t)
            out[name] = latency.percentiles(times)

        # The queries as the floor's embedder timed them: the hub keeps no query vectors (no cache), so
        # every mode embeds each query again. (Until 2026-11-30 each mode's queries ended in " (mode)",
        # for a hub with a query cache: three tokens more than the floor's, ~0.65 ms of a model call.)
        for mode in MODES:
            await timed(f"recall_{mode}", [("recall", {"query": text, "community": c, "k": latency.K, "mode": mode})
                                           for text, c in queries])
        await timed("remember", [("remember", {"content": f"tool latency note {run}{i}: {text}", "community": "tools"})
                                 for i, (text, _) in enumerate(queries)])
        await timed("stats", [("stats", {}) for _ in queries])
        await timed("list_communities", [("list_communities", {}) for _ in queries])
        await timed("route", [("route", {"question": f"{text} (route)", "community": "experts"})
                              for text, _ in queries])
    return out


# -- two hubs on one Milvus server ---------------------------------------------------------------

SERVE = ("import sys, time\n"
         "from milvus_lite.adapter.grpc.server import start_server_in_thread\n"
         "server = start_server_in_thread(sys.argv[1], '127.0.0.1', int(sys.argv[2]))\n"
         "print('ready', flush=True)\n"
         "time.sleep(3600)\n")  # stops by itself if a run leaves it behind


@contextmanager
def milvus_server(data: Path) -> Iterator[str]:
    """Milvus Lite's gRPC server in its own process; yields its URI."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(data), str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def two_hubs(tmp: Path, texts: Sequence[str], vectors: np.ndarray, size: int,
             queries: Sequence[tuple[str, str]], clients: int, per_client: int) -> dict[str, Any]:
    """`clients` concurrent MCP clients on one hub, then spread over two hubs, on one server."""
    with milvus_server(tmp / "server") as uri:
        store = MemoryStore(uri, latency.COLLECTION, vectors.shape[1], index_type="FLAT")
        store.open()
        try:
            t = time.perf_counter()
            latency.load(store, texts, vectors, 0, size, {})
            load_s = time.perf_counter() - t
        finally:
            store.close()
        env = {**latency._env(tmp), "MILVUS_URI": uri, "MEMORY_INDEX_TYPE": "FLAT"}
        result: dict[str, Any] = {"memories": size, "clients": clients, "load_seconds": round(load_s, 1),
                                  "server": "Milvus Lite's gRPC server in its own process (stand-in)"}
        with ExitStack() as hubs:
            urls = []
            for n in (1, 2):
                port = free_port()
                base, _ = hubs.enter_context(hub_process(env, tmp / f"hub-{port}.log", port=port, timeout=300,
                                                         options=["--log-level", "WARNING"],
                                                         ready=latency._model_loaded))
                urls.append(f"{base}/mcp")
                result[f"hubs_{n}"] = anyio.run(latency.concurrent, urls, clients, queries, per_client)
    return result
