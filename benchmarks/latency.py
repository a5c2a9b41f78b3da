"""Latency and throughput: the MCP path (a real hub process, streamable HTTP client) against the
direct path (the same embedder and MemoryStore in this process), on the same database.

For each size the memories are bulk-loaded through the store (precomputed vectors, see
synthetic.py), recall is timed in process (direct), the store is closed, and the hub
(`python -m mcp_memory_server serve --transport streamable-http`) is started on the same database
and timed through an MCP client session. Only one process may open a Milvus Lite database, so
the two paths run one after the other, in the same run.
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_memory_server.config import Settings
from mcp_memory_server.embeddings import LocalEmbedder
from mcp_memory_server.hub.launch import SERVER, free_port, hub_process
from mcp_memory_server.keywords import KeywordStats
from mcp_memory_server.models import MemoryRecord, RecallIn, SearchMode, memory_id
from mcp_memory_server.service import MemoryService
from mcp_memory_server.store import MemoryStore

from . import synthetic, tools_latency

COMMUNITIES = [f"team-{i:02d}" for i in range(20)]
COLLECTION = "agent_memory"
K = 10


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean in milliseconds."""
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "mean_ms": round(float(ms.mean()), 2),
            "n": len(ms)}


# -- the hub as a subprocess -----------------------------------------------------------------------

def _env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MILVUS_", "MEMORY_", "EMBEDDING_"))}
    # No query cache: every timed recall pays for its model call (a cached query: tools_latency.floors).
    env.update(MILVUS_URI=str(db), MEMORY_COLLECTION=COLLECTION, MEMORY_QUERY_CACHE="0",
               PYTHONPATH=str(Path(__file__).parents[1]))
    return env


@contextmanager
def hub(db: Path, log_dir: Path, timeout: float = 300.0) -> Iterator[str]:
    """The CLI hub on a free loopback port; yields its /mcp URL once healthy with the model loaded."""
    port = free_port()
    with hub_process(_env(db), log_dir / f"hub-{port}.log", port=port, options=["--log-level", "WARNING"],
                     timeout=timeout, ready=_model_loaded) as (base, _):
        yield f"{base}/mcp"


def _model_loaded(health: dict[str, Any]) -> bool:
    embedder = health.get("embedder")
    return bool(embedder.get("loaded") if isinstance(embedder, dict) else health.get("embedder_loaded"))


@asynccontextmanager
async def session(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write, _), ClientSession(read, write) as s:
        await s.initialize()
        yield s


async def call(s: ClientSession, tool: str, **args: Any) -> dict[str, Any]:
    result = await s.call_tool(tool, args)
    if result.isError or result.structuredContent is None:
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result.structuredContent


# -- loading ---------------------------------------------------------------------------------------

def load(store: MemoryStore, texts: Sequence[str], vectors: np.ndarray, start: int, stop: int,
         stats: dict[str, KeywordStats]) -> None:
    """Insert memories start..stop, spread round-robin over the 20 communities."""
    for lo in range(start, stop, 5000):
        hi = min(stop, lo + 5000)
        records = []
        for i in range(lo, hi):
            community = COMMUNITIES[i % len(COMMUNITIES)]
            records.append(MemoryRecord(id=memory_id(community, texts[i]), content=texts[i], community=community,
                                        kind="note", tags=[], agent_id="bench", created_at=1_700_000_000_000 + i,
                                        content_hash=hashlib.sha256(texts[i].encode()).hexdigest()))
        synthetic.bulk_insert(store, records, vectors[lo:hi], stats)


