"""The developer-support community end to end: a real OpenAgents network on a free loopback port,
the real coordinator and experts, one memory hub shared with MCP stdio clients.

One community serves the whole module (starting it costs ~20 s: the experts load their knowledge).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.models import RecallIn, RegisterExpertIn
from openagents_bridge.agents import COMMUNITY, NO_LLM_NOTE, CommunityOptions, question_tag
from openagents_bridge.community import Asker, Community, running_community
from openagents_bridge.experts import ExpertSpec
from openagents_bridge.llm import LLMConfig
from openagents_bridge.tools import BRIDGE_TOOLS
from tests.conftest import Hub, call, free_port, running_hub
from tests.openai_stub import ANSWER_PREFIX, running_chat_stub
from tests.procs import stdio_params

pytestmark = pytest.mark.anyio

ASK_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def module_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("community")
    with running_hub(Settings(milvus_uri=str(root / "memory.db"))) as hub:
        yield hub


@pytest.fixture(scope="module")
async def community(module_hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Community]:
    with anyio.fail_after(180):
        manager = running_community(module_hub.url, tmp_path_factory.mktemp("network"), port=free_port(),
                                    options=CommunityOptions(answer_timeout=30), serve_mcp=True)
        running = await manager.__aenter__()
    try:
        yield running
    finally:
        await manager.__aexit__(None, None, None)


@pytest.fixture(scope="module")
async def asker(community: Community) -> AsyncIterator[Asker]:
    agent = Asker("developer")
    await agent.async_start(network_host="127.0.0.1", network_port=community.port)
    yield agent
    await agent.async_stop()


async def provenance(hub: Hub, question_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every memory about one question, by kind."""
    found = await HubClient(hub.url).recall(RecallIn(query="question answer", community=COMMUNITY,
                                                     tags=[question_tag(question_id)], k=20))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for hit in found.hits:
        by_kind.setdefault(hit.kind, []).append(hit.model_dump())
    return by_kind


async def test_a_python_question_is_answered_by_the_python_expert_with_provenance(
        asker: Asker, module_hub: Hub) -> None:
    question = "pip install succeeded but import fails with ModuleNotFoundError. Why?"
    answer = await asker.ask(question, ASK_TIMEOUT)

    assert answer.experts == ["python_expert"]
    assert "[python_expert]" in answer.text and NO_LLM_NOTE in answer.text
    assert "interpreter" in answer.text  # the recalled knowledge about pip and python disagreeing
    memories = await provenance(module_hub, answer.question_id)
    (asked,) = memories["question"]
    assert asked["content"] == question and asked["agent_id"] == "developer"
    assert asked["metadata"]["question_id"] == answer.question_id and asked["metadata"]["asked_at"]
    by_agent = {m["agent_id"]: m for m in memories["answer"]}
    assert set(by_agent) == {"python_expert", "coordinator"}
    contribution, final = by_agent["python_expert"], by_agent["coordinator"]
    assert contribution["metadata"]["question_id"] == answer.question_id
    assert contribution["metadata"]["source"] == "memory" and contribution["metadata"]["recalled"]
    assert final["metadata"]["contributions"] == {"python_expert": contribution["id"]}
    assert final["id"] == answer.content["answer_id"]


async def test_a_kubernetes_question_goes_to_the_devops_expert_only(asker: Asker) -> None:
    answer = await asker.ask("My Kubernetes pod is stuck in CrashLoopBackOff. How do I find out why?",
                             ASK_TIMEOUT)
    assert answer.experts == ["devops_expert"]
    assert "[devops_expert]" in answer.text and "[python_expert]" not in answer.text


async def test_a_repeated_question_is_answered_at_once_citing_the_earlier_answer(
        asker: Asker, module_hub: Hub) -> None:
    first = await asker.ask("How do I choose between IVF_FLAT and HNSW indexes in Milvus?", ASK_TIMEOUT)
    again = await asker.ask("How do I choose between IVF_FLAT and HNSW indexes in Milvus?", ASK_TIMEOUT)

    assert first.experts and first.reused_from is None
    assert again.reused_from == first.question_id and again.experts == []
    assert first.question_id in again.text and first.text in again.text
    # No loops: had the coordinator taken its own or the experts' replies for questions (the first
    # reply was posted seconds ago), they would be remembered as questions asked by those agents.
    questions = await HubClient(module_hub.url).recall(RecallIn(query="question", community=COMMUNITY,
                                                                kinds=["question"], k=100))
    assert {hit.agent_id for hit in questions.hits} == {"developer"}


async def test_what_an_agent_remembered_is_recalled_by_an_mcp_stdio_client(
        asker: Asker, module_hub: Hub, tmp_path: Path) -> None:
    answer = await asker.ask("Helm upgrade fails with 'another operation is in progress'. What now?", ASK_TIMEOUT)
    assert answer.experts

    params = stdio_params(tmp_path / "unused.db", tmp_path, MEMORY_HUB_URL=module_hub.url)
    with anyio.fail_after(90):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            found = await call(session, "recall", query="helm upgrade another operation in progress",
                               community=COMMUNITY, kinds=["answer"], tags=[question_tag(answer.question_id)])
    assert {hit["agent_id"] for hit in found["hits"]} == {*answer.experts, "coordinator"}
    assert not (tmp_path / "unused.db").exists()  # the stdio server joined the hub, it opened no store


