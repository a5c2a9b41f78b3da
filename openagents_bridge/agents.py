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
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from openagents.agents.worker_agent import WorkerAgent
from openagents.models.event_context import ChannelMessageContext, EventContext

from mcp_memory_server.hub import HubClient
from mcp_memory_server.models import Hit, MemoryIn

from .experts import EXPERTS, ExpertSpec, load_knowledge
from .llm import LLMConfig, LLMError, run_tool_loop
from .memory.adapter import AgentAdapter
from .tools import agent_token

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
        self.memory_adapter = AgentAdapter(hub_url, token=agent_token(agent_id))
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
        profile = await self.memory.register_expert(self.spec.agent_id, self.spec.description, self.spec.skills,
                                                    community)
        if profile.agent_id != self.spec.agent_id:
            log.error("the memory hub registered %s as %r, the agent id of its token: route cannot choose it. Give "
                      "each agent its own token (MEMORY_AGENT_TOKENS)", self.spec.agent_id, profile.agent_id)
        items = [item.model_copy(update={"community": community, "agent_id": self.spec.agent_id,
                                         "kind": "knowledge"}) for item in load_knowledge(self.spec.agent_id)]
        if items:
            await self.memory.remember_many(items)

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
        knowledge = (await self.memory.recall(question, community=community, agent_id=self.spec.agent_id,
                                              kinds=["knowledge"], k=3, mode="semantic")).hits
        history = [h for h in (await self.memory.recall(question, community=community, kinds=["answer"], k=3,
                                                        mode="semantic")).hits if h.score >= 0.5]
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


