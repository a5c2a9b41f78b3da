"""The memory tools for OpenAgents agents: the MCP server's own tools, executed by the hub.

Names, descriptions and JSON schemas are read from `mcp_memory_server.server.build_server`, so
an agent sees exactly what an MCP client sees. Every call goes to the one running memory hub
(`HubClient`, MCP over streamable HTTP): agents never open a store of their own.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openagents.models.tool import AgentTool

from mcp_memory_server.config import Settings
from mcp_memory_server.errors import ConfigError, HubUnavailable
from mcp_memory_server.hub import HubClient, discover
from mcp_memory_server.runtime import Runtime
from mcp_memory_server.server import build_server

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
    server = build_server(Runtime(Settings()))
    # FastMCP.list_tools is a coroutine that awaits nothing; running it on a short-lived thread
    # keeps this callable from sync code inside a running event loop (adapters' get_tools()).
    with ThreadPoolExecutor(max_workers=1) as pool:
        listed = pool.submit(asyncio.run, server.list_tools()).result()
    by_name = {tool.name: tool for tool in listed}
    return tuple(ToolSpec(name, by_name[name].description or "", by_name[name].inputSchema) for name in BRIDGE_TOOLS)


def resolve_hub_url(explicit: str | None = None) -> str:
    """The hub to use: `explicit`, else MEMORY_HUB_URL, else the hub advertised beside the default
    Milvus Lite database. Raises HubUnavailable, saying how to start one, when there is none."""
    if explicit:
        return explicit
    settings = Settings()
    url = settings.memory_hub_url or (discover(settings.milvus_uri) if settings.is_lite else None)
    if not url:
        raise HubUnavailable("no memory hub to join: start one with `mcp-memory-server serve --transport "
                             "streamable-http` and set MEMORY_HUB_URL to its /mcp URL")
    return url


def agent_tokens(settings: Settings | None = None) -> dict[str, str]:
    """MEMORY_AGENT_TOKENS as {agent_id: hub token}: the JSON object itself, or the path of a JSON
    or YAML file holding it. Empty when unset. Raises ConfigError saying what is wrong."""
    raw = (settings or Settings()).memory_agent_tokens
    if not raw or not raw.strip():
        return {}
    text, where = raw, "MEMORY_AGENT_TOKENS"
    if not raw.lstrip().startswith("{"):
        path = Path(raw).expanduser()
        try:
            text, where = path.read_text("utf-8"), str(path)
        except OSError as exc:
            raise ConfigError(f"MEMORY_AGENT_TOKENS: cannot read {path} ({exc.strerror}); give a JSON object "
                              '{"agent_id": "token"} or the path of a file holding one') from exc
    try:
        data = yaml.safe_load(text) if where.endswith((".yaml", ".yml")) else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: not valid {'YAML' if where.endswith(('.yaml', '.yml')) else 'JSON'}: "
                          f"{exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                             for k, v in data.items()):
        raise ConfigError(f'{where}: expected an object of agent ids to tokens, like {{"coordinator": "..."}}')
    return dict(data)


def agent_token(agent_id: str, settings: Settings | None = None) -> str | None:
    """The hub token of one agent: its MEMORY_AGENT_TOKENS entry, else MEMORY_HUB_TOKEN."""
    settings = settings or Settings()
    return agent_tokens(settings).get(agent_id, settings.memory_hub_token)


ToolCall = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def memory_tools(call: ToolCall) -> list[AgentTool]:
    """The bridge tools as OpenAgents `AgentTool`s; `call(name, arguments)` executes one
    (normally `HubClient.call`). A refused call raises with the hub's message."""
    return [_agent_tool(spec, call) for spec in tool_specs()]


def hub_tools(hub_url: str | None = None, token: str | None = None) -> list[AgentTool]:
    """The bridge tools executed by the hub at `hub_url` (see `resolve_hub_url`)."""
    client = HubClient(resolve_hub_url(hub_url), token if token is not None else Settings().memory_hub_token)
    return memory_tools(client.call)


def _agent_tool(spec: ToolSpec, call: ToolCall) -> AgentTool:
    async def run(**arguments: Any) -> dict[str, Any]:
        return await call(spec.name, arguments)

    run.__name__ = spec.name
    return AgentTool(name=spec.name, description=spec.description, input_schema=spec.input_schema, func=run)
