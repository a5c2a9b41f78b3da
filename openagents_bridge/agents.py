"""The developer-support community: a coordinator and three experts, sharing one memory.

A question posted in `general` reaches the coordinator, which answers at once from a confidently
similar past question, or asks `route` which experts fit, dispatches the question to their
channels, collects their answers (with a timeout), merges them and replies in `general`. The
question, each expert's contribution and the final answer are remembered with provenance: who
(agent_id), when (created_at, `*_at` metadata) and which question (metadata `question_id`, tag
`question:<id>`).

Protocol on the channels (message `content` fields besides `text`):
- coordinator -> expert channel: `question_id`, `expert`, `question`
- expert -> its channel: `question_id`, `answer_id` (the remembered answer), `source` (llm | memory),
  or `error`
- coordinator -> general: `question_id`, `in_reply_to` (the question's message id), `experts`,
  `reused_from` (the earlier question id, when answered from memory)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from openagents.agents.worker_agent import WorkerAgent
from openagents.models.event_context import ChannelMessageContext, EventContext

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.hub.tokens import hub_token
from mcp_memory_server.models import Hit, MemoryIn, RecallIn, RegisterExpertIn, RememberManyIn

from .experts import ExpertSpec, load_knowledge
from .llm import LLMConfig, LLMError, run_tool_loop
from .memory.adapter import AgentAdapter

log = logging.getLogger(__name__)

COMMUNITY = "dev-support"
COORDINATOR_ID = "coordinator"
GENERAL = "general"
COORDINATION = "coordination"
LLM_TOOLS = ("recall", "route", "remember")  # what an expert's model may use; forget stays with people
NO_LLM_NOTE = "(No LLM configured: this answer lists the memories I recalled, not a generated text.)"


def expert_channel(spec: ExpertSpec) -> str:
    return f"{spec.domain}_channel"


def question_tag(question_id: str) -> str:
    return f"question:{question_id}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def content_of(context: EventContext) -> dict[str, Any]:
    """The structured content of a message (`text` plus the fields of the protocol above)."""
    payload = context.incoming_event.payload
    content = payload.get("content") if isinstance(payload, dict) else None
    return content if isinstance(content, dict) else {}


@dataclass(frozen=True)
class CommunityOptions:
    community: str = COMMUNITY
    answer_timeout: float = 60.0  # how long the coordinator waits for experts
    reuse_threshold: float = 0.9  # cosine similarity above which a past question counts as the same
    llm: LLMConfig | None = None


class MemoryAgent(WorkerAgent):
    """A WorkerAgent with the shared memory: `memory` (typed) and `memory_adapter.get_tools()`
    (the same tools as `AgentTool`s, for a model's tool-calling loop)."""

    def __init__(self, agent_id: str, hub_url: str | None, options: CommunityOptions,
                 poll_interval: float = 0.1) -> None:
        # its own token when it has one (MEMORY_AGENT_TOKENS): the hub stamps the token's agent id on
        # every write, so agents sharing one token would all write as the same agent
        self.memory_adapter = AgentAdapter(hub_url, token=hub_token(Settings(), agent_id), agent_id=agent_id)
        self.options = options
        self._tasks: set[asyncio.Task[None]] = set()
        # interval: how often the runner looks for new events (OpenAgents' default is 1 s per hop).
        super().__init__(agent_id=agent_id, mod_adapters=[self.memory_adapter], interval=poll_interval)

    @property
    def memory(self) -> HubClient:
        return self.memory_adapter.memory

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run `work` beside the event loop of the runner, which handles one event at a time:
        a handler that waited for other agents' messages would never receive them."""
        async def guarded() -> None:
            try:
                await work
            except Exception:  # an uncaught error would end the runner's loop for good
                log.exception("%s failed: %s", self.agent_id, what)

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class ExpertAgent(MemoryAgent):
    """Answers the questions the coordinator posts in its channel, from its memory (and an LLM)."""

    def __init__(self, spec: ExpertSpec, hub_url: str | None, options: CommunityOptions, **kwargs: Any) -> None:
        self.spec = spec
        self.channel = expert_channel(spec)
        super().__init__(spec.agent_id, hub_url, options, **kwargs)

    async def on_startup(self) -> None:
        """Register the profile and load the starter knowledge (idempotent: duplicates are skipped)."""
        community = self.options.community
        profile = await self.memory.register_expert(RegisterExpertIn(
            agent_id=self.spec.agent_id, description=self.spec.description, skills=self.spec.skills,
            community=community))
        if profile.agent_id != self.spec.agent_id:
            log.error("the memory hub registered %s as %r, the agent id of its token: route cannot choose it. Give "
                      "each agent its own token (MEMORY_AGENT_TOKENS)", self.spec.agent_id, profile.agent_id)
        items = [item.model_copy(update={"community": community, "agent_id": self.spec.agent_id,
                                         "kind": "knowledge"}) for item in load_knowledge(self.spec.agent_id)]
        if items:
            await self.memory.remember_many(RememberManyIn(memories=items))

    async def on_channel_post(self, context: ChannelMessageContext) -> None:
        content = content_of(context)
        if (context.channel != self.channel or context.source_id != COORDINATOR_ID
                or content.get("expert") != self.spec.agent_id or not content.get("question_id")):
            return
        question = str(content.get("question") or context.text)
        self.spawn(self.answer(str(content["question_id"]), question), f"answering {content['question_id']}")

    async def answer(self, question_id: str, question: str) -> None:
        try:
            text, source, recalled = await self.compose(question)
            stored = await self.memory.remember(MemoryIn(
                content=f"Q: {question}\nA ({self.spec.agent_id}): {text}", community=self.options.community,
                kind="answer", agent_id=self.spec.agent_id, tags=[question_tag(question_id), self.spec.domain],
                metadata={"question_id": question_id, "question": question, "source": source,
                          "recalled": recalled, "answered_at": now()}))
        except Exception as exc:  # tell the coordinator at once instead of letting it time out
            log.exception("%s could not answer %s", self.spec.agent_id, question_id)
            await self.post_to_channel(self.channel, content={
                "text": f"[{question_id}] {self.spec.agent_id} could not answer: {exc}",
                "question_id": question_id, "error": str(exc)})
            return
        await self.post_to_channel(self.channel, content={
            "text": f"[{question_id}] {text}", "answer": text, "question_id": question_id,
            "answer_id": stored.id, "source": source})

    async def compose(self, question: str) -> tuple[str, str, list[str]]:
        """(answer, source, ids of the memories used). Recalls its own knowledge and the
        community's earlier answers first; with an LLM, the model may recall more itself."""
        community = self.options.community
        knowledge = (await self.memory.recall(RecallIn(query=question, community=community, agent_id=self.spec.agent_id,
                                                       kinds=["knowledge"], k=3, mode="semantic"))).hits
        history = [h for h in (await self.memory.recall(RecallIn(query=question, community=community, kinds=["answer"],
                                                                 k=3, mode="semantic"))).hits
                   if (h.dense or 0.0) >= 0.5]  # cosine: an earlier answer to a close question
        recalled = [h.id for h in (*knowledge, *history)]
        if self.options.llm is None:
            return from_memories(knowledge, history), "memory", recalled
        tools = [t for t in self.memory_adapter.get_tools() if t.name in LLM_TOOLS]
        system = (f"You are {self.spec.agent_id} in a developer-support community. {self.spec.description} "
                  f"Answer the developer's question concisely and concretely. The shared memory "
                  f"(community {community!r}) holds your knowledge and earlier answers: use the recall tool "
                  f"when what you were given is not enough.")
        user = f"Question: {question}\n\nWhat you recalled:\n{bullets(knowledge + history) or '- nothing'}"
        try:
            result = await run_tool_loop(self.options.llm, system, user, tools)
        except LLMError as exc:
            log.warning("%s: LLM failed (%s); answering from memory", self.spec.agent_id, exc)
            return from_memories(knowledge, history), "memory", recalled
        return result.answer or from_memories(knowledge, history), "llm", recalled


def from_memories(knowledge: Sequence[Hit], history: Sequence[Hit]) -> str:
    parts = [NO_LLM_NOTE]
    parts.append("From my knowledge:\n" + (bullets(knowledge) or "- nothing relevant stored"))
    if history:
        parts.append("From earlier answers in this community:\n" + bullets(history[:1]))
    return "\n".join(parts)


def bullets(hits: Sequence[Hit], width: int = 400) -> str:
    lines = []
    for hit in hits:
        text = " ".join(hit.content.split())
        lines.append(f"- {text if len(text) <= width else text[: width - 1] + '…'}")
    return "\n".join(lines)
