"""Bad input gets a tool error a model can act on; nothing is half-written; the server keeps serving."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import ClientSession

from mcp_memory_server.errors import ERROR_META_KEY
from tests.conftest import call, call_error, error_text

pytestmark = pytest.mark.anyio


async def total(client: ClientSession) -> int:
    return int((await call(client, "stats"))["total"])


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("remember", {"content": ""}, "content is empty"),
        ("remember", {"content": "   \n "}, "content is empty"),
        ("remember", {"content": "x" * 8001}, "over the limit of 8000"),
        ("remember", {"content": "ok", "community": "no spaces allowed"}, "invalid community name"),
        ("remember", {"content": "ok", "community": "a" * 65}, "invalid community name"),
        ("remember", {"content": "ok", "community": "x\" or 1==1"}, "invalid community name"),
        ("remember", {"content": "ok", "kind": ""}, "kind is empty"),
        ("remember", {"content": "ok", "tags": [f"t{i}" for i in range(17)]}, "17 tags given"),
        ("remember", {"content": "ok", "tags": ["x" * 65]}, "longer than 64"),
        ("remember", {"content": "ok", "metadata": {"blob": "y" * 9000}}, "over the limit of 8192"),
        ("remember", {"content": "ok", "metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}},
         "nested 7 levels"),
        ("remember", {"content": "ok", "metadata": "not an object"}, "metadata"),
        # a trailing newline is not a look-alike of an existing community: refused
        ("remember", {"content": "ok", "community": "default\n"}, "invalid community name"),
        ("recall", {"query": "x", "community": "default\n"}, "invalid community name"),
        ("recall", {"query": "x", "communities": ["default\n"]}, "invalid community name"),
        ("forget", {"community": "default\n", "ids": ["x"]}, "invalid community name"),
        # an empty community is not "the default": refused
        ("remember", {"content": "ok", "community": ""}, "invalid community name"),
        ("remember_many", {"memories": [{"content": "ok", "community": ""}]}, "invalid community name"),
        ("recall", {"query": "x", "community": ""}, "invalid community name"),
        ("recall", {"query": "x", "communities": []}, "communities is empty"),
        ("route", {"question": "x", "community": ""}, "invalid community name"),
        ("forget", {"community": "", "ids": ["x"]}, "invalid community name"),
        ("register_expert", {"agent_id": "a", "description": "d", "community": ""}, "invalid community name"),
        ("recall", {"query": ""}, "query is empty"),
        ("recall", {"query": "q" * 2001}, "over the limit of 2000"),
        ("recall", {"query": "x", "k": 0}, "k must be a whole number from 1 to 100"),
        ("recall", {"query": "x", "k": 101}, "k must be a whole number from 1 to 100"),
        ("recall", {"query": "x", "k": "ten"}, "k"),
        ("recall", {"query": "x", "mode": "fuzzy"}, "mode"),
        ("recall", {"query": "x", "community": "never-used"}, "holds no memories yet"),
        ("recall", {"query": "x", "communities": ["never-a", "never-b"]}, "none of the communities"),
        ("recall", {"query": "x", "community": "a", "communities": ["b"]}, "either community or communities"),
        ("recall", {"query": "x", "since": "last tuesday"}, "not an ISO-8601 date"),
        ("route", {"question": ""}, "query is empty"),
        ("route", {"question": "x", "k": 0}, "k must be"),
        ("forget", {}, "forget needs ids"),
        ("forget", {"community": "bad name!", "ids": ["x"]}, "invalid community name"),
        ("register_expert", {"agent_id": "", "description": "d"}, "agent_id is empty"),
        ("register_expert", {"agent_id": "a", "description": ""}, "description is empty"),
    ],
)
async def test_bad_input_is_a_tool_error_and_stores_nothing(
    client: ClientSession, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    await call(client, "remember", content="baseline memory")
    before = await total(client)
    message = await call_error(client, tool, **arguments)
    assert expected in message, message
    assert await total(client) == before
    # the server keeps serving
    assert (await call(client, "recall", query="baseline"))["hits"][0]["content"] == "baseline memory"


async def test_one_bad_item_fails_the_whole_batch_and_names_it(client: ClientSession) -> None:
    memories = [{"content": f"good {i}"} for i in range(5)] + [{"content": ""}] + [{"content": "good 6"}]
    message = await call_error(client, "remember_many", memories=memories)
    assert "memory 5" in message and "content is empty" in message
    assert (await call(client, "stats"))["total"] == 0


async def test_a_batch_over_the_limit_is_refused(client: ClientSession) -> None:
    message = await call_error(client, "remember_many", memories=[{"content": f"m{i}"} for i in range(513)])
    assert "limit is 512" in message
    assert (await call(client, "stats"))["total"] == 0


async def test_unknown_fields_in_a_batch_item_are_refused(client: ClientSession) -> None:
    message = await call_error(client, "remember_many", memories=[{"content": "x", "colour": "red"}])
    assert "colour" in message


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("recall", {"query": "x", "k": "ten"}, "k: should be a valid integer"),
        ("recall", {"query": 5}, "query: should be a valid string, got 5"),
        ("recall", {"query": "x", "mode": "fuzzy"}, "mode: should be 'hybrid', 'semantic' or 'keyword', got 'fuzzy'"),
        ("recall", {"query": "x", "colour": "red"}, "unknown argument 'colour': recall takes query, community"),
        ("stats", {"verbose": True}, "unknown argument 'verbose': stats takes no arguments"),
        ("remember", {}, "content: required"),
        ("remember", {"content": "x", "tags": "a,b"}, "tags: should be a valid list"),
        ("remember_many", {"memories": [{"content": "x", "colour": "red"}]}, "memories[0].colour: unknown argument"),
    ],
)
async def test_wrong_arguments_are_one_short_line_naming_the_argument(
    client: ClientSession, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    result = await client.call_tool(tool, arguments)
    assert result.isError
    message = error_text(result)
    assert expected in message, message
    assert "\n" not in message and "pydantic" not in message and "http" not in message, message
    assert (result.meta or {})[ERROR_META_KEY]["type"] == "InvalidInput"
