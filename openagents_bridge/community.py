"""Run the developer-support community: the OpenAgents network of `network/network.yaml` and its
agents, joined to a running memory hub; and `Asker`, an agent that posts questions and waits for
the answers (the demo's and the tests' user)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from openagents.agents.worker_agent import WorkerAgent
from openagents.models.event_context import ChannelMessageContext
from openagents.models.network_config import NetworkConfig
from openagents.sdk.network import AgentNetwork

from .agents import COORDINATOR_ID, GENERAL, CommunityOptions, ExpertAgent, content_of
from .coordinator import Coordinator, build_agents
from .memory import MOD_NAME


def network_yaml() -> str:
    """The committed network.yaml (read-only: start a copy, `openagents network start` rewrites it)."""
    return resources.files("openagents_bridge").joinpath("network", "network.yaml").read_text("utf-8")


def network_config(*, port: int = 8700, hub_url: str | None = None, studio: bool = False,
                   serve_mcp: bool = False) -> NetworkConfig:
    """network.yaml's network on 127.0.0.1:`port`, with the memory mod pointed at `hub_url`."""
    data = yaml.safe_load(network_yaml())
    network: dict[str, Any] = data["network"]
    network["port"] = port
    for transport in network["transports"]:
        if transport["type"] == "http":
            transport["config"].update(host="127.0.0.1", port=port, serve_studio=studio, serve_mcp=serve_mcp)
    for mod in network["mods"]:
        if mod["name"] == MOD_NAME and hub_url:
            mod["config"] = {**(mod.get("config") or {}), "hub_url": hub_url}
    network["network_profile"] = {**data["network_profile"], "port": port}
    return NetworkConfig(**network)


@dataclass
class Community:
    network: AgentNetwork
    port: int
    coordinator: Coordinator
    experts: list[ExpertAgent]


@asynccontextmanager
async def running_community(hub_url: str, workspace: Path, *, port: int = 8700,
                            options: CommunityOptions | None = None, studio: bool = False,
                            serve_mcp: bool = False) -> AsyncIterator[Community]:
    """Start the network on 127.0.0.1:`port` (its files in `workspace`) and the agents; the experts
    have registered and loaded their knowledge when this yields. Stops everything on exit."""
    options = options or CommunityOptions()
    network = AgentNetwork.create_from_config(
        network_config(port=port, hub_url=hub_url, studio=studio, serve_mcp=serve_mcp), None, str(workspace))
    if not await network.initialize():
        raise RuntimeError(f"the OpenAgents network did not start on 127.0.0.1:{port} (port in use?)")
    coordinator, experts = build_agents(hub_url, options)
    started: list[WorkerAgent] = []
    try:
        for agent in (*experts, coordinator):
            await agent.async_start(network_host="127.0.0.1", network_port=port)
            started.append(agent)
        yield Community(network, port, coordinator, experts)
    finally:
        for agent in reversed(started):
            await agent.async_stop()
        await network.shutdown()


@dataclass
class Answer:
    question: str
    text: str
    question_id: str
    experts: list[str]
    reused_from: str | None
    seconds: float
    content: dict[str, Any] = field(default_factory=dict)


class Asker(WorkerAgent):
    """Posts questions in `general` and returns the coordinator's replies."""

    def __init__(self, agent_id: str = "developer", poll_interval: float = 0.1) -> None:
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        super().__init__(agent_id=agent_id, interval=poll_interval)

    async def on_channel_post(self, context: ChannelMessageContext) -> None:
        content = content_of(context)
        if context.channel == GENERAL and context.source_id == COORDINATOR_ID:
            future = self._waiting.get(str(content.get("in_reply_to")))
            if future is not None and not future.done():
                future.set_result(content)

    async def ask(self, question: str, timeout: float = 120.0) -> Answer:
        """Post `question` and wait for the coordinator's answer. Raises TimeoutError."""
        ask_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ask_id] = future
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self.post_to_channel(GENERAL, content={"text": question, "ask_id": ask_id})
            content = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(ask_id, None)
        return Answer(question=question, text=str(content.get("text", "")), question_id=str(content["question_id"]),
                      experts=list(content.get("experts") or []), reused_from=content.get("reused_from"),
                      seconds=loop.time() - started, content=content)
