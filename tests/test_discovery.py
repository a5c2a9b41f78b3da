"""Which hub a process joins (hub/advert.py): an advert is trusted only when a bounded probe of the
hub's /health finds a memory hub serving that very database; a stale advert (its pid reused, its
port dead or never answering) is ignored and the stdio server owns the store itself. Error hints
name what to change according to where the URL came from."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client

from mcp_memory_server.config import Settings
from mcp_memory_server.doctor import hub_health
from mcp_memory_server.errors import HubUnavailable
from mcp_memory_server.hub.advert import PROBE_SECONDS, HubAddress, advert_path, find_hub
from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.hub.launch import free_port
from tests.conftest import call, running_hub
from tests.procs import hub_process, stdio_params

pytestmark = pytest.mark.anyio


def write_advert(db: Path, url: str, pid: int) -> None:
    advert_path(str(db)).write_text(json.dumps({"url": url, "pid": pid}))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel completes them) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def timed_find(settings: Settings) -> tuple[HubAddress | None, float]:
    started = time.monotonic()
    found = find_hub(settings)
    return found, time.monotonic() - started


def test_an_advert_whose_pid_lives_on_in_another_process_is_ignored(settings: Settings) -> None:
    write_advert(Path(settings.milvus_uri), f"http://127.0.0.1:{free_port()}/mcp", os.getpid())
    found, took = timed_find(settings)
    assert found is None and took < PROBE_SECONDS + 0.5


def test_an_advert_pointing_at_a_port_that_never_answers_is_ignored_within_the_probe_time(
        settings: Settings, silent_port: int) -> None:
    write_advert(Path(settings.milvus_uri), f"http://127.0.0.1:{silent_port}/mcp", os.getpid())
    found, took = timed_find(settings)
    assert found is None and took < PROBE_SECONDS + 0.5


def test_an_advert_pointing_at_a_hub_of_another_database_is_ignored(settings: Settings, tmp_path: Path) -> None:
    with running_hub(Settings(milvus_uri=str(tmp_path / "other.db"))) as other:
        write_advert(Path(settings.milvus_uri), other.url, os.getpid())
        assert find_hub(settings) is None
        # ... while a process of that database finds it
        write_advert(tmp_path / "other.db", other.url, os.getpid())
        assert find_hub(Settings(milvus_uri=str(tmp_path / "other.db"))) == HubAddress(other.url, "advert")


async def test_a_stdio_server_owns_the_store_when_the_advert_is_stale(tmp_path: Path, silent_port: int) -> None:
    """Before, a live pid in the advert made the stdio server join a port that never answers: every
    call hung for 60 s."""
    db = tmp_path / "memory.db"
    write_advert(db, f"http://127.0.0.1:{silent_port}/mcp", os.getpid())
    with anyio.fail_after(90):
        async with (stdio_client(stdio_params(db, tmp_path)) as (read, write), ClientSession(read, write) as session):
            await session.initialize()
            stored = await call(session, "remember", content="written although a stale advert was there")
            stats = await call(session, "stats")
    assert stats["store_uri"] == str(db) and stats["total"] == 1 and stored["duplicate"] is False


async def test_a_stdio_server_joins_the_hub_its_advert_names(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with hub_process(db, tmp_path) as (base, _), anyio.fail_after(120):
        assert find_hub(Settings(milvus_uri=str(db))) == HubAddress(f"{base}/mcp", "advert")
        async with (stdio_client(stdio_params(db, tmp_path)) as (read, write), ClientSession(read, write) as session):
            await session.initialize()
            await call(session, "remember", content="written through the advertised hub")
        hub = HubClient(f"{base}/mcp")
        assert (await hub.stats()).total == 1
        await hub.aclose()


@pytest.mark.parametrize(("source", "says", "never"), [
    ("advert", "restart this client: with no hub running, its stdio server opens the database itself",
     "MEMORY_HUB_URL"),
    ("MEMORY_HUB_URL", "point MEMORY_HUB_URL at a running hub", "advert"),
    ("argument", "pass the URL of a running hub", "MEMORY_HUB_URL"),
])
async def test_the_hint_of_an_unreachable_hub_names_where_its_url_came_from(
        source: str, says: str, never: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(HubUnavailable) as refused:
        await HubClient(url, source=source).stats()  # type: ignore[arg-type]
    assert says in str(refused.value) and never not in str(refused.value)
    report = await hub_health(url, None, source=source)  # type: ignore[arg-type]
    assert says in report["error"] and never not in report["error"]
