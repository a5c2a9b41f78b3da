"""Experts in the memory: registering a profile, and gathering the evidence `route` decides on.

The decision itself is `routing.py`'s (pure scoring); this module reads what it needs from the
store: the experts' profile and skill lines with their vectors, and the memories each expert wrote
that resemble the question, and the background sentences' vectors (`background.py`), embedded
once per process, at the first `route`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import numpy as np

from . import glossary, glossary_vectors
from . import validation as check
from .access import Caller
from .background import BACKGROUND
from .errors import InvalidInput, UnknownCommunity
from .filters import MemoryFilter
from .models import (
    ROUTE_K,
    ExpertProfile,
    IndexedMemory,
    MemoryIn,
    RegisterExpertIn,
    RememberManyIn,
    Routed,
    RouteIn,
)
from .routing import (
    EXPERT_KINDS,
    MAX_EXPERT_LINES,
    PROFILE_KIND,
    SKILL_KIND,
    RoutingPolicy,
    background_fit,
    implied_by,
    implied_knowledge,
    phrases,
    rank_experts,
    read_with,
    similarities,
)

if TYPE_CHECKING:
    from .service import MemoryService


class Expertise:
    """`register_expert` and `route` of a MemoryService."""

    def __init__(self, service: MemoryService, policy: RoutingPolicy) -> None:
        self.service = service
        self.policy = policy
        self._background: list[list[float]] = []
        self._glossary: glossary.Glossary | None = None
        self._definitions: np.ndarray | None = None  # the glossary's definitions, one unit-length row each
        self._implied: dict[tuple[str, ...], dict[str, np.ndarray]] = {}  # profile lines' ids -> implied_by
        self._embedding = anyio.Lock()  # background and definitions embedded once per process, not per caller

    async def register(self, request: RegisterExpertIn, caller: Caller) -> ExpertProfile:
        """Store (or replace) an expert's profile: one memory for the description and one per
        skill, so a question can match a single skill closely. The new lines are stored before the
        old ones are removed, so a failure on the way leaves the previous profile whole."""
        limits = self.service.settings.limits
        agent = caller.agent_id or check.agent_id(request.agent_id, limits)
        name = check.community_name(self.service.community(request.community))
        caller.require(name)
        description = check.content(request.description, limits, "description")
        skill_list = [check.content(s, limits, "skill").strip() for s in request.skills or ()]
        if len(skill_list) > limits.batch - 1:
            raise InvalidInput(f"{len(skill_list)} skills, the limit is {limits.batch - 1}")
        items = [MemoryIn(content=description, community=name, kind=PROFILE_KIND, agent_id=agent,
                          metadata={"skills": skill_list})]
        items += [MemoryIn(content=s, community=name, kind=SKILL_KIND, agent_id=agent) for s in skill_list]
        owner = Caller(agent_id=agent, communities=caller.communities)
        service = self.service
        mine = MemoryFilter(communities=[name], kinds=list(EXPERT_KINDS), agent_ids=[agent])
        old = {m.record.id: m for m in await anyio.to_thread.run_sync(
            lambda: service.store.get_indexed(mine, limit=MAX_EXPERT_LINES))}
        stored = await service.remember_many(RememberManyIn(memories=items), owner)
        ids = [r.id for r in stored.results]  # content hashes: an unchanged line keeps its id
        # A kept line whose kind or metadata changed (the same description, other skills) is replaced in place.
        now = int(time.time() * 1000)
        changed = [service.to_record(item, owner, now) for item, i in zip(items, ids, strict=True)
                   if i in old and (old[i].record.kind, old[i].record.metadata) != (item.kind, item.metadata)]
        if changed:
            indexed, _ = await service.indexer.index(changed, appended=set())
            await service.writer.reindex([old[r.id] for r in changed], indexed)
        if stale := [m for i, m in old.items() if i not in ids]:
            await service.writer.delete(name, stale)
        if changed or stale:
            service.recent.forgot(name)  # the newest memories of the community are read again
        return ExpertProfile(agent_id=agent, community=name, profile_id=ids[0], skills=skill_list)

    async def route(self, request: RouteIn, caller: Caller) -> Routed:
        """The experts of the community best placed to answer the question, judged by how well
        their profile and skills fit it and by the memories they wrote that resemble it (see
        `routing.rank_experts`). Empty when no expert is a confident match."""
        service, limits = self.service, self.service.settings.limits
        question = check.query(request.question, limits)
        k = check.k_or_default(request.k if "k" in request.model_fields_set else None, ROUTE_K, limits)
        name = check.community_name(service.community(request.community))
        caller.require(name)
        if request.community is not None and not await service.exists(name):
            raise UnknownCommunity(f"community {name!r} holds no memories yet, so it has no experts")
        store = service.store
        now = int(time.time() * 1000)
        lines = await anyio.to_thread.run_sync(lambda: store.get_indexed(
            MemoryFilter(communities=[name], kinds=list(EXPERT_KINDS), live_at_ms=now), limit=MAX_EXPERT_LINES))
        experts = sorted({m.record.agent_id for m in lines if m.record.kind == PROFILE_KIND})
        if not experts:
            return Routed(experts=[], community=name)
        lines = [m for m in lines if m.record.agent_id in experts]
        parts = phrases(question, self.policy)

        # apart: in one batch the short phrases would be padded to the question's length
        vectors = await service.embed([question]) + (await service.embed(parts) if parts else [])
        if self.policy.glossary_weight and self._glossary is None:
            await anyio.to_thread.run_sync(self.glossary)  # read once, ~50 ms: not on the event loop
        notes = self.glossary().explain(question) if self.policy.glossary_weight else []
        if notes:  # the names it uses, said in words the embedder knows
            meaning = await service.embed([" ".join(definition for _, definition in notes)])
            vectors[0] = read_with(vectors[0], meaning[0], self.policy)
        background = await self._background_vectors()
        depth = min(16384, max(50, 20 * len(experts)))
        flt = MemoryFilter(communities=[name], agent_ids=experts, exclude_kinds=list(EXPERT_KINDS), live_at_ms=now)
        experience = await anyio.to_thread.run_sync(lambda: store.search_dense(flt, vectors[0], depth))
        # only an expert without memories is judged on what its profile implies (rank_experts)
        bare = set(experts) - {record.agent_id for record, _ in experience}
        implied = implied_knowledge(vectors[0], *(await self._implied_by(lines))) if bare else {}
        # profile and skill lines are few: compare every one with the question and its phrases here
        fits = similarities(vectors, [m.dense for m in lines])
        records = [m.record for m in lines]
        chosen = rank_experts(experts, list(zip(records, fits[0], strict=True)), experience, k, self.policy,
                              background=background_fit(vectors[0], background),
                              phrase_hits=[(text, list(zip(records, row, strict=True)))
                                           for text, row in zip(parts, fits[1:], strict=True)],
                              experience_complete=len(experience) < depth,
                              names=[name for name, _ in notes], implied=implied)
        return Routed(experts=chosen, community=name)

    def glossary(self) -> glossary.Glossary:
        """The shipped glossary and MEMORY_GLOSSARY's names, read at the first call."""
        if self._glossary is None:
            self._glossary = glossary.load(self.service.settings.memory_glossary)
        return self._glossary

    async def _implied_by(self, lines: list[IndexedMemory]) -> tuple[np.ndarray, tuple[str, ...],
                                                                    dict[str, np.ndarray]]:
        """The definitions, their words, and which of them each expert's profile implies
        (`routing.implied_by`), kept for the last few sets of profile lines."""
        if not self.policy.implied_fit:
            return np.zeros((0, 0), dtype=np.float32), (), {}
        texts = self.glossary().meanings
        async with self._embedding:
            if self._definitions is None:
                self._definitions = await glossary_vectors.vectors(texts, self.service.embedder.name,
                                                                   self.service.embed)
        definitions = self._definitions
        key = tuple(m.record.id + m.record.agent_id for m in lines)
        if key not in self._implied:
            if len(self._implied) >= 8:
                self._implied.pop(next(iter(self._implied)))
            found = await anyio.to_thread.run_sync(lambda: implied_by(
                definitions, [(m.record.agent_id, m.dense) for m in lines], self.policy))
            self._implied[key] = found
        return definitions, texts, self._implied[key]

    async def _background_vectors(self) -> list[list[float]]:
        """The background sentences' vectors, embedded at the first call."""
        async with self._embedding:
            if not self._background:
                self._background = await self.service.embed(list(BACKGROUND))
        return self._background
