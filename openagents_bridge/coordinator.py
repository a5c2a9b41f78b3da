"""The coordinator of the developer-support community: receives questions in `general`, answers
at once from a confidently similar past question, or routes them to experts, collects their
answers (with a timeout), merges them and replies. See `agents.py` for the channel protocol."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from openagents.models.event_context import ChannelMessageContext

from mcp_memory_server.models import Hit, MemoryIn, RecallIn, RouteIn

from .agents import (
    COORDINATION,
    COORDINATOR_ID,
    GENERAL,
    CommunityOptions,
    ExpertAgent,
    MemoryAgent,
    content_of,
    expert_channel,
    now,
    question_tag,
)
from .experts import EXPERTS, ExpertSpec

log = logging.getLogger(__name__)


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
        routed = await self.memory.route(RouteIn(question=question, community=community, k=3))
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
        similar = await self.memory.recall(RecallIn(query=question, community=community, kinds=["question"], k=3,
                                                    mode="semantic"))
        for hit in similar.hits:
            old_id = hit.metadata.get("question_id")
            if (hit.dense or 0.0) < self.options.reuse_threshold or not old_id:
                continue
            answers = await self.memory.recall(RecallIn(query=question, community=community, kinds=["answer"],
                                                        agent_id=self.agent_id, tags=[question_tag(str(old_id))],
                                                        k=1))
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
