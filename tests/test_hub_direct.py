"""Quick tool calls of a session the hub knows are answered by the hub itself (hub/direct.py), with
the bytes the SDK's path answers, and every refusal the SDK makes of such a request still made."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.direct import DirectCalls
from tests.conftest import Hub
from tests.hub_sessions import ADMIN, ALPHA, BETA, auth_hub, bearer

pytestmark = pytest.mark.anyio

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


class Switch:
    """DirectCalls.answer, counted, and turned off while `on` is False (the call then goes the SDK's way)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = True
        self.answered = 0
        original = DirectCalls.answer

        async def answer(calls: DirectCalls, *args: Any) -> bool:
            if not self.on:
                return False
            done = await original(calls, *args)
            self.answered += done
            return done

        monkeypatch.setattr(DirectCalls, "answer", answer)


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch) -> Switch:
    return Switch(monkeypatch)


@pytest.fixture
def hub(settings: Settings, switch: Switch) -> Iterator[Hub]:
    with auth_hub(settings) as running:
        yield running


@asynccontextmanager
async def session(hub: Hub, token: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A raw HTTP client and the headers of an initialized session opened with `token`."""
    async with httpx.AsyncClient(base_url=hub.base, headers={**MCP_HEADERS, **bearer(token)}, timeout=60) as http:
        opened = await http.post("/mcp", json=INIT)
        headers = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        await http.post("/mcp", headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield http, headers


def call(n: int | str, tool: str, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


async def test_a_known_sessions_quick_calls_get_the_sdks_answers_byte_for_byte(hub: Hub, switch: Switch) -> None:
    async with session(hub, ALPHA) as (http, headers):
        await http.post("/mcp", headers=headers, json=call(2, "remember", content="The deploy freeze starts on "
                                                             "Friday at noon.", community="team-alpha"))
        calls = [
            call(3, "recall", query="when does the deploy freeze start?", community="team-alpha"),
            call("four", "recall", query="deploy freeze", community="team-alpha", mode="keyword", k=3),
            call(5, "stats"), call(6, "list_communities"),
            call(7, "recall", query="freeze", community="team-beta"),  # not granted: a tool error
            call(8, "recall", query="", community="team-alpha"),  # invalid: a tool error naming it
            call(9, "recall", query="freeze", colour="red"),  # an argument recall does not take
            call(10, "no_such_tool"),  # the SDK's own error result
            call(11, "route", question="who knows about deploys?", community="team-alpha"),
        ]
        with anyio.fail_after(120):
            for request in calls:
                switch.on = False
                through_sdk = await http.post("/mcp", headers=headers, json=request)
                switch.on, before = True, switch.answered
                direct = await http.post("/mcp", headers=headers, json=request)
                assert switch.answered == before + 1, request
                assert direct.status_code == through_sdk.status_code == 200
                assert direct.content == through_sdk.content, request
                assert {k: v for k, v in direct.headers.items() if k not in ("date", "server")} == \
                       {k: v for k, v in through_sdk.headers.items() if k not in ("date", "server")}
    answers = [await _json(hub, ALPHA, request) for request in calls[:2]]
    assert "Friday at noon" in answers[0]["result"]["structuredContent"]["hits"][0]["content"]
    assert answers[1]["id"] == "four"


async def _json(hub: Hub, token: str, request: dict[str, Any]) -> dict[str, Any]:
    async with session(hub, token) as (http, headers):
        answer: dict[str, Any] = (await http.post("/mcp", headers=headers, json=request)).json()
        return answer


async def test_the_first_call_of_a_session_teaches_the_hub_the_session(hub: Hub, switch: Switch) -> None:
    async with session(hub, ADMIN) as (http, headers):
        for n in range(3):
            assert (await http.post("/mcp", headers=headers, json=call(n + 2, "stats"))).status_code == 200
        assert switch.answered == 2  # the first went the SDK's way
    async with session(hub, ADMIN) as (http, headers):
        await http.post("/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        await http.post("/mcp", headers=headers, json=call(3, "stats"))
        assert switch.answered == 3  # tools/list taught it


async def test_what_the_sdk_refuses_is_still_refused(hub: Hub, switch: Switch) -> None:
    async with session(hub, ALPHA) as (http, headers):
        await http.post("/mcp", headers=headers, json=call(2, "stats"))  # the session is known now
        assert (await http.post("/mcp", headers=headers, json=call(3, "stats"))).status_code == 200
        answered = switch.answered
        assert answered == 1
        # Another token with this session's id: the SDK's "not found", as for any session of another caller.
        hijack = await http.post("/mcp", headers={**headers, **bearer(BETA)}, json=call(4, "stats"))
        assert hijack.status_code == 404
        unknown = await http.post("/mcp", headers={**headers, "mcp-session-id": "0" * 32}, json=call(5, "stats"))
        assert unknown.status_code == 404
        old = await http.post("/mcp", headers={**headers, "mcp-protocol-version": "1999-01-01"}, json=call(6, "stats"))
        assert old.status_code == 400 and "Unsupported protocol version" in old.text
        rebinding = await http.post("/mcp", headers={**headers, "Host": "evil.example"}, json=call(7, "stats"))
        assert rebinding.status_code == 421
        progress = await http.post("/mcp", headers=headers, json={**call(8, "stats"),
                                                                   "params": {"name": "stats", "arguments": {},
                                                                              "_meta": {"progressToken": "p"}}})
        assert progress.headers["content-type"].startswith("text/event-stream")  # the SDK's stream
        assert switch.answered == answered
        ended = await http.delete("/mcp", headers=headers)
        assert ended.status_code == 200
        after = await http.post("/mcp", headers=headers, json=call(9, "stats"))
        assert after.status_code == 404 and switch.answered == answered
