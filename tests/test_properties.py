"""Hostile input, generated: arbitrary strings in every field that reaches a filter expression or
names a community. Whatever the input, a call either succeeds within the caller's grant or fails
with a MemoryServerError (a tool error) - never another exception, never a hit from another
community, never a write or delete outside the grant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_memory_server.access import Caller
from mcp_memory_server.config import Settings
from mcp_memory_server.errors import MemoryServerError
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import ForgetIn, MemoryIn, RecallIn, RegisterExpertIn, RememberManyIn, RouteIn
from mcp_memory_server.service import MemoryService

GRANTED, OTHER = "alpha", "beta"
MALLORY = Caller(agent_id="mallory", communities=frozenset({GRANTED}))
# Strings aimed at the filter grammar and the grant check, mixed into arbitrary text.
NASTY = ['" or community == "beta', "beta", "*", '\\"', "alpha\" || true || \"", "alpha\n", "alpha\x00",
         "') or 1==1 --", "community in [\"beta\"]", "%s", "{0}", "\\", "\"\"\"", "beta ", "BETA", "béta"]
text = st.one_of(st.sampled_from(NASTY), st.text(max_size=80),
                 st.builds(lambda a, b: a + b, st.sampled_from(NASTY), st.text(max_size=20)))
maybe = st.one_of(st.none(), text)
lists = st.one_of(st.none(), st.lists(text, max_size=4))
# Community arguments hit the granted community often, so that calls also succeed and their results
# are checked, not only refused.
community_arg = st.one_of(st.just(GRANTED), st.just(GRANTED), st.none(), text)
since_arg = st.one_of(st.none(), st.none(), st.just("2020-01-01"), st.just("2020-01-01T00:00:00Z"), text)
label = st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=30))
short_lists = st.one_of(st.none(), st.none(), st.lists(label, max_size=3))
community_lists = st.one_of(st.none(), st.none(), st.lists(st.one_of(st.just(GRANTED), st.just("*"), text), max_size=4))
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BlockingPortal, MemoryService]]:
    """One owner runtime for the module, on an event loop in a background thread."""
    db = Path(tmp_path_factory.mktemp("properties")) / "memory.db"
    runtime = Runtime(Settings(milvus_uri=str(db)))
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(runtime.running(own=True)):
        portal.call(runtime.wait_ready)
        service = runtime.service
        assert service is not None
        portal.call(service.remember_many, RememberManyIn(memories=[
            MemoryIn(content=f"{name} secret number {i} about deploy budget", community=name, tags=[name])
            for name in (GRANTED, OTHER) for i in range(5)]))
        yield portal, service


def rows(service: MemoryService, community: str) -> list[tuple[str, str]]:
    return sorted((r.id, r.agent_id) for r in service.store.get(MemoryFilter(communities=[community]), limit=10_000))


def attempt(portal: BlockingPortal, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return portal.call(lambda: fn(*args, **kwargs))
    except MemoryServerError:
        return None


@SETTINGS
@given(query=text, community=community_arg, communities=community_lists, kinds=short_lists, tags=short_lists,
       agent_id=maybe, since=since_arg,
       mode=st.sampled_from(["hybrid", "semantic", "keyword"]))
def test_recall_never_crashes_and_never_returns_another_communitys_memory(
        hub: tuple[BlockingPortal, MemoryService], query: str, community: str | None,
        communities: list[str] | None, kinds: list[str] | None, tags: list[str] | None,
        agent_id: str | None, since: str | None, mode: str) -> None:
    portal, service = hub
    request = RecallIn(query=query, community=community, communities=communities, k=10, kinds=kinds, tags=tags,
                       agent_id=agent_id, since=since, mode=mode)  # type: ignore[arg-type]
    found = attempt(portal, service.recall, request, MALLORY)
    if found is not None:
        assert {hit.community for hit in found.hits} <= {GRANTED}
        assert set(found.communities) <= {GRANTED}


@SETTINGS
@given(content=text, community=community_arg, kind=text, tags=st.lists(text, max_size=4), agent_id=maybe,
       meta_key=text, meta_value=text)
def test_remember_never_crashes_and_never_writes_outside_the_grant(
        hub: tuple[BlockingPortal, MemoryService], content: str, community: str | None, kind: str,
        tags: list[str], agent_id: str | None, meta_key: str, meta_value: str) -> None:
    portal, service = hub
    before = rows(service, OTHER)
    item = MemoryIn(content=content, community=community, kind=kind, tags=tags, agent_id=agent_id,
                    metadata={meta_key: meta_value})
    done = attempt(portal, service.remember, item, MALLORY)
    if done is not None:
        assert done.community == GRANTED
        stored = service.store.get(MemoryFilter(communities=[GRANTED], ids=[done.id]))
        assert [(r.content, r.agent_id) for r in stored] == [(content, "mallory")]
    assert rows(service, OTHER) == before


@SETTINGS
@given(ids=lists, community=community_arg, kinds=short_lists, tags=short_lists, agent_id=maybe)
def test_forget_never_crashes_and_never_deletes_outside_the_grant(
        hub: tuple[BlockingPortal, MemoryService], ids: list[str] | None, community: str | None,
        kinds: list[str] | None, tags: list[str] | None, agent_id: str | None) -> None:
    portal, service = hub
    before = rows(service, OTHER)
    other_ids = [i for i, _ in before]
    attempt(portal, service.forget, ForgetIn(ids=(ids or []) + other_ids[:2], community=community, kinds=kinds,
                                             tags=tags, agent_id=agent_id), MALLORY)
    assert rows(service, OTHER) == before


@SETTINGS
@given(question=text, community=community_arg)
def test_route_and_expert_registration_stay_inside_the_grant(
        hub: tuple[BlockingPortal, MemoryService], question: str, community: str | None) -> None:
    portal, service = hub
    before = rows(service, OTHER)
    attempt(portal, service.register_expert, RegisterExpertIn(agent_id=question or "x", description=question or "x",
                                                              skills=[question or "x"], community=community), MALLORY)
    routed = attempt(portal, service.route, RouteIn(question=question, community=community), MALLORY)
    if routed is not None:
        assert routed.community == GRANTED
    assert rows(service, OTHER) == before
