"""Many clients at once on one hub: no errors, no lost writes, and every acknowledged write is
visible to the other clients' next recall (read-your-writes across clients).

Each client has its own token (its identity) and its own room (community); every token may read
and write every room. Half the operations are writes; a third are recalls of another client's
latest acknowledged write, which must be found, attributed to that client's token."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession

from mcp_memory_server.embeddings import CoalescingEmbedder
from mcp_memory_server.errors import EmbeddingError
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import MemoryIn, RememberManyIn
from tests.conftest import error_text
from tests.hub_sessions import http_session, hub_process, rows_per_id

pytestmark = pytest.mark.anyio

WORDS = ("deploy", "budget", "schema", "latency", "rollback", "review", "incident", "cache", "index", "launch")


@dataclass
class Ledger:
    """What the clients were told: every acknowledged write, every failure, every latency."""

    acked: dict[str, str] = field(default_factory=dict)  # id -> room
    latest: list[tuple[int, str, str]] = field(default_factory=list)  # (client, marker, id) of single writes
    errors: list[str] = field(default_factory=list)
    stale_reads: list[str] = field(default_factory=list)
    cross_reads: int = 0
    latency: dict[str, list[float]] = field(default_factory=dict)


def token(number: int) -> str:
    return f"client-token-{number:02d}-0123456789"


def room(number: int) -> str:
    return f"room-{number:02d}"


async def _tool(session: ClientSession, ledger: Ledger, tool: str, **args: Any) -> dict[str, Any] | None:
    started = time.perf_counter()
    result = await session.call_tool(tool, args)
    ledger.latency.setdefault(f"{tool} {args.get('mode', '')}".strip(), []).append(time.perf_counter() - started)
    if result.isError or result.structuredContent is None:
        ledger.errors.append(f"{tool}: {error_text(result)}")
        return None
    return result.structuredContent


async def client(url: str, number: int, clients: int, operations: int, ledger: Ledger) -> None:
    rng = random.Random(number)
    mine = room(number)
    async with http_session(url, token(number)) as session:
        for op in range(operations):
            marker = f"mk{number}x{op}"
            text = f"{marker} client {number} notes {' '.join(rng.choices(WORDS, k=6))}"
            roll = rng.random()
            if roll < 0.50:
                done = await _tool(session, ledger, "remember", content=text, community=mine,
                                   tags=[f"c{number}"], metadata={"op": op})
                if done:
                    ledger.acked[done["id"]] = mine
                    ledger.latest.append((number, marker, done["id"]))
            elif roll < 0.60:
                batch = [{"content": f"{text} part {i}", "community": mine} for i in range(3)]
                done = await _tool(session, ledger, "remember_many", memories=batch)
                for item in done["results"] if done else []:
                    ledger.acked[item["id"]] = mine
            elif roll < 0.90:
                others = [entry for entry in ledger.latest[-50:] if entry[0] != number]
                if not others:
                    continue
                writer, seen_marker, seen_id = rng.choice(others)
                found = await _tool(session, ledger, "recall", query=seen_marker, community=room(writer), k=3,
                                    mode="keyword")
                ledger.cross_reads += 1
                if found is not None and (seen_id, f"agent-{writer:02d}") not in [
                        (hit["id"], hit["agent_id"]) for hit in found["hits"]]:
                    ledger.stale_reads.append(seen_marker)
            elif roll < 0.99:
                await _tool(session, ledger, "recall", query=" ".join(rng.choices(WORDS, k=3)),
                            community=room(rng.randrange(clients)), k=10, mode=rng.choice(["hybrid", "semantic"]))
            else:
                await _tool(session, ledger, "list_communities")


async def run_clients(db: Path, clients: int, operations: int, timeout: float) -> None:
    rooms = [room(n) for n in range(clients)]
    grants = {"tokens": {token(n): {"agent_id": f"agent-{n:02d}", "communities": rooms} for n in range(clients)}}
    ledger = Ledger()
    # The hub runs as its own process, as deployed: the clients' work does not share its interpreter.
    with hub_process(db, db.with_name("hub.log"), grants=grants) as (process, base):
        url = f"{base}/mcp"
        async with http_session(url, token(0)) as first:  # every room exists before the clients start
            await first.call_tool("remember_many", {"memories": [{"content": f"{r} opened", "community": r}
                                                                 for r in rooms]})
        started = time.perf_counter()
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tasks:
                for number in range(clients):
                    tasks.start_soon(client, url, number, clients, operations, ledger)
        elapsed = time.perf_counter() - started
        async with http_session(url, token(0)) as reader:
            total = (await reader.call_tool("stats", {})).structuredContent
        process.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(process.wait, 30)
    counts = rows_per_id(db, list(ledger.acked))
    print(f"\n{clients}x{operations} operations in {elapsed:.1f} s = {clients * operations / elapsed:.1f} ops/s; "
          f"{len(ledger.acked)} memories written, {ledger.cross_reads} cross-client reads")
    for name, times in sorted(ledger.latency.items()):
        print(f"  {name:24s} n={len(times):5d} mean={1000 * sum(times) / len(times):7.1f} ms "
              f"max={1000 * max(times):7.1f} ms")
    assert ledger.errors == []
    assert ledger.stale_reads == []
    assert ledger.cross_reads > clients * operations // 5
    assert set(counts.values()) == {1}, "a write was lost or stored twice"
    assert total is not None and total["total"] == len(ledger.acked) + clients


async def test_sixteen_clients_mixing_operations_lose_nothing_and_see_each_others_writes(tmp_path: Path) -> None:
    await run_clients(tmp_path / "memory.db", 16, 300, timeout=float(os.environ.get("CONCURRENCY_TIMEOUT", "600")))


@pytest.mark.soak
async def test_many_clients_for_long_lose_nothing_and_see_each_others_writes(tmp_path: Path) -> None:
    await run_clients(tmp_path / "memory.db", int(os.environ.get("SOAK_CLIENTS", "32")),
                      int(os.environ.get("SOAK_OPERATIONS", "1000")), timeout=4 * 3600)


class _SlowEmbedder:
    """Deterministic vectors, slow enough that concurrent callers pile up; counts model calls."""

    name, dimension = "slow", 2

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.threads: list[str] = []  # the thread each model call ran in

    def warm_up(self) -> None:
        return None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.threads.append(threading.current_thread().name)
        if "boom" in texts:
            raise EmbeddingError("model failed")
        self.calls.append(len(texts))
        time.sleep(0.05)
        return [[float(len(t)), 1.0] for t in texts]

    def close(self) -> None:
        return None


def test_concurrent_embeds_share_model_calls_and_each_caller_gets_its_own_vectors() -> None:
    inner = _SlowEmbedder()
    embedder = CoalescingEmbedder(inner)
    results: dict[int, list[list[float]]] = {}

    def caller(number: int) -> None:
        results[number] = embedder.embed(["x" * number, "y" * (number + 1)])

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == {n: [[float(n), 1.0], [float(n + 1), 1.0]] for n in range(16)}
    assert sum(inner.calls) == 32 and len(inner.calls) < 16
    with pytest.raises(EmbeddingError, match="model failed"):
        embedder.embed(["boom"])
    assert embedder.embed(["after"]) == [[5.0, 1.0]]


def test_a_caller_that_finds_the_model_idle_makes_the_call_in_its_own_thread() -> None:
    """No hand-over to the worker thread and back for a lone call; calls queued behind a busy model
    are still made together by the worker, and the model is never called twice at once."""
    inner = _SlowEmbedder()
    embedder = CoalescingEmbedder(inner)
    assert embedder.embed(["alone"]) == [[5.0, 1.0]]
    assert inner.threads == [threading.current_thread().name]
    with pytest.raises(EmbeddingError, match="model failed"):  # a failure in the caller's own call
        embedder.embed(["boom"])
    assert embedder.embed(["again"]) == [[5.0, 1.0]]  # ...leaves the model free

    inner.threads.clear()
    running, most = 0, 0
    guard = threading.Lock()
    slow_embed = inner.embed

    def counted(texts: Sequence[str]) -> list[list[float]]:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        deadline = time.monotonic() + 10
        while not inner.threads and len(embedder._queue) < 7 and time.monotonic() < deadline:
            time.sleep(0.005)  # the first call holds the model until the other callers have queued
        try:
            return slow_embed(texts)
        finally:
            with guard:
                running -= 1

    inner.embed = counted  # type: ignore[method-assign]
    results: dict[int, list[list[float]]] = {}

    def caller(n: int) -> None:
        results[n] = embedder.embed(["z" * n])

    callers = [threading.Thread(target=caller, args=(n,), name=f"caller-{n}") for n in range(1, 9)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(timeout=30)
    assert results == {n: [[float(n), 1.0]] for n in range(1, 9)}
    assert most == 1
    assert inner.threads[0].startswith("caller-")  # the first caller found the model idle
    assert "embed-coalescer" in inner.threads[1:]  # the rest queued behind it, for the worker
    assert len(inner.threads) < 8


async def test_concurrent_writes_of_the_same_content_store_it_once(runtime: Runtime) -> None:
    memory = await runtime.memory()
    outcomes: list[bool] = []

    async def write(number: int) -> None:
        done = await memory.remember_many(RememberManyIn(memories=[MemoryIn(content="the same fact, sent by everyone"),
                                           MemoryIn(content=f"a fact only client {number} knows")]))
        outcomes.append(done.results[0].duplicate)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tasks:
            for number in range(16):
                tasks.start_soon(write, number)
    assert sorted(outcomes) == [False] + [True] * 15
    assert (await memory.stats()).total == 17
