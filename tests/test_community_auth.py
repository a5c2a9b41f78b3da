"""The developer-support community on a hub that requires tokens: each agent acts with its own
token (MEMORY_AGENT_TOKENS), so the hub's identities match the agents and provenance holds. The
hub's token file and the agents' tokens are the example files, as the README tells users to run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_memory_server.config import Settings
from mcp_memory_server.errors import ConfigError
from mcp_memory_server.hub.auth import hub_middleware
from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.hub.tokens import Tokens, agent_tokens, hub_token
from mcp_memory_server.models import RecallIn
from openagents_bridge.agents import COMMUNITY, COORDINATOR_ID, CommunityOptions, question_tag
from openagents_bridge.community import Asker, Community, running_community
from openagents_bridge.experts import EXPERTS
from tests.conftest import Hub, free_port, running_hub

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dev_support_community"
HUB_TOKENS = EXAMPLE / "hub-tokens.json"
AGENT_TOKENS = EXAMPLE / "agent-tokens.json"
# the human developer's token (an MCP client of the community): reads what the agents wrote
DEVELOPER = next(t for t, g in json.loads(HUB_TOKENS.read_text())["tokens"].items() if g["agent_id"] == "developer")


@contextmanager
def example_hub(root: Path) -> Iterator[Hub]:
    tokens = Tokens.from_settings(Settings(memory_auth_file=str(HUB_TOKENS)))
    with running_hub(Settings(milvus_uri=str(root / "memory.db")),
                     middleware=hub_middleware(tokens)) as hub:
        yield hub


def test_the_example_files_give_every_agent_its_own_token_granted_the_community() -> None:
    grants = json.loads(HUB_TOKENS.read_text())["tokens"]
    agents = json.loads(AGENT_TOKENS.read_text())
    assert set(agents) == {COORDINATOR_ID, *EXPERTS}
    for agent, token in agents.items():
        assert grants[token] == {"agent_id": agent, "communities": [COMMUNITY]}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def module_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with example_hub(tmp_path_factory.mktemp("community-auth")) as hub:
        yield hub


@pytest.fixture(scope="module")
async def community(module_hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Community]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MEMORY_AGENT_TOKENS", str(AGENT_TOKENS))
        env.delenv("MEMORY_HUB_TOKEN", raising=False)
        with anyio.fail_after(180):
            manager = running_community(module_hub.url, tmp_path_factory.mktemp("network"), port=free_port(),
                                        options=CommunityOptions(answer_timeout=30))
            running = await manager.__aenter__()
    try:
        yield running
    finally:
        await manager.__aexit__(None, None, None)


async def test_with_a_token_per_agent_routing_and_provenance_hold_on_an_authenticated_hub(
        community: Community, module_hub: Hub) -> None:
    reader = HubClient(module_hub.url, DEVELOPER)
    profiles = await reader.recall(RecallIn(query="expert profile", community=COMMUNITY, kinds=["expert_profile"],
                                            k=10))
    assert sorted(h.agent_id for h in profiles.hits) == sorted(EXPERTS)  # not all under one identity

    asker = Asker("developer")
    await asker.async_start(network_host="127.0.0.1", network_port=community.port)
    try:
        answer = await asker.ask("How do I deploy Milvus on Kubernetes with Helm?", 90)
    finally:
        await asker.async_stop()
    assert set(answer.experts) == {"milvus_expert", "devops_expert"}
    found = await reader.recall(RecallIn(query="question answer", community=COMMUNITY,
                                         tags=[question_tag(answer.question_id)], k=20))
    by_kind: dict[str, list[Any]] = {}
    for hit in found.hits:
        by_kind.setdefault(hit.kind, []).append(hit)
    (asked,) = by_kind["question"]
    # the hub stamps the writer's identity (the coordinator wrote it); who asked stays in metadata
    assert asked.agent_id == COORDINATOR_ID and asked.metadata["asked_by"] == "developer"
    assert sorted(h.agent_id for h in by_kind["answer"]) == sorted([COORDINATOR_ID, *answer.experts])


def test_the_demo_joins_a_hub_with_tokens_as_the_readme_shows(tmp_path: Path) -> None:
    with example_hub(tmp_path / "hub") as hub:
        env = {**os.environ, "MEMORY_AGENT_TOKENS": str(AGENT_TOKENS), "MEMORY_HUB_TOKEN": DEVELOPER}
        for name in ("MEMORY_HUB_URL", "OPENAI_API_KEY", "MILVUS_URI"):
            env.pop(name, None)
        done = subprocess.run([sys.executable, "-m", "openagents_bridge.demo", "--hub-url", hub.url,
                               "--port", str(free_port()), "--workdir", str(tmp_path / "demo")],
                              env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "experts: milvus_expert, devops_expert" in done.stdout
    assert "registered" not in done.stderr  # no agent was registered under another agent's identity
    # the stdio client (developer's token) recalls the question and the answers, each by its writer
    recalled = done.stdout.split("recalls what the agents remembered:")[1]
    assert "answer   by python_expert" in recalled and "answer   by coordinator" in recalled


def test_agent_tokens_come_from_json_a_file_or_fall_back_to_the_hub_token(tmp_path: Path) -> None:
    inline = Settings(memory_agent_tokens=json.dumps({"coordinator": "c-token"}), memory_hub_token="shared")
    assert agent_tokens(inline) == {"coordinator": "c-token"}
    assert hub_token(inline, "coordinator") == "c-token" and hub_token(inline, "python_expert") == "shared"
    assert hub_token(Settings(), "python_expert") is None

    (tmp_path / "tokens.yaml").write_text("python_expert: p-token\ndevops_expert: d-token\n")
    (tmp_path / "tokens.json").write_text(json.dumps({"milvus_expert": "m-token"}))
    assert agent_tokens(Settings(memory_agent_tokens=str(tmp_path / "tokens.yaml")))["devops_expert"] == "d-token"
    assert agent_tokens(Settings(memory_agent_tokens=str(tmp_path / "tokens.json"))) == {"milvus_expert": "m-token"}


@pytest.mark.parametrize(("value", "fragment"), [
    ("/nonexistent/tokens.json", "cannot read /nonexistent/tokens.json"),
    ('{"coordinator": ', "not valid JSON"),
    ('{"coordinator": 42}', "expected an object of agent ids to tokens"),
    ('{"coordinator": " "}', "expected an object of agent ids to tokens"),
])
def test_bad_agent_tokens_are_refused_with_the_reason(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        agent_tokens(Settings(memory_agent_tokens=value))
