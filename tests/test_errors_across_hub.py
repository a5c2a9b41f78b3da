"""An error keeps its class across the hub: a joined stdio server and an OpenAgents agent see
Forbidden, InvalidInput and RateLimited (with its retry_after) as the hub raised them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client

from mcp_memory_server.config import Settings
from mcp_memory_server.errors import ERROR_META_KEY, Forbidden, InvalidInput, RateLimited
from openagents_bridge.memory.adapter import AgentAdapter
from tests.conftest import error_text
from tests.hub_sessions import ALPHA, BETA, auth_hub
from tests.procs import stdio_params

pytestmark = pytest.mark.anyio

GRANTS: dict[str, Any] = {"tokens": {
    ALPHA: {"agent_id": "alice", "communities": ["team-alpha"]},
    BETA: {"agent_id": "batch", "communities": ["team-alpha"], "rate_limit": 1, "burst": 2},
}}


async def test_a_joined_stdio_server_passes_on_the_hubs_error_classes(settings: Settings, tmp_path: Path) -> None:
    with auth_hub(settings, GRANTS) as hub:
        for token, expected in [(ALPHA, "Forbidden"), (BETA, "RateLimited")]:
            params = stdio_params(tmp_path / "unused.db", tmp_path, MEMORY_HUB_URL=hub.url, MEMORY_HUB_TOKEN=token)
            with anyio.fail_after(120):
                async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    if expected == "Forbidden":
                        result = await session.call_tool("recall", {"query": "x", "community": "team-beta"})
                    else:  # a burst of 2: the third call is over the limit
                        for i in range(3):
                            result = await session.call_tool("remember", {"content": f"n{i}",
                                                                          "community": "team-alpha"})
                    assert result.isError
                    wire = (result.meta or {}).get(ERROR_META_KEY)
                    assert wire is not None and wire["type"] == expected, (error_text(result), result.meta)
                    if expected == "RateLimited":
                        assert 0 < wire["retry_after"] <= 60 and "rate limit" in error_text(result)
                    else:
                        assert "team-beta" in error_text(result)


async def test_an_openagents_agent_gets_the_hubs_error_classes(settings: Settings) -> None:
    with auth_hub(settings, GRANTS) as hub:
        alice = {t.name: t for t in AgentAdapter(hub.url, token=ALPHA).get_tools()}
        batch = {t.name: t for t in AgentAdapter(hub.url, token=BETA).get_tools()}
        with anyio.fail_after(60):
            with pytest.raises(Forbidden, match="team-beta"):
                await alice["recall"].execute(query="x", community="team-beta")
            with pytest.raises(InvalidInput, match="k must be"):
                await alice["recall"].execute(query="x", community="team-alpha", k=0)
            with pytest.raises(RateLimited) as limited:
                for i in range(3):
                    await batch["remember"].execute(content=f"n{i}", community="team-alpha")
        assert 0 < limited.value.retry_after <= 60
