"""The memory tools for OpenAgents agents: the MCP server's own tools, executed by the hub.

Names, descriptions and JSON schemas come from `mcp_memory_server.server.tool_specs`, the same
declarations the MCP server registers, so an agent sees exactly what an MCP client sees. Every
call goes to the one running memory hub (`HubClient`, MCP over streamable HTTP): agents never
open a store of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from openagents.models.tool import AgentTool

from mcp_memory_server.config import Settings
from mcp_memory_server.errors import HubUnavailable
from mcp_memory_server.hub.advert import find_hub
from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.hub.tokens import hub_token
from mcp_memory_server.server import tool_specs as server_tool_specs

#: The tools the bridge offers (the MCP server's admin tools `stats` and `list_communities` stay MCP-only).
BRIDGE_TOOLS = ("remember", "remember_many", "recall", "route", "forget", "register_expert")


@dataclass(frozen=True)
class ToolSpec:
    """What a model sees of one tool: the MCP server's name, description and input schema."""

    name: str
    description: str
    input_schema: dict[str, Any]


@functools.cache
def tool_specs() -> tuple[ToolSpec, ...]:
    """The bridge tools as the MCP server lists them, in BRIDGE_TOOLS order. Does no I/O."""
    by_name = {tool.name: tool for tool in server_tool_specs(Settings().limits)}
    return tuple(ToolSpec(name, by_name[name].description, by_name[name].parameters) for name in BRIDGE_TOOLS)


def hub_client(hub_url: str | None = None, token: str | None = None, agent_id: str | None = None) -> HubClient:
    """A client of the hub to use (`hub.advert.find_hub`: `hub_url`, else MEMORY_HUB_URL, else the hub
    advertised beside the default database), calling it with `token`, else the agent's own token
    (MEMORY_AGENT_TOKENS), else MEMORY_HUB_TOKEN. Raises HubUnavailable when there is no hub."""
    settings = Settings()
    hub = find_hub(settings, hub_url)
    if hub is None:
        raise HubUnavailable("no memory hub to join: start one with `mcp-memory-server serve --transport "
                             "streamable-http` and set MEMORY_HUB_URL to its /mcp URL")
    return HubClient(hub.url, token if token is not None else hub_token(settings, agent_id),
                     timeout=settings.memory_hub_timeout, source=hub.source)


ToolCall = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def memory_tools(call: ToolCall) -> list[AgentTool]:
    """The bridge tools as OpenAgents `AgentTool`s; `call(name, arguments)` executes one
    (normally `HubClient.call`). A refused call raises the hub's error class."""
    return [_agent_tool(spec, call) for spec in tool_specs()]


def hub_tools(hub_url: str | None = None, token: str | None = None) -> list[AgentTool]:
    """The bridge tools executed by the hub (see `hub_client`)."""
    return memory_tools(hub_client(hub_url, token).call)


def _agent_tool(spec: ToolSpec, call: ToolCall) -> AgentTool:
    async def run(**arguments: Any) -> dict[str, Any]:
        return await call(spec.name, arguments)

    run.__name__ = spec.name
    return AgentTool(name=spec.name, description=spec.description, input_schema=spec.input_schema, func=run)
