"""Agent side of the memory mod: `get_tools()` returns the memory tools as `AgentTool`s, and
`memory` is a typed `Memory` (a `HubClient`) for Python agents."""

from __future__ import annotations

from typing import Any

from openagents.core.base_mod_adapter import BaseModAdapter
from openagents.models.tool import AgentTool

from mcp_memory_server.hub.client import HubClient

from ..tools import hub_client, memory_tools
from . import MOD_NAME
from .mod import NetworkMod


class AgentAdapter(BaseModAdapter):
    """The memory tools for one agent. The hub is `hub_url`, else the network mod's `hub_url`
    (when the network re-serves the tools over MCP), else MEMORY_HUB_URL / the advertised hub;
    it is resolved at the first call, so an agent starts even while the hub is not up yet. The
    token is `token`, else the mod's, else the agent's own (MEMORY_AGENT_TOKENS), else
    MEMORY_HUB_TOKEN."""

    def __init__(self, hub_url: str | None = None, token: str | None = None,
                 mod_config: dict[str, Any] | None = None, agent_id: str | None = None) -> None:
        super().__init__(MOD_NAME)
        self.config = dict(mod_config or {})
        self._hub_url = hub_url or self.config.get("hub_url")
        self._token = token or self.config.get("token")
        self._agent_id = agent_id
        self._client: HubClient | None = None

    def bind_mod(self, mod: NetworkMod) -> None:
        """Called by the network when it re-serves mod tools over MCP: use the network's hub."""
        self._hub_url = self._hub_url or mod.hub_url
        self._token = self._token or mod.token

    @property
    def memory(self) -> HubClient:
        """The shared memory (the `Memory` protocol). Raises HubUnavailable when no hub is known."""
        if self._client is None:
            self._client = hub_client(self._hub_url, self._token, self._agent_id)
        return self._client

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run one memory tool on the hub; returns its structured result."""
        return await self.memory.call(tool, arguments)

    def get_tools(self) -> list[AgentTool]:
        return memory_tools(self.call)