async def test_what_an_mcp_client_remembered_is_recalled_by_an_agent(
        asker: Asker, community: Community, module_hub: Hub, tmp_path: Path) -> None:
    fact = ("Answer from the platform team: our Milvus cluster zeta-prod keeps its etcd on dedicated SSD nodes; "
            "when zeta-prod Milvus is slow, check etcd disk latency first.")
    params = stdio_params(tmp_path / "unused.db", tmp_path, MEMORY_HUB_URL=module_hub.url)
    with anyio.fail_after(90):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await call(session, "remember", content=fact, community=COMMUNITY, kind="answer",
                       agent_id="claude-desktop")

    expert = community.experts[0]
    with anyio.fail_after(60):
        recalled = await expert.memory.recall(RecallIn(query="zeta-prod etcd", community=COMMUNITY,
                                                       agent_id="claude-desktop"))
    assert [h.content for h in recalled.hits] == [fact]

    answer = await asker.ask("Our zeta-prod Milvus cluster is slow: what should we check first?", ASK_TIMEOUT)
    assert "milvus_expert" in answer.experts
    assert "etcd disk latency" in answer.text  # the expert recalled the MCP client's answer


async def test_an_expert_that_fails_or_stays_silent_does_not_stop_the_answer(
        asker: Asker, community: Community, module_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    coordinator = community.coordinator
    ghost = ExpertSpec(agent_id="ghost_expert", domain="ghost", description="COBOL mainframe batch jobs and JCL.",
                       skills=["COBOL copybooks", "JCL job steps", "mainframe batch scheduling"],
                       knowledge_file="none.jsonl")
    await HubClient(module_hub.url).register_expert(RegisterExpertIn(
        agent_id=ghost.agent_id, description=ghost.description, skills=ghost.skills, community=COMMUNITY))
    monkeypatch.setitem(coordinator.experts, ghost.agent_id, ghost)  # known to the coordinator, never running
    monkeypatch.setattr(coordinator, "options", dataclasses.replace(coordinator.options, answer_timeout=3.0))

    silent = await asker.ask("How do I restart a failed JCL job step in a COBOL batch run?", ASK_TIMEOUT)
    assert "ghost_expert" in silent.experts
    assert "[ghost_expert] did not answer in time." in silent.text

    python_expert = next(e for e in community.experts if e.spec.agent_id == "python_expert")

    async def broken(question: str) -> Any:
        raise RuntimeError("knowledge base offline")

    monkeypatch.setattr(python_expert, "compose", broken)
    failed = await asker.ask("Why does asyncio.run complain that an event loop is already running?", ASK_TIMEOUT)
    assert failed.experts == ["python_expert"]
    assert "[python_expert] could not answer: knowledge base offline" in failed.text


async def test_with_an_llm_an_expert_answers_through_a_tool_calling_loop(
        asker: Asker, community: Community, module_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    devops = next(e for e in community.experts if e.spec.agent_id == "devops_expert")
    with running_chat_stub() as chat:
        llm = LLMConfig(api_key="test-key", base_url=chat.base_url, model="stub-model")
        monkeypatch.setattr(devops, "options", dataclasses.replace(devops.options, llm=llm))
        answer = await asker.ask("How do I write a Dockerfile HEALTHCHECK for a web service?", ASK_TIMEOUT)

    assert answer.experts == ["devops_expert"]
    assert ANSWER_PREFIX in answer.text and NO_LLM_NOTE not in answer.text
    assert len(chat.requests) == 2 and {t["function"]["name"] for t in chat.requests[0]["tools"]} == {
        "recall", "route", "remember"}
    memories = await provenance(module_hub, answer.question_id)
    contribution = next(m for m in memories["answer"] if m["agent_id"] == "devops_expert")
    assert contribution["metadata"]["source"] == "llm"


async def test_an_agent_that_joins_gets_the_memory_tools_from_the_networks_mod(
        asker: Asker, module_hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    # The Asker is a plain WorkerAgent: the network's `openagents_bridge.memory` mod gave it the adapter.
    tools = {t.name: t for t in asker.tools}
    assert set(BRIDGE_TOOLS) <= set(tools)
    monkeypatch.setenv("MEMORY_HUB_URL", module_hub.url)
    with anyio.fail_after(60):
        found = await tools["recall"].execute(query="CrashLoopBackOff", community=COMMUNITY, kinds=["knowledge"], k=1)
    assert found["hits"][0]["agent_id"] == "devops_expert"


async def test_the_network_re_serves_the_memory_tools_over_mcp(community: Community) -> None:
    with anyio.fail_after(60):
        async with (streamable_http_client(f"http://127.0.0.1:{community.port}/mcp") as (read, write, _),
                    ClientSession(read, write) as session):
            await session.initialize()
            listed = {t.name for t in (await session.list_tools()).tools}
            result = await session.call_tool("recall", {"query": "HNSW index parameters", "community": COMMUNITY,
                                                        "agent_id": "milvus_expert", "k": 1})
    assert set(BRIDGE_TOOLS) <= listed
    assert not result.isError and "milvus_expert" in str(result.content)


async def test_when_the_hub_is_unreachable_the_coordinator_says_so(
        asker: Asker, community: Community, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(community.coordinator.memory_adapter, "_client", HubClient(f"http://127.0.0.1:{free_port()}/mcp"))
    answer = await asker.ask("Is anyone there?", ASK_TIMEOUT)
    assert answer.text.startswith("Sorry, I could not handle this question:")
    assert "did not answer" in answer.text and "mcp-memory-server serve" in answer.text
