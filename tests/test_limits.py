"""Every input limit, through the MCP client: over the limit -> a tool error naming it, nothing stored."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session

from mcp_memory_server.config import Limits, Settings
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import RecallIn
from mcp_memory_server.server import build_server
from tests.conftest import call, call_error

pytestmark = pytest.mark.anyio

SMALL = Limits(content_chars=200, query_chars=50, batch=4, tags=3, tag_chars=10, metadata_bytes=100,
               metadata_depth=2, k=10, communities=3, kinds=2)


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[ClientSession]:
    """A client of a server with small limits, and one memory already in community `c1`."""
    runtime = Runtime(Settings(milvus_uri=str(tmp_path / "limits.db"), limits=SMALL))
    async with runtime.running(own=True), \
            create_connected_server_and_client_session(build_server(runtime)) as session:
        await call(session, "remember", content="the reference memory", community="c1")
        yield session


async def stored(session: ClientSession) -> int:
    return int((await call(session, "stats"))["total"])


WRITES: list[tuple[str, dict[str, Any], str]] = [
    ("remember", {"content": "x" * 201}, "201 characters, over the limit of 200"),
    ("remember", {"content": "   "}, "empty"),
    ("remember", {"content": "ok", "tags": ["a", "b", "c", "d"]}, "4 tags given, the limit is 3"),
    ("remember", {"content": "ok", "tags": ["a" * 11]}, "longer than 10"),
    ("remember", {"content": "ok", "metadata": {"blob": "y" * 200}}, "over the limit of 100"),
    ("remember", {"content": "ok", "metadata": {"a": {"b": {"c": 1}}}}, "nested 3 levels deep, the limit is 2"),
    ("remember", {"content": "ok", "community": "x" * 65}, "invalid community name"),
    ("remember", {"content": "ok", "community": "no spaces"}, "invalid community name"),
    ("remember", {"content": "ok", "community": 'a" or community != "b'}, "invalid community name"),
    ("remember", {"content": "ok", "kind": "k" * 65}, "kind"),
    ("remember", {"content": "ok", "agent_id": "z" * 129}, "agent_id"),
    ("remember_many", {"memories": [{"content": f"m{i}"} for i in range(5)]}, "5 memories in one call, the limit is 4"),
    ("remember_many", {"memories": [{"content": "fine"}, {"content": "x" * 201}]}, "memory 1"),
    ("remember_many", {"memories": []}, "at least one"),
    ("register_expert", {"agent_id": "e", "description": "d", "skills": ["s"] * 4}, "the limit is 3"),
    ("forget", {"community": "c1", "ids": ["i"] * 5}, "5 ids in one call, the limit is 4"),
    ("forget", {"community": "c1", "ids": ["x" * 65]}, "is not a memory id"),
    ("forget", {"community": "c1", "kinds": ["a", "b", "c"]}, "3 kinds given, the limit is 2"),
    ("forget", {"community": "c1"}, "forget needs ids"),
]


@pytest.mark.parametrize("tool, args, fragment", WRITES, ids=[f"{t}-{f[:24]}" for t, _, f in WRITES])
async def test_writes_over_a_limit_are_refused_and_store_nothing(small: ClientSession, tool: str,
                                                                 args: dict[str, Any], fragment: str) -> None:
    assert fragment in await call_error(small, tool, **args)
    assert await stored(small) == 1


READS: list[tuple[str, dict[str, Any], str]] = [
    ("recall", {"query": "q" * 51}, "51 characters, over the limit of 50"),
    ("recall", {"query": ""}, "query is empty"),
    ("recall", {"query": "q", "k": 11}, "k must be a whole number from 1 to 10"),
    ("recall", {"query": "q", "k": 0}, "k must be"),
    ("recall", {"query": "q", "communities": ["a", "b", "c", "d"]}, "4 communities given, the limit is 3"),
    ("recall", {"query": "q", "communities": ["c1", "bad name"]}, "invalid community name"),
    ("recall", {"query": "q", "community": "c1", "kinds": ["a", "b", "c"]}, "3 kinds given, the limit is 2"),
    ("recall", {"query": "q", "community": "c1", "tags": ["t"] * 4}, "4 tags given"),
    ("recall", {"query": "q", "community": "c1", "since": "9" * 100}, "not an ISO-8601"),
    ("recall", {"query": "q", "community": "c1", "since": "yesterday"}, "not an ISO-8601"),
    ("recall", {"query": "q", "community": "c1", "agent_id": "a" * 129}, "agent_id"),
    ("route", {"question": "q" * 51, "community": "c1"}, "over the limit of 50"),
    ("route", {"question": "q", "community": "c1", "k": 11}, "k must be"),
]


@pytest.mark.parametrize("tool, args, fragment", READS, ids=[f"{t}-{f[:24]}" for t, _, f in READS])
async def test_reads_over_a_limit_are_refused_with_the_limit_named(small: ClientSession, tool: str,
                                                                   args: dict[str, Any], fragment: str) -> None:
    assert fragment in await call_error(small, tool, **args)


async def test_inputs_at_the_limits_are_accepted(small: ClientSession) -> None:
    await call(small, "remember", content="x" * 200, tags=["a" * 10, "b", "c"], metadata={"a": {"b": 1}},
               community="c" * 64)
    await call(small, "remember_many", memories=[{"content": f"at limit {i}", "community": "c1"} for i in range(4)])
    found = await call(small, "recall", query="q" * 50, communities=["c1", "c" * 64, "c2"], k=10,
                       kinds=["note", "fact"])
    assert len(found["hits"]) == 6
    assert await stored(small) == 6


def test_limits_are_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_MAX_CONTENT_CHARS", "123")
    monkeypatch.setenv("MEMORY_MAX_K", "7")
    monkeypatch.setenv("MEMORY_MAX_REQUEST_BYTES", "2048")
    limits = Settings().limits
    assert (limits.content_chars, limits.k, limits.request_bytes) == (123, 7, 2048)


async def test_default_limits_refuse_an_oversized_memory(client: ClientSession) -> None:
    assert "over the limit of 8000" in await call_error(client, "remember", content="w " * 4001)
    assert (await call(client, "stats"))["total"] == 0


async def test_a_k_limit_below_the_default_k_lowers_the_default_instead_of_refusing_calls(tmp_path: Path) -> None:
    runtime = Runtime(Settings(milvus_uri=str(tmp_path / "k.db"), limits=Limits(k=2)))
    async with runtime.running(own=True), \
            create_connected_server_and_client_session(build_server(runtime)) as session:
        await call(session, "remember_many", memories=[{"content": f"note {i} about caching", "community": "c"}
                                                       for i in range(4)])
        await call(session, "register_expert", agent_id="a", description="caching expert", community="c")
        assert len((await call(session, "recall", query="caching", community="c"))["hits"]) == 2
        assert (await call(session, "route", question="caching question", community="c"))["experts"]
        assert "from 1 to 2, got 3" in await call_error(session, "recall", query="caching", community="c", k=3)
        listed = {t.name: t.inputSchema for t in (await session.list_tools()).tools}
        assert listed["recall"]["properties"]["k"]["default"] == 2
        assert listed["route"]["properties"]["k"]["default"] == 2
        # and the service itself, as the hub and the bridge call it
        assert runtime.service is not None
        assert len((await runtime.service.recall(RecallIn(query="caching", community="c"))).hits) == 2


async def test_the_listed_schemas_show_the_configured_limits(small: ClientSession) -> None:
    listed = {t.name: t.inputSchema for t in (await small.list_tools()).tools}
    recall, route = listed["recall"]["properties"], listed["route"]["properties"]
    assert (recall["k"]["minimum"], recall["k"]["maximum"], recall["k"]["default"]) == (1, SMALL.k, 10)
    assert (route["k"]["minimum"], route["k"]["maximum"], route["k"]["default"]) == (1, SMALL.k, 3)
    assert recall["query"]["maxLength"] == SMALL.query_chars and route["question"]["maxLength"] == SMALL.query_chars
    assert recall["communities"]["maxItems"] == SMALL.communities
    assert recall["kinds"]["maxItems"] == SMALL.kinds and recall["tags"]["maxItems"] == SMALL.tags
    remember = listed["remember"]["properties"]
    assert remember["content"]["maxLength"] == SMALL.content_chars
    assert remember["tags"]["items"]["maxLength"] == SMALL.tag_chars
    assert remember["agent_id"]["maxLength"] == SMALL.agent_id_chars
    assert listed["remember_many"]["properties"]["memories"]["maxItems"] == SMALL.batch
    assert listed["forget"]["properties"]["ids"]["maxItems"] == SMALL.batch
    assert listed["register_expert"]["properties"]["skills"]["maxItems"] == SMALL.batch - 1
    for tool in ("remember", "recall", "route", "forget", "register_expert"):
        pattern = re.compile(listed[tool]["properties"]["community"]["pattern"])
        assert pattern.search("team-alpha") and not pattern.search("team alpha") and not pattern.search("x" * 65)
