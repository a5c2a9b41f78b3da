"""The reads the web view uses (browse.py, recent.py), on the real service over Milvus Lite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_memory_server.access import Caller
from mcp_memory_server.errors import Forbidden, InvalidInput
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import ForgetIn, LatestIn, MemoryIn, MemoryRecord, RegisterExpertIn
from mcp_memory_server.recent import ALL, RecentWrites, Stamps, newest
from mcp_memory_server.service import MemoryService
from mcp_memory_server.store import MemoryStore
from tests.fakes import indexed

pytestmark = pytest.mark.anyio
ALICE = Caller(agent_id="alice", communities=frozenset({"team-a", "shared"}))


def service_of(runtime: Runtime) -> MemoryService:
    assert runtime.service is not None
    return runtime.service


def record(i: int, created_at: int, community: str = "c1", kind: str = "note") -> MemoryRecord:
    return MemoryRecord(f"id-{i:05d}", f"memory {i}", community, kind, [], "writer", created_at, f"h{i}", {})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MemoryStore]:
    opened = MemoryStore(str(tmp_path / "newest.db"), "c", 4, index_type="FLAT")
    opened.open()
    yield opened
    opened.close()


def counting(store: MemoryStore, reads: list[MemoryFilter]) -> Stamps:
    """`store.stamps`, noting each read in `reads`."""
    real = store.stamps

    def stamps(flt: MemoryFilter, limit: int) -> list[tuple[str, int]]:
        reads.append(flt)
        return real(flt, limit)
    return stamps


def test_newest_widens_its_window_until_it_holds_enough_memories_even_years_back(store: MemoryStore) -> None:
    now = 1_800_000_000_000
    year = 365 * 24 * 3_600_000
    records = [record(i, now - 3 * year - i * 1000) for i in range(6)] + [record(99, now - 10)]
    store.insert([indexed(r, [1.0, 0.0, 0.0, 0.0]) for r in records])
    reads: list[MemoryFilter] = []
    got = newest(counting(store, reads), MemoryFilter(communities=["c1"]), 4, now)
    assert got == ["id-00099", "id-00000", "id-00001", "id-00002"]
    assert reads[0].since_ms == now - 3_600_000  # the first read covers the last hour only
    assert 1 < len(reads) <= 7


def test_newest_narrows_a_window_that_holds_more_than_one_read_returns(store: MemoryStore) -> None:
    now = 1_800_000_000_000
    # 60 memories in the last hour, 1 ms apart, stored oldest first: a read of 8 cannot hold the
    # first window, and Milvus Lite returns what was stored first
    records = [record(i, now - 5_000 - i) for i in reversed(range(60))]
    store.insert([indexed(r, [1.0, 0.0, 0.0, 0.0]) for r in records])
    reads: list[MemoryFilter] = []
    got = newest(counting(store, reads), MemoryFilter(communities=["c1"]), 3, now, cap=8)
    assert got == ["id-00000", "id-00001", "id-00002"]
    assert len(reads) <= 16


def test_newest_keeps_a_since_filter_as_its_widest_window(store: MemoryStore) -> None:
    now = 1_800_000_000_000
    records = [record(1, now - 10 * 3_600_000), record(2, now - 20 * 3_600_000)]
    store.insert([indexed(r, [1.0, 0.0, 0.0, 0.0]) for r in records])
    got = newest(store.stamps, MemoryFilter(communities=["c1"], since_ms=now - 15 * 3_600_000), 5, now)
    assert got == ["id-00001"]


def test_a_read_that_raced_a_write_is_not_kept() -> None:
    recent = RecentWrites(3)
    generation = recent.generation("c1")
    recent.wrote([record(1, 10)])  # lands while the read of c1 is in flight
    recent.keep("c1", [record(0, 5)], generation)
    assert recent.cached("c1") is None
    recent.keep("c1", [record(0, 5), record(1, 10)], recent.generation("c1"))
    recent.wrote([record(2, 20), record(3, 30, community="c2")])
    assert [r.id for r in recent.cached("c1") or []] == ["id-00002", "id-00001", "id-00000"]
    recent.wrote([record(4, 40)])
    assert [r.id for r in recent.cached("c1") or []] == ["id-00004", "id-00002", "id-00001"]  # at most 3
    recent.forgot("c1")
    assert recent.cached("c1") is None and recent.cached(ALL) is None


def test_kept_lists_go_stale_after_their_ttl_when_other_processes_may_write() -> None:
    now = [0.0]
    recent = RecentWrites(5, ttl=5.0, clock=lambda: now[0])
    recent.keep("c1", [record(0, 5)], recent.generation("c1"))
    now[0] = 4.9
    assert recent.cached("c1") is not None
    now[0] = 5.1
    assert recent.cached("c1") is None


async def test_latest_lists_the_newest_memories_a_caller_may_read_newest_first(runtime: Runtime) -> None:
    service = service_of(runtime)
    for n, community in enumerate(["team-a", "team-b", "shared", "team-a"]):
        await service.remember(MemoryIn(content=f"note {n} of {community}", community=community, agent_id=f"w{n}"))
    everything = await service.latest(LatestIn(communities=["*"]))
    assert [m.content for m in everything.memories] == ["note 3 of team-a", "note 2 of shared",
                                                         "note 1 of team-b", "note 0 of team-a"]
    assert everything.communities == [ALL]
    mine = await service.latest(LatestIn(communities=["*"]), ALICE)
    assert [m.community for m in mine.memories] == ["team-a", "shared", "team-a"]
    assert mine.communities == ["shared", "team-a"]
    assert [m.content for m in (await service.latest(LatestIn(community="team-a", limit=1), ALICE)).memories] == [
        "note 3 of team-a"]
    with pytest.raises(Forbidden, match="team-b"):
        await service.latest(LatestIn(community="team-b"), ALICE)
    with pytest.raises(InvalidInput, match="limit"):
        await service.latest(LatestIn(community="team-a", limit=0))


async def test_latest_is_kept_true_by_writes_and_forgets_without_reading_the_store_each_time(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    service = service_of(runtime)
    first = await service.remember(MemoryIn(content="first", community="live"))
    reads: list[MemoryFilter] = []
    monkeypatch.setattr(service.store, "stamps", counting(service.store, reads))
    assert [m.content for m in (await service.latest(LatestIn(community="live"))).memories] == ["first"]
    reads_to_fill = len(reads)
    assert reads_to_fill >= 1
    second = await service.remember(MemoryIn(content="second", community="live"))
    for _ in range(3):
        assert [m.id for m in (await service.latest(LatestIn(community="live"))).memories] == [second.id, first.id]
    assert len(reads) == reads_to_fill  # every page view after the first came from memory
    await service.forget(ForgetIn(ids=[second.id], community="live"))
    assert [m.id for m in (await service.latest(LatestIn(community="live"))).memories] == [first.id]


async def test_latest_filtered_by_kind_and_agent_reads_the_store(runtime: Runtime) -> None:
    service = service_of(runtime)
    await service.remember(MemoryIn(content="a question", community="f", kind="question", agent_id="ann"))
    await service.remember(MemoryIn(content="an answer", community="f", kind="answer", agent_id="bo"))
    await service.remember(MemoryIn(content="another answer", community="f", kind="answer", agent_id="ann"))
    answers = await service.latest(LatestIn(community="f", kinds=["answer"]))
    assert [m.content for m in answers.memories] == ["another answer", "an answer"]
    by_ann = await service.latest(LatestIn(community="f", agent_id="ann", kinds=["answer"]))
    assert [m.content for m in by_ann.memories] == ["another answer"]


async def test_memories_by_id_come_only_from_the_community_named(runtime: Runtime) -> None:
    service = service_of(runtime)
    mine = await service.remember(MemoryIn(content="ours", community="team-a"))
    theirs = await service.remember(MemoryIn(content="theirs", community="team-b"))
    found = await service.memories([theirs.id, mine.id, "no-such-id"], "team-a", ALICE)
    assert [m.content for m in found] == ["ours"]
    with pytest.raises(Forbidden):
        await service.memories([theirs.id], "team-b", ALICE)


async def test_experts_lists_each_registered_profile_with_its_skills_in_order(runtime: Runtime) -> None:
    service = service_of(runtime)
    await service.register_expert(RegisterExpertIn(agent_id="db_expert", description="Knows databases.",
                                                   skills=["SQL tuning", "Milvus indexes"], community="help"))
    await service.register_expert(RegisterExpertIn(agent_id="ops_expert", description="Runs clusters.",
                                                   skills=["Kubernetes"], community="help"))
    await service.register_expert(RegisterExpertIn(agent_id="db_expert", description="Knows databases well.",
                                                   skills=["Postgres", "Milvus indexes"], community="help"))
    await service.remember(MemoryIn(content="not an expert line", community="help"))
    listed = await service.experts("help")
    assert [(e.agent_id, e.description, e.skills) for e in listed.experts] == [
        ("db_expert", "Knows databases well.", ["Postgres", "Milvus indexes"]),
        ("ops_expert", "Runs clusters.", ["Kubernetes"])]
    with pytest.raises(Forbidden):
        await service.experts("help", ALICE)