def wait_indexed(store: MemoryStore, timeout: float = 600.0) -> None:
    """Lite builds segment indexes in the background after a flush; time recall once they exist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = store.client.describe_index(store.collection, "dense") or {}
        if not info.get("pending_index_rows"):
            break
        time.sleep(0.5)
    # describe_index can report done before the last segment's HNSW is attached: a few warm searches
    # after a short pause make sure the timed ones hit the index.
    time.sleep(2.0)


# -- measurements ----------------------------------------------------------------------------------

def direct_recall(store: MemoryStore, embedder: LocalEmbedder, queries: Sequence[tuple[str, str]],
                  mode: SearchMode = "hybrid") -> list[float]:
    """Recall through a MemoryService in this process (the MCP path minus the transport)."""
    service = MemoryService(Settings(milvus_uri=store.uri, memory_collection=store.collection), store, embedder)

    async def timed() -> list[float]:
        await service.writer.tallies.everything()
        times = []
        for text, community in queries:
            t = time.perf_counter()
            await service.recall(RecallIn(query=text, community=community, k=K, mode=mode))
            times.append(time.perf_counter() - t)
        return times

    return anyio.run(timed)


async def mcp_recall(url: str, queries: Sequence[tuple[str, str]]) -> list[float]:
    times = []
    async with session(url) as s:
        for text, community in queries[:5]:  # warm the session
            await call(s, "recall", query=text, community=community, k=K)
        for text, community in queries:
            t = time.perf_counter()
            await call(s, "recall", query=text, community=community, k=K)
            times.append(time.perf_counter() - t)
    return times


async def concurrent(url: str | Sequence[str], clients: int, queries: Sequence[tuple[str, str]],
                     per_client: int) -> dict[str, Any]:
    """`clients` sessions recalling at once (client n on hub n mod the hubs given); throughput
    (recalls/s) and latency percentiles."""
    urls = [url] if isinstance(url, str) else list(url)
    times: list[float] = []
    opened: list[int] = []
    go = anyio.Event()

    async def worker(n: int) -> None:
        async with session(urls[n % len(urls)]) as s:
            await call(s, "recall", query=queries[n][0], community=queries[n][1], k=K)
            opened.append(n)
            await go.wait()
            for j in range(per_client):
                text, community = queries[(n * per_client + j) % len(queries)]
                t = time.perf_counter()
                await call(s, "recall", query=text, community=community, k=K)
                times.append(time.perf_counter() - t)

    async with anyio.create_task_group() as tasks:
        for n in range(clients):
            tasks.start_soon(worker, n)
        with anyio.fail_after(120):
            while len(opened) < clients:  # every session open and warm: start together
                await anyio.sleep(0.05)
        started = time.perf_counter()
        go.set()
    elapsed = time.perf_counter() - started
    return {"clients": clients, "recalls": len(times), "seconds": round(elapsed, 2),
            "throughput_per_s": round(len(times) / elapsed, 1), **percentiles(times)}


async def remember_rates(url: str, texts: Sequence[str], batch: int, singles: int) -> dict[str, Any]:
    async with session(url) as s:
        await call(s, "remember", content="warm-up memory", community="writes")
        single = []
        for text in texts[:singles]:
            t = time.perf_counter()
            await call(s, "remember", content=text, community="writes")
            single.append(time.perf_counter() - t)
        rest = texts[singles:]
        t = time.perf_counter()
        for lo in range(0, len(rest), batch):
            items = [{"content": x, "community": "writes"} for x in rest[lo:lo + batch]]
            await call(s, "remember_many", memories=items)
        batch_s = time.perf_counter() - t
    return {"single_remember": percentiles(single),
            "batch": {"memories": len(rest), "batch_size": batch, "seconds": round(batch_s, 2),
                      "per_s": round(len(rest) / batch_s, 1)}}


async def cold_start(db: Path, query: str, community: str) -> dict[str, float]:
    """Process start -> `initialize` answered -> first `recall` answered, over stdio (how a desktop
    client launches the server)."""
    params = StdioServerParameters(command=SERVER[0], args=[*SERVER[1:], "--log-level", "WARNING", "serve",
                                                            "--transport", "stdio"], env=_env(db))
    t0 = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        async with stdio_client(params, errlog=devnull) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            t_init = time.perf_counter()
            await call(s, "recall", query=query, community=community, k=K)
            t_recall = time.perf_counter()
    return {"initialize_s": round(t_init - t0, 3), "first_recall_s": round(t_recall - t0, 3)}


@dataclass(frozen=True)
class Scale:
    """How much to measure."""

    sizes: tuple[int, ...]
    queries: int
    clients: tuple[int, ...]
    per_client: int
    writes: int  # memories written through remember_many (plus `singles` one at a time)
    singles: int
    cold_starts: int
    unique: int  # texts embedded for real for the bulk load
    two_hubs: tuple[int, int] = (0, 0)  # memories on one Milvus server, clients on one hub then two (0: skip)


FULL = Scale((1_000, 10_000, 100_000), 200, (1, 4, 16), 40, 2_000, 100, 3, 5_000, (10_000, 16))
QUICK = Scale((500, 2_000), 40, (1, 4), 10, 280, 20, 1, 1_000, (500, 4))


def run(out_dir: Path, quick: bool, *, scale: Scale | None = None) -> dict[str, Any]:
    """All latency and throughput measurements; see the module docstring."""
    sc = scale or (QUICK if quick else FULL)
    sizes, clients = list(sc.sizes), list(sc.clients)
    rng = random.Random(5)
    embedder = LocalEmbedder()
    embedder.warm_up()
    texts = synthetic.sentences(max(sizes))
    vectors = synthetic.vectors(texts, embedder, unique=min(len(texts), sc.unique))
    qs = [(q, rng.choice(COMMUNITIES)) for q in synthetic.queries(sc.queries)]
    query_vectors = np.asarray(embedder.embed([q for q, _ in qs]), dtype=np.float32)
    result: dict[str, Any] = {"k": K, "communities": len(COMMUNITIES), "mode": "hybrid", "sizes": {}}
    # Writes go to a community of their own on the largest database, after its recalls are timed.
    write_texts = [f"{s} (write {i})" for i, s in enumerate(synthetic.sentences(sc.writes + sc.singles, seed=99))]
    t = time.perf_counter()
    embedder.embed(write_texts[sc.singles:])
    embed_rate = sc.writes / (time.perf_counter() - t)
    writes: dict[str, Any] = {}
    (out_dir / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="latency-", dir=out_dir / "tmp") as tmp:
        db = Path(tmp) / "memory.db"
        loaded = 0
        stats: dict[str, KeywordStats] = {}
        for size in sizes:
            store = MemoryStore(str(db), COLLECTION, embedder.dimension)
            store.open()
            try:
                t = time.perf_counter()
                load(store, texts, vectors, loaded, size, stats)
                load_s = time.perf_counter() - t
                loaded = size
                wait_indexed(store)
                direct_recall(store, embedder, qs[:5])
                direct = percentiles(direct_recall(store, embedder, qs))
                semantic = percentiles(direct_recall(store, embedder, qs, mode="semantic"))
                floors = tools_latency.floors(store, embedder, qs, stats, query_vectors)
            finally:
                store.close()  # releases the database for the hub process
            with hub(db, Path(tmp)) as url:
                mcp = percentiles(anyio.run(mcp_recall, url, qs))
                entry: dict[str, Any] = {
                    "load_seconds": round(load_s, 1), "direct": direct, "direct_semantic": semantic, "mcp": mcp,
                    "overhead_p50": round(mcp["p50_ms"] / direct["p50_ms"], 2),
                    "overhead_p99": round(mcp["p99_ms"] / direct["p99_ms"], 2),
                    "floors": floors, "tools": anyio.run(tools_latency.per_tool, url, qs, f"{size}-"),
                }
                if size >= 10_000 or size == sizes[-1]:
                    entry["concurrency"] = [anyio.run(concurrent, url, c, qs, sc.per_client) for c in clients]
                if size == sizes[-1]:
                    writes = anyio.run(remember_rates, url, write_texts, 256, sc.singles)
            result["sizes"][str(size)] = entry
        writes["embedder_per_s"] = round(embed_rate, 1)
        writes["batch_vs_embedder"] = round(writes["batch"]["per_s"] / embed_rate, 3)
        result["writes"] = writes
        starts = [anyio.run(cold_start, db, qs[0][0], qs[0][1]) for _ in range(sc.cold_starts)]
        result["cold_start"] = {
            "runs": starts,
            "initialize_s": min(s["initialize_s"] for s in starts),
            "first_recall_s": min(s["first_recall_s"] for s in starts),
            "memories": loaded + len(write_texts) + 1,
        }
        if sc.two_hubs[0]:
            result["two_hubs"] = tools_latency.two_hubs(Path(tmp), texts, vectors, sc.two_hubs[0], qs,
                                                        sc.two_hubs[1], sc.per_client)
    return result
