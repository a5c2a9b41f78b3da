"""Expiry: `remember` with `ttl_seconds` or `expires_at`; an expired memory is hidden from every read
at once and purged in the background, through the writer (real Milvus Lite, the in-memory client)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session

from mcp_memory_server.config import Settings
from mcp_memory_server.exchange import ExportIn
from mcp_memory_server.expiry import purge
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.keywords import term_id, tokens
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import LatestIn
from mcp_memory_server.server import build_server
from tests.conftest import call, call_error

pytestmark = pytest.mark.anyio


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def until(moment: str) -> None:
    """Wait for the clock to pass `moment` (what expiry waits for: there is no event to await)."""
    await anyio.sleep(max(0.0, (datetime.fromisoformat(moment) - datetime.now(UTC)).total_seconds()) + 0.05)


async def test_an_expired_memory_is_never_returned_again(client: ClientSession, runtime: Runtime) -> None:
    await call(client, "register_expert", agent_id="dba", description="Knows our Postgres and Milvus setups.",
               community="x")
    moment = soon(6)  # time for three writes and a recall before it, on a loaded host
    doomed = await call(client, "remember", content="The wifi password this week is tulip-42.", community="x",
                        expires_at=moment, agent_id="dba", kind="answer")
    kept = await call(client, "remember", content="The office wifi network is called Orchard.", community="x")
    lonely = await call(client, "remember", content="Temporary note in a community of its own.", community="gone",
                        ttl_seconds=1)
    hits = (await call(client, "recall", query="wifi password", community="x"))["hits"]
    assert doomed["id"] in [h["id"] for h in hits]
    await until(moment)

    service = runtime.service
    assert service is not None
    for mode in ("hybrid", "semantic", "keyword"):
        hits = (await call(client, "recall", query="wifi password tulip", community="x", mode=mode))["hits"]
        assert doomed["id"] not in [h["id"] for h in hits] and kept["id"] in [h["id"] for h in hits], mode
    assert all(doomed["id"] not in m["memory_ids"]
               for m in (await call(client, "route", question="what is the wifi password?", community="x"))["experts"])
    stats = await call(client, "stats")
    assert {c["community"]: c["total"] for c in stats["communities"]} == {"x": 2}  # the profile and `kept`
    assert "gone" not in [c["community"] for c in (await call(client, "list_communities"))["communities"]]
    assert "holds no memories" in await call_error(client, "recall", query="note", community="gone")
    latest = await service.latest(LatestIn(communities=["*"], limit=100))
    assert doomed["id"] not in [m.id for m in latest.memories] and kept["id"] in [m.id for m in latest.memories]
    assert await service.memories([doomed["id"]], "x") == []
    page = await service.export(ExportIn())
    assert doomed["id"] not in [m.id for m in page.memories] and lonely["id"] not in [m.id for m in page.memories]
    with_expired = await service.export(ExportIn(include_expired=True))
    assert {doomed["id"], lonely["id"]} <= {m.id for m in with_expired.memories}
    assert (await call(client, "forget", community="x", kinds=["answer"]))["deleted"] == 0  # the purge's to remove
    assert "no memory with id" in await call_error(client, "update", id=doomed["id"], community="x", kind="note")


async def test_the_purge_deletes_expired_rows_and_reindexes_their_thread(client: ClientSession,
                                                                         runtime: Runtime) -> None:
    await call(client, "remember", content="warm the model up", community="other")
    moment = soon(3)
    thread = [{"content": "We met the vendor about the Quasar license.", "created_at": "2026-03-01T10:00:00Z"},
              {"content": "Temporary: call them back before Friday.", "created_at": "2026-03-01T10:01:00Z",
               "expires_at": moment},
              {"content": "Decision: buy the three-year plan.", "created_at": "2026-03-01T10:02:00Z"}]
    ids = [r["id"] for r in (await call(client, "remember_many", memories=[
        {**m, "community": "p", "thread": "vendor"} for m in thread]))["results"]]
    service = runtime.service
    assert service is not None
    friday = term_id(tokens("Friday")[0])

    def context_of_last() -> dict[int, float]:
        return service.store.get_indexed(MemoryFilter(communities=["p"], ids=[ids[2]]))[0].sparse

    assert friday in context_of_last()
    await until(moment)
    assert await purge(service) == 1
    assert service.store.get(MemoryFilter(communities=["p"])) and \
        ids[1] not in [r.id for r in service.store.get(MemoryFilter(communities=["p"]))]
    assert friday not in context_of_last()  # re-indexed with the vendor meeting as its context again
    assert await purge(service) == 0
    assert {"community": "p", "total": 2, "kinds": {"note": 2}} in (await call(client, "stats"))["communities"]


async def test_the_same_content_after_its_copy_expired_is_stored_again(client: ClientSession,
                                                                       runtime: Runtime) -> None:
    await call(client, "remember", content="warm the model up", community="other")
    moment = soon(2)
    first = await call(client, "remember", content="Standup moved to 9:30 today.", community="s", expires_at=moment)
    await until(moment)
    again = await call(client, "remember", content="Standup moved to 9:30 today.", community="s")
    assert again == {"id": first["id"], "community": "s", "duplicate": False}
    hit = (await call(client, "recall", query="standup time", community="s"))["hits"][0]
    assert hit["id"] == first["id"] and hit["expires_at"] is None
    assert (await call(client, "stats"))["communities"][1]["total"] == 1
    service = runtime.service
    assert service is not None
    assert await purge(service) == 0  # the new memory is not the expired one
    assert (await call(client, "stats"))["communities"][1] == {"community": "s", "total": 1, "kinds": {"note": 1}}


async def test_remember_refuses_an_expiry_it_cannot_honour(client: ClientSession) -> None:
    assert "has already passed" in await call_error(client, "remember", content="x", expires_at="2020-01-01")
    assert "not both" in await call_error(client, "remember", content="x", ttl_seconds=5, expires_at=soon(60))
    assert "ttl_seconds must be" in await call_error(client, "remember", content="x", ttl_seconds=0)
    assert "is not an ISO-8601" in await call_error(client, "remember", content="x", expires_at="tomorrow")
    assert "memory 1: ttl_seconds" in await call_error(client, "remember_many", memories=[
        {"content": "fine"}, {"content": "bad", "ttl_seconds": -3}])
    assert (await call(client, "stats"))["total"] == 0


async def test_the_owner_of_the_store_purges_expired_memories_by_itself(settings: Settings) -> None:
    runtime = Runtime(settings.model_copy(update={"memory_expiry_interval": 0.2}))
    async with runtime.running(own=True):
        await runtime.wait_ready()
        async with create_connected_server_and_client_session(build_server(runtime)) as client:
            await call(client, "remember", content="gone in a second", community="bg", ttl_seconds=1)
            await call(client, "remember", content="here to stay", community="bg")
            service = runtime.service
            assert service is not None
            with anyio.fail_after(30):
                while len(service.store.get(MemoryFilter(communities=["bg"]))) > 1:
                    await anyio.sleep(0.1)  # the background purge runs every 0.2 s
            assert [r.content for r in service.store.get(MemoryFilter(communities=["bg"]))] == ["here to stay"]
