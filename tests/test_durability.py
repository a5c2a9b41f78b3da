"""The hub as a real process: kill -9 during a stream of writes loses no acknowledged write and
stores none twice (also when clients retry), and SIGTERM shuts it down cleanly within seconds."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession

from mcp_memory_server.memory import Runtime
from tests.conftest import call
from tests.hub_sessions import http_session, hub_process, rows_per_id

pytestmark = pytest.mark.anyio

COMMUNITY = "durable"


async def test_kill_9_during_writes_loses_no_acknowledged_write_and_retries_store_nothing_twice(
        tmp_path: Path) -> None:
    await kill_during_writes(tmp_path, acks_before_kill=120)


@pytest.mark.soak
async def test_repeated_kill_9_under_heavier_writes_loses_nothing(tmp_path: Path) -> None:
    for cycle in range(int(os.environ.get("SOAK_KILL_CYCLES", "5"))):
        (tmp_path / str(cycle)).mkdir()
        await kill_during_writes(tmp_path / str(cycle), acks_before_kill=1000)


async def kill_during_writes(tmp_path: Path, acks_before_kill: int) -> None:
    """Four clients write until `acks_before_kill` writes are acknowledged; kill -9; restart; every
    client retries everything it sent; each acknowledged write is then stored exactly once."""
    db, log = tmp_path / "memory.db", tmp_path / "hub.log"
    acked: dict[str, str] = {}  # content -> id
    sent: list[str] = []

    async def writer(url: str, number: int) -> None:
        async with http_session(url) as session:
            for i in range(10_000):
                content = f"durable write {number}-{i}"
                sent.append(content)
                result = await call(session, "remember", content=content, community=COMMUNITY)
                acked[content] = result["id"]

    with hub_process(db, log) as (process, base):
        with anyio.fail_after(180 + acks_before_kill):
            async with anyio.create_task_group() as tasks:
                for number in range(4):
                    tasks.start_soon(_until_killed, writer, f"{base}/mcp", number)
                while len(acked) < acks_before_kill:
                    await anyio.sleep(0.01)
                process.kill()  # SIGKILL: no flush, no close
                await anyio.to_thread.run_sync(process.wait)
                tasks.cancel_scope.cancel()  # the writers' replies in flight are lost
    assert process.returncode == -signal.SIGKILL
    in_flight = [c for c in sent if c not in acked]
    killed_at = len(acked)

    with hub_process(db, log) as (process, base):
        async with http_session(f"{base}/mcp") as session:
            # Every client retries everything it sent, acknowledged or not (it may have lost the reply).
            results: list[dict[str, Any]] = []
            for start in range(0, len(sent), 500):
                results += (await call(session, "remember_many", memories=[
                    {"content": c, "community": COMMUNITY} for c in sent[start:start + 500]]))["results"]
            stats = await call(session, "stats")
        process.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(process.wait, 30)
    by_content = {c: r["id"] for c, r in zip(sent, results, strict=True)}
    assert all(by_content[c] == i for c, i in acked.items())
    assert all(r["duplicate"] for c, r in zip(sent, results, strict=True) if c in acked)
    counts = rows_per_id(db, list(by_content.values()))
    print(f"\nkill -9 after {killed_at} acknowledged writes ({len(in_flight)} in flight): "
          f"{sum(counts[i] > 0 for i in acked.values())}/{killed_at} present after restart, "
          f"max rows per id {max(counts.values())}, total {stats['total']}")
    assert all(counts[i] == 1 for i in acked.values()), "an acknowledged write was lost or stored twice"
    assert set(counts.values()) == {1}
    assert stats["total"] == len(sent)


async def _until_killed(writer, url: str, number: int) -> None:  # type: ignore[no-untyped-def]
    try:
        await writer(url, number)
    except Exception:  # the hub was killed under it: expected (the MCP client raises various errors)
        return


async def test_sigterm_flushes_closes_and_exits_within_seconds(tmp_path: Path) -> None:
    db, log = tmp_path / "memory.db", tmp_path / "hub.log"
    with hub_process(db, log) as (process, base):
        async with http_session(f"{base}/mcp") as session:
            stored = await call(session, "remember_many", memories=[
                {"content": f"kept across a clean restart {i}", "community": COMMUNITY} for i in range(50)])
        advert = db.with_name(db.name + ".hub.json")
        assert advert.exists()
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(process.wait, 30)
        took = time.monotonic() - started
    print(f"\nSIGTERM to exit: {took:.2f} s")
    assert process.returncode == 0, log.read_text()[-2000:]
    assert took < 5.0
    assert not advert.exists()
    counts = rows_per_id(db, [r["id"] for r in stored["results"]])
    assert set(counts.values()) == {1}


async def test_the_store_reconnects_when_its_milvus_connection_is_lost(
        runtime: Runtime, client: ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    stored = await call(client, "remember", content="written before the connection dropped")
    service = runtime.service
    assert service is not None
    await anyio.to_thread.run_sync(service.store.client.close)  # the connection drops under the hub
    hits = (await call(client, "recall", query="connection dropped"))["hits"]
    assert [h["id"] for h in hits] == [stored["id"]]
    await call(client, "remember", content="written after reconnecting")
    assert (await call(client, "stats"))["total"] == 2
    assert "lost the connection to Milvus" in caplog.text
