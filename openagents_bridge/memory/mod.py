"""Network side of the memory mod: holds the hub's address and asks agents to load the adapter.

It handles no events: the memory lives in the hub, which agents call directly over MCP.
"""

from __future__ import annotations

from typing import Any

from openagents.core.base_mod import BaseMod

from . import MOD_NAME


class NetworkMod(BaseMod):
    """`config: {hub_url: ..., token: ...}` in network.yaml (both optional)."""

    requires_adapter = True  # agents that join load `adapter.AgentAdapter` and so get the tools
    description = "Shared long-term memory (remember, recall, route, ...) served by the MCP memory hub."
    version = "0.1.0"

    def __init__(self, mod_name: str = MOD_NAME) -> None:
        super().__init__(mod_name)

    @property
    def hub_url(self) -> str | None:
        value: Any = self.config.get("hub_url")
        return str(value) if value else None

    @property
    def token(self) -> str | None:
        value: Any = self.config.get("token")
        return str(value) if value else None
