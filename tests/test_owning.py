"""update, expiry, resources, prompts and progress through the SDK's own client, over streamable
HTTP (a hub) and stdio (a server process that owns its store), with the notifications a client hears."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.types import (
    ResourceListChangedNotification,
    ResourceUpdatedNotification,
    ServerNotification,
    TextContent,
    TextResourceContents,
)
from pydantic import AnyUrl

from mcp_memory_server.config import Settings
from mcp_memory_server.resources import COMMUNITIES_URI, RESOURCE_NOT_FOUND, memory_uri, recent_uri
from tests.conftest import call, running_hub
from tests.procs import stdio_params

pytestmark = pytest.mark.anyio


class Heard:
    """The resource notifications a client session received."""

    def __init__(self) -> None:
        self.updated: list[str] = []
        self.list_changed = 0
        self._event = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ServerNotification):
            if isinstance(message.root, ResourceUpdatedNotification):
                self.updated.append(str(message.root.params.uri))
            elif isinstance(message.root, ResourceListChangedNotification):
                self.list_changed += 1
            self._event.set()

    async def until(self, heard: Callable[[], bool], seconds: float = 15) -> None:
        with anyio.fail_after(seconds):
            while not heard():
                self._event = anyio.Event()
                await self._event.wait()


class Progress:
    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total))


async def read_json(session: ClientSession, uri: str) -> Any:
    result = await session.read_resource(AnyUrl(uri))
    [content] = result.contents
    assert isinstance(content, TextResourceContents)
    return json.loads(content.text)


async def scenario(session: ClientSession, heard: Heard) -> None:
    """What a client does with update, expiry, resources, prompts and progress, on an empty memory."""
    listed = await session.list_resources()
    assert [str(r.uri) for r in listed.resources] == [COMMUNITIES_URI]
    templates = await session.list_resource_templates()
    assert sorted(t.uriTemplate for t in templates.resourceTemplates) == [
        "memory://communities/{community}/recent", "memory://memories/{id}"]

    train = await call(session, "remember", content="The release train leaves on Thursdays.", community="notes",
                       tags=["release"])
    await heard.until(lambda: heard.list_changed >= 1)  # a community appeared
    assert recent_uri("notes") in [str(r.uri) for r in (await session.list_resources()).resources]
    await session.subscribe_resource(AnyUrl(recent_uri("notes")))

    progress = Progress()
    many = await session.call_tool("remember_many", {"memories": [
        {"content": f"Build {n} of the mobile app passed its checks.", "community": "notes"} for n in range(40)]},
        progress_callback=progress)
    assert not many.isError and progress.seen and progress.seen[-1] == (40, 40)
    await heard.until(lambda: recent_uri("notes") in heard.updated)

    assert (await read_json(session, memory_uri(train["id"])))["tags"] == ["release"]
    assert len((await read_json(session, recent_uri("notes", 5)))["memories"]) == 5
    assert {c["community"]: c["total"] for c in (await read_json(session, COMMUNITIES_URI))["communities"]} == \
        {"notes": 41}

    updated = await call(session, "update", id=train["id"], community="notes", tags=["release", "weekly"])
    assert updated["changed"] == ["tags"]
    assert (await read_json(session, memory_uri(train["id"])))["tags"] == ["release", "weekly"]
    moved = await call(session, "update", id=train["id"], community="notes",
                       content="The release train leaves on Wednesdays.")
    assert moved["previous_id"] == train["id"]
    with pytest.raises(McpError) as gone:
        await session.read_resource(AnyUrl(memory_uri(train["id"])))
    assert gone.value.error.code == RESOURCE_NOT_FOUND and "no memory with id" in gone.value.error.message

    prompts = await session.list_prompts()
    assert sorted(p.name for p in prompts.prompts) == ["answer_from_memory", "remember_this"]
    prompt = await session.get_prompt("answer_from_memory", {"question": "When does the release train leave?",
                                                             "community": "notes"})
    [message] = prompt.messages
    assert isinstance(message.content, TextContent) and f"[{moved['id']}]" in message.content.text
    with pytest.raises(McpError, match="question is required"):
        await session.get_prompt("answer_from_memory", {})

    exported: list[dict[str, Any]] = []
    progress = Progress()
    cursor: str | None = None
    while True:
        page = await session.call_tool("export", {"limit": 15, **({"cursor": cursor} if cursor else {})},
                                       progress_callback=progress)
        assert not page.isError and page.structuredContent is not None
        exported += page.structuredContent["memories"]
        cursor = page.structuredContent["next_cursor"]
        if cursor is None:
            break
    assert len(exported) == 41 and progress.seen[-1] == (41, 41)
    progress = Progress()
    copied = await session.call_tool("import", {"memories": [{**m, "community": "copy"} for m in exported]},
                                     progress_callback=progress)
    assert copied.structuredContent == {"stored": 41, "duplicates": 0, "expired": 0, "checked": 41}
    assert progress.seen and progress.seen[-1] == (41, 41)
    again = await call(session, "import", memories=[{**m, "community": "copy"} for m in exported])
    assert again["stored"] == 0 and again["duplicates"] == 41

    brief = await call(session, "remember", content="The door code today is 4711.", community="notes",
                       ttl_seconds=5)  # long enough to be read before it expires on a loaded host
    expires_at = datetime.fromisoformat((await read_json(session, memory_uri(brief["id"])))["expires_at"])
    await anyio.sleep((expires_at - datetime.now(UTC)).total_seconds() + 0.1)  # nothing to await: the clock
    with pytest.raises(McpError):
        await session.read_resource(AnyUrl(memory_uri(brief["id"])))
    hits = (await call(session, "recall", query="door code", community="notes"))["hits"]
    assert brief["id"] not in [h["id"] for h in hits]
    assert brief["id"] not in [m["id"] for m in (await read_json(session, recent_uri("notes", 100)))["memories"]]
    assert (await call(session, "stats"))["total"] == 82


@asynccontextmanager
async def http_session(url: str, heard: Heard) -> AsyncIterator[ClientSession]:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write, message_handler=heard) as session,
    ):
        await session.initialize()
        yield session


async def test_update_expiry_resources_prompts_and_progress_over_streamable_http(settings: Settings) -> None:
    heard = Heard()
    with running_hub(settings) as hub, anyio.fail_after(180):
        async with http_session(hub.url, heard) as session:
            await scenario(session, heard)


async def test_update_expiry_resources_prompts_and_progress_over_stdio(tmp_path: Path) -> None:
    heard = Heard()
    params = stdio_params(tmp_path / "memory.db", tmp_path, MEMORY_EXPIRY_INTERVAL="0.5")
    with anyio.fail_after(240):
        async with stdio_client(params) as (read, write), \
                ClientSession(read, write, message_handler=heard) as session:
            await session.initialize()
            await scenario(session, heard)


async def test_a_stdio_server_that_joined_a_hub_relays_progress_and_reads_resources_through_it(
        settings: Settings, tmp_path: Path) -> None:
    with running_hub(settings) as hub, anyio.fail_after(240):
        params = stdio_params(tmp_path / "unused.db", tmp_path, MEMORY_HUB_URL=hub.url)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            progress = Progress()
            many = await session.call_tool("remember_many", {"memories": [
                {"content": f"Ticket {n} was closed by the night shift.", "community": "desk"} for n in range(30)]},
                progress_callback=progress)
            assert not many.isError and progress.seen[-1] == (30, 30)  # the hub's notifications, relayed
            assert many.structuredContent is not None
            first = many.structuredContent["results"][0]["id"]
            assert (await read_json(session, memory_uri(first)))["content"] == "Ticket 0 was closed by the night shift."
            assert len((await read_json(session, recent_uri("desk", 7)))["memories"]) == 7
            assert (await read_json(session, COMMUNITIES_URI))["communities"][0]["total"] == 30
            with pytest.raises(McpError) as unknown:
                await session.read_resource(AnyUrl(memory_uri("0" * 32)))
            assert unknown.value.error.code == RESOURCE_NOT_FOUND  # the hub's error, kept across
            progress = Progress()
            page = await session.call_tool("export", {}, progress_callback=progress)
            assert page.structuredContent is not None and len(page.structuredContent["memories"]) == 30
            assert progress.seen[-1] == (30, 30)


async def test_a_subscriber_that_never_reads_delays_no_write_and_changes_are_still_told(
        runtime: Any, client: ClientSession) -> None:
    """The writer tells its watchers (the resources' subscribers) apart from the write: a watcher
    stuck on a client that stopped reading holds back no `remember`, and what changed is still told."""
    told: list[set[str]] = []
    heard = anyio.Event()

    async def stuck(communities: set[str]) -> None:
        told.append(communities)
        heard.set()
        await anyio.sleep_forever()

    runtime.service.writer.watchers.append(stuck)
    with anyio.fail_after(30):
        await call(client, "remember", content="the first write after a watcher got stuck", community="ops")
        await call(client, "remember", content="and a second one behind it", community="docs")
        await heard.wait()
    assert told[0] <= {"ops", "docs"} and "ops" in told[0]
