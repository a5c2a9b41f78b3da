"""The LLM path: a tool-calling loop with the bridge tools against a local OpenAI-compatible API."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.models import MemoryIn
from openagents_bridge.llm import LLMConfig, LLMError, run_tool_loop
from openagents_bridge.memory.adapter import AgentAdapter
from tests.openai_stub import ANSWER_PREFIX, ChatStub, running_chat_stub

pytestmark = pytest.mark.anyio


@pytest.fixture
def chat() -> Iterator[ChatStub]:
    with running_chat_stub() as stub:
        yield stub


async def test_the_model_calls_recall_on_the_hub_and_answers_from_the_result(hub_url: str, chat: ChatStub) -> None:
    await HubClient(hub_url).remember(MemoryIn(
        content="HNSW with M=16 and efConstruction=200 is our default Milvus index.", community="dev-support",
        kind="knowledge", agent_id="milvus_expert"))
    tools = AgentAdapter(hub_url).get_tools()
    config = LLMConfig(api_key="test-key", base_url=chat.base_url, model="stub-model")

    with anyio.fail_after(60):
        result = await run_tool_loop(config, "You are milvus_expert.", "Question: which Milvus index do we use?",
                                     tools)

    assert result.tool_calls == [("recall", {"query": "which Milvus index do we use?", "k": 2,
                                             "community": "dev-support", "kinds": ["knowledge"]})]
    assert result.answer.startswith(ANSWER_PREFIX) and "efConstruction=200" in result.answer
    first, second = chat.requests
    assert {t["function"]["name"] for t in first["tools"]} == {t.name for t in tools}
    assert first["model"] == "stub-model"
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"


async def test_a_failing_tool_is_reported_to_the_model_not_raised(hub_url: str, chat: ChatStub) -> None:
    config = LLMConfig(api_key="test-key", base_url=chat.base_url)
    tools = AgentAdapter(hub_url).get_tools()
    with anyio.fail_after(60):
        # The stub's recall is valid; wrap the tool so that the hub refuses it (k must be 1-100).
        recall = next(t for t in tools if t.name == "recall")
        original = recall.func

        async def refusing(**arguments: object) -> object:
            return await original(**{**arguments, "k": 0})

        recall.func = refusing
        result = await run_tool_loop(config, "system", "Question: anything?", tools)
    assert "error:" in result.answer and "k" in result.answer


async def test_a_wrong_key_is_an_llm_error(chat: ChatStub) -> None:
    config = LLMConfig(api_key="wrong", base_url=chat.base_url)
    with anyio.fail_after(30), pytest.raises(LLMError, match="401"):
        await run_tool_loop(config, "system", "Question: hi", [])


def test_without_a_key_there_is_no_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert LLMConfig.from_env() is None
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("OPENAI_MODEL", "m")
    assert LLMConfig.from_env() == LLMConfig(api_key="k", base_url="http://127.0.0.1:1/v1", model="m")