class Coordinator(MemoryAgent):
    """Receives questions in `general`, routes them to experts and replies with the merged answer."""

    def __init__(self, hub_url: str | None, options: CommunityOptions,
                 experts: Sequence[ExpertSpec] = tuple(EXPERTS.values()), **kwargs: Any) -> None:
        self.experts = {spec.agent_id: spec for spec in experts}
        self._pending: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        super().__init__(COORDINATOR_ID, hub_url, options, **kwargs)

    async def on_channel_post(self, context: ChannelMessageContext) -> None:
        content = content_of(context)
        sender = context.source_id
        if context.channel == GENERAL:
            # Only people's (and outside agents') questions: never our own replies or the experts'.
            if sender == self.agent_id or sender in self.experts or "question_id" in content:
                return
            if context.text.strip():
                message_id = str(content.get("ask_id") or context.message_id)
                self.spawn(self.answer_or_apologise(context.text.strip(), sender, message_id), "a question")
            return
        future = self._pending.get((str(content.get("question_id")), sender))
        if future is not None and not future.done():
            future.set_result(content)

    async def on_channel_mention(self, context: ChannelMessageContext) -> None:
        await self.on_channel_post(context)

    async def answer_or_apologise(self, question: str, asker: str, message_id: str) -> None:
        try:
            await self.handle_question(question, asker, message_id)
        except Exception as exc:  # the asker hears why instead of waiting forever
            log.exception("the coordinator could not handle a question")
            await self.post_to_channel(GENERAL, content={
                "text": f"Sorry, I could not handle this question: {exc}", "question_id": "",
                "in_reply_to": message_id, "experts": [], "error": str(exc)})

    async def handle_question(self, question: str, asker: str, message_id: str) -> None:
        community = self.options.community
        question_id = uuid.uuid4().hex[:12]
        asked_at = now()
        earlier = await self.find_earlier_answer(question)
        await self.memory.remember(MemoryIn(
            content=question, community=community, kind="question", agent_id=asker,
            tags=[question_tag(question_id)],
            metadata={"question_id": question_id, "asked_by": asker, "asked_at": asked_at, "channel": GENERAL,
                      "message_id": message_id}))
        if earlier is not None:
            old_question, old_answer = earlier
            old_id = str(old_question.metadata.get("question_id"))
            text = (f"This was answered before (question {old_id}, {old_answer.created_at[:19]}): "
                    f"\"{old_question.content}\"\n\n{_answer_body(old_answer.content)}")
            await self.reply(question_id, message_id, text, [], {"reused_from": old_id,
                                                                  "cited_answer_id": old_answer.id})
            return
        routed = await self.memory.route(question, community=community, k=3)
        chosen = [m.agent_id for m in routed.experts if m.agent_id in self.experts]
        if not chosen:
            await self.reply(question_id, message_id, "No expert in this community is a confident match for "
                             "this question, and nothing similar was answered before.", [], {})
            return
        decision = ", ".join(f"{m.agent_id} ({m.score:.2f}: {m.reason})" for m in routed.experts)
        await self.post_to_channel(COORDINATION, content={"text": f"[{question_id}] routed to {decision}",
                                                          "question_id": question_id, "experts": chosen})
        answers = await self.ask_experts(question_id, question, chosen)
        text = merge(answers, chosen)
        await self.reply(question_id, message_id, text, chosen, {
            "scores": {m.agent_id: m.score for m in routed.experts},
            "contributions": {e: a.get("answer_id") for e, a in answers.items() if a.get("answer_id")},
            "missing": [e for e in chosen if not answers.get(e, {}).get("answer_id")]}, question=question)

    async def find_earlier_answer(self, question: str) -> tuple[Hit, Hit] | None:
        """A past question similar enough to count as the same, with its final answer."""
        community = self.options.community
        similar = await self.memory.recall(question, community=community, kinds=["question"], k=3, mode="semantic")
        for hit in similar.hits:
            old_id = hit.metadata.get("question_id")
            if hit.score < self.options.reuse_threshold or not old_id:
                continue
            answers = await self.memory.recall(question, community=community, kinds=["answer"],
                                               agent_id=self.agent_id, tags=[question_tag(str(old_id))], k=1)
            if answers.hits and not answers.hits[0].metadata.get("no_answer"):
                return hit, answers.hits[0]
        return None

    async def ask_experts(self, question_id: str, question: str, experts: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Post the question in each expert's channel and wait (bounded) for their answers."""
        loop = asyncio.get_running_loop()
        futures = {e: loop.create_future() for e in experts}
        for expert, future in futures.items():
            self._pending[(question_id, expert)] = future
        try:
            for expert in experts:
                await self.post_to_channel(expert_channel(self.experts[expert]), content={
                    "text": f"[{question_id}] {question}", "question": question,
                    "question_id": question_id, "expert": expert})
            await asyncio.wait(futures.values(), timeout=self.options.answer_timeout)
        finally:
            for expert in experts:
                self._pending.pop((question_id, expert), None)
        return {e: f.result() for e, f in futures.items() if f.done() and not f.cancelled()}

    async def reply(self, question_id: str, message_id: str, text: str, experts: list[str],
                    extra: dict[str, Any], question: str | None = None) -> None:
        """Remember the final answer (agent_id = coordinator) and post it in `general`."""
        metadata = {"question_id": question_id, "experts": experts, "answered_at": now(), **extra}
        if question is not None:
            metadata["question"] = question
        if not experts and "reused_from" not in extra:
            metadata["no_answer"] = True
        stored = await self.memory.remember(MemoryIn(
            content=f"Answer to question {question_id}: {text}", community=self.options.community, kind="answer",
            agent_id=self.agent_id, tags=[question_tag(question_id)], metadata=metadata))
        await self.post_to_channel(GENERAL, content={
            "text": text, "question_id": question_id, "in_reply_to": message_id, "experts": experts,
            "answer_id": stored.id, **{k: v for k, v in extra.items() if k in ("reused_from", "cited_answer_id")}})


def merge(answers: dict[str, dict[str, Any]], chosen: Sequence[str]) -> str:
    parts = []
    for expert in chosen:
        answer = answers.get(expert)
        if answer is None:
            parts.append(f"[{expert}] did not answer in time.")
        elif answer.get("error"):
            parts.append(f"[{expert}] could not answer: {answer['error']}")
        else:
            parts.append(f"[{expert}]\n{answer.get('answer') or answer.get('text', '')}")
    return "\n\n".join(parts)


def _answer_body(remembered: str) -> str:
    prefix = "Answer to question "
    return remembered.split(": ", 1)[1] if remembered.startswith(prefix) and ": " in remembered else remembered


def build_agents(hub_url: str | None, options: CommunityOptions) -> tuple[Coordinator, list[ExpertAgent]]:
    """The coordinator and one agent per expert of `experts.EXPERTS`."""
    experts = [ExpertAgent(spec, hub_url, options) for spec in EXPERTS.values()]
    return Coordinator(hub_url, options), experts
