"""The OpenAgents bridge: the MCP server's tools, for agents, executed by the one running hub."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp.shared.memory import create_connected_server_and_client_session

from mcp_memory_server.config import Settings
from mcp_memory_server.errors import HubUnavailable, InvalidInput, UnknownCommunity
from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import RecallIn
from mcp_memory_server.server import build_server
from openagents_bridge.memory.adapter import AgentAdapter
from openagents_bridge.memory.mod import NetworkMod
from openagents_bridge.tools import BRIDGE_TOOLS, tool_specs
from tests.conftest import Hub

pytestmark = pytest.mark.anyio


async def test_bridge_tools_have_the_mcp_servers_names_descriptions_and_schemas(settings: Settings) -> None:
    # Listing tools needs no open store: the server is not started, so no model loads.
    async with create_connected_server_and_client_session(build_server(Runtime(settings))) as client:
        served = {t.name: t for t in (await client.list_tools()).tools}
    bridged = AgentAdapter("http://127.0.0.1:9/mcp").get_tools()

    assert [t.name for t in bridged] == list(BRIDGE_TOOLS)
    assert {"remember", "remember_many", "recall", "route", "forget", "register_expert"} == set(BRIDGE_TOOLS)
    for tool in bridged:
        assert tool.description == served[tool.name].description
        assert tool.input_schema == served[tool.name].inputSchema
    assert [s.name for s in tool_specs()] == list(BRIDGE_TOOLS)


async def test_an_agents_tool_calls_land_in_the_hubs_memory(hub: Hub) -> None:
    tools = {t.name: t for t in AgentAdapter(hub.url).get_tools()}
    with anyio.fail_after(60):
        stored = await tools["remember"].execute(content="The bridge writes through the hub.", community="bridge",
                                                 kind="fact", agent_id="python_expert")
        found = await HubClient(hub.url).recall(RecallIn(query="who writes through the hub?", community="bridge"))
        batch = await tools["remember_many"].execute(memories=[
            {"content": "First imported note.", "community": "bridge"},
            {"content": "Second imported note.", "community": "bridge"}])
        recalled = await tools["recall"].execute(query="imported note", community="bridge", kinds=["note"])

    assert found.hits[0].id == stored["id"] and found.hits[0].agent_id == "python_expert"
    assert batch["stored"] == 2
    assert {h["content"] for h in recalled["hits"]} == {"First imported note.", "Second imported note."}
    # One store: the hub's. The agent side opened no database of its own.
    assert hub.runtime.service is not None
    assert (await hub.runtime.service.stats()).total == 3


async def test_a_refused_call_raises_the_hubs_error_class_with_its_message(hub_url: str) -> None:
    tools = {t.name: t for t in AgentAdapter(hub_url).get_tools()}
    with anyio.fail_after(60), pytest.raises(InvalidInput, match="content is empty"):
        await tools["remember"].execute(content="   ")
    with anyio.fail_after(60), pytest.raises(UnknownCommunity, match="never-used"):
        await tools["recall"].execute(query="anything", community="never-used")


async def test_without_a_hub_the_tools_say_how_to_start_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MEMORY_HUB_URL", raising=False)
    monkeypatch.setenv("MILVUS_URI", str(tmp_path / "nobody-serves-this.db"))
    tools = {t.name: t for t in AgentAdapter().get_tools()}
    with pytest.raises(HubUnavailable, match="mcp-memory-server serve"):
        await tools["recall"].execute(query="anything")


async def test_an_adapter_loaded_by_the_network_uses_the_mods_hub(hub_url: str) -> None:
    mod = NetworkMod()
    mod.update_config({"hub_url": hub_url})
    adapter = AgentAdapter(mod_config={})  # as the network's MCP tool collector builds it
    adapter.bind_mod(mod)
    with anyio.fail_after(60):
        stored = await adapter.call("remember", {"content": "Reached through the network mod.", "community": "m"})
    assert stored["community"] == "m" and adapter.memory.url == hub_url
