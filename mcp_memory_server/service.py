"""MemoryService: remember, recall, route, forget. Knows nothing of MCP or OpenAgents.

Every method validates its input completely before it writes anything, runs blocking work
(embedding, Milvus) in worker threads, and raises only `errors.MemoryServerError` subclasses
for conditions a caller can act on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import anyio.to_thread

from . import validation as check
from .access import ALL_COMMUNITIES, ANYONE, Caller
from .config import RECALL_K, ROUTE_K, Settings
from .embeddings import Embedder
from .errors import Forbidden, InvalidInput, UnknownCommunity
from .filters import MemoryFilter
from .models import (
    CommunityStats,
    ExpertProfile,
    Forgotten,
    Hit,
    MemoryIn,
    Recalled,
    Remembered,
    RememberedMany,
    Routed,
    SearchMode,
    Stats,
)
from .routing import (
    EXPERT_KINDS,
    MAX_EXPERT_LINES,
    PROFILE_KIND,
    SKILL_KIND,
    RoutingPolicy,
    phrases,
    rank_experts,
    similarities,
)
from .store import MemoryRecord, MemoryStore


def memory_id(community: str, content: str) -> str:
    """Stable id: the same content in the same community always gets the same id, so a retried
    write finds the first one instead of storing twice."""
    return hashlib.sha256(f"{community}\x00{content}".encode()).hexdigest()[:32]


class MemoryService:
    """The memory's verbs over one store and one embedder. Constructing it does no I/O."""

    def __init__(self, settings: Settings, store: MemoryStore, embedder: Embedder,
                 routing: RoutingPolicy | None = None) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.routing = routing or RoutingPolicy()
        self._limits = settings.limits
        self._write_lock = anyio.Lock()
        self._pending: list[_PendingWrite] = []
        self._known: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self.store.open)

    async def warm_up(self) -> None:
        await anyio.to_thread.run_sync(self.embedder.warm_up)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.store.close)

    # -- writes ----------------------------------------------------------------------------

    async def remember(self, item: MemoryIn, caller: Caller = ANYONE) -> Remembered:
        """Store one memory; see `remember_many`."""
        return (await self.remember_many([item], caller)).results[0]

    async def remember_many(self, items: Sequence[MemoryIn], caller: Caller = ANYONE) -> RememberedMany:
        """Store memories, embedding them in batches. All items are validated before anything is
        written; a bad item fails the whole call. Identical content already in the same community
        is not stored again: its existing id comes back with `duplicate=True`."""
        if not items:
            raise InvalidInput("nothing to remember: pass at least one memory")
        if len(items) > self._limits.batch:
            raise InvalidInput(f"{len(items)} memories in one call, the limit is {self._limits.batch}: "
                               "send them in several calls")
        now = int(time.time() * 1000)
        records = [self._record(item, caller, now, position=i if len(items) > 1 else None)
                   for i, item in enumerate(items)]
        ids = [r.id for r in records]
        communities = sorted({r.community for r in records})

        existing = await anyio.to_thread.run_sync(self.store.existing_ids, communities, ids)
        fresh: dict[str, MemoryRecord] = {}
        for record in records:
            if record.id not in existing and record.id not in fresh:
                fresh[record.id] = record
        vectors = await anyio.to_thread.run_sync(self.embedder.embed, [r.content for r in fresh.values()])
        inserted = await self._commit(list(zip(fresh.values(), vectors, strict=True)))
        self._known.update(communities)
        results: list[Remembered] = []
        claimed: set[str] = set()
        for record in records:
            new = record.id in inserted and record.id not in claimed
            claimed.add(record.id)
            results.append(Remembered(id=record.id, community=record.community, duplicate=not new))
        return RememberedMany(results=results, stored=len(inserted), duplicates=len(records) - len(inserted))

    async def _commit(self, rows: list[tuple[MemoryRecord, list[float]]]) -> set[str]:
        """Insert the rows that are not stored yet; return the ids this call inserted.

        Group commit: writes that arrive while another is being committed wait for the lock and are
        then committed together, with one existence check and one insert (on Lite, one flush) for
        all of them. The check under the lock also catches the same content written concurrently.
        """
        if not rows:
            return set()
        write = _PendingWrite(rows)
        self._pending.append(write)
        async with self._write_lock:
            if not write.done:
                batch, self._pending = self._pending, []
                # Shielded: the batch holds other callers' writes, and the insert cannot be undone.
                with anyio.CancelScope(shield=True):
                    await self._commit_batch(batch)
        if write.error is not None:
            raise write.error
        return write.inserted

    async def _commit_batch(self, batch: list[_PendingWrite]) -> None:
        ids = [record.id for write in batch for record, _ in write.rows]
        communities = sorted({record.community for write in batch for record, _ in write.rows})
        try:
            claimed = await anyio.to_thread.run_sync(self.store.existing_ids, communities, ids)
            records: list[MemoryRecord] = []
            vectors: list[list[float]] = []
            for write in batch:
                for record, vector in write.rows:
                    if record.id not in claimed:
                        claimed.add(record.id)
                        write.inserted.add(record.id)
                        records.append(record)
                        vectors.append(vector)
            await anyio.to_thread.run_sync(self.store.insert, records, vectors)
        except Exception as exc:  # every write of the batch failed with it
            for write in batch:
                write.error, write.inserted = exc, set()
        finally:
            for write in batch:
                write.done = True

    def _record(self, item: MemoryIn, caller: Caller, now: int, position: int | None) -> MemoryRecord:
        where = f"memory {position}: " if position is not None else ""
        try:
            community = check.community_name(item.community or self.settings.memory_default_community)
            caller.require(community)
            text = check.content(item.content, self._limits)
            record = MemoryRecord(
                id=memory_id(community, text),
                content=text,
                community=community,
                kind=check.kind(item.kind, self._limits),
                tags=check.tags(item.tags, self._limits),
                agent_id=caller.agent_id or check.agent_id(item.agent_id or "anonymous", self._limits),
                created_at=now,
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
                metadata=check.metadata(item.metadata, self._limits),
            )
        except (InvalidInput, Forbidden) as exc:
            raise type(exc)(f"{where}{exc}") from exc
        return record

    async def register_expert(self, agent_id: str, description: str, skills: Sequence[str] = (),
                              community: str | None = None, caller: Caller = ANYONE) -> ExpertProfile:
        """Store (or replace) an expert's profile: one memory for the description and one per
        skill, so a question can match a single skill closely."""
        agent = caller.agent_id or check.agent_id(agent_id, self._limits)
        name = check.community_name(community or self.settings.memory_default_community)
        caller.require(name)
        check.content(description, self._limits, "description")
        skill_list = [check.content(s, self._limits, "skill").strip() for s in skills]
        if len(skill_list) > self._limits.batch - 1:
            raise InvalidInput(f"{len(skill_list)} skills, the limit is {self._limits.batch - 1}")
        items = [MemoryIn(content=description, community=name, kind=PROFILE_KIND, agent_id=agent,
                          metadata={"skills": skill_list})]
        items += [MemoryIn(content=s, community=name, kind=SKILL_KIND, agent_id=agent) for s in skill_list]
        owner = Caller(agent_id=agent, communities=caller.communities)
        await self.forget(community=name, kinds=list(EXPERT_KINDS), agent_id=agent, caller=owner)
        stored = await self.remember_many(items, owner)
        return ExpertProfile(agent_id=agent, community=name, profile_id=stored.results[0].id, skills=skill_list)

    async def forget(self, *, ids: Sequence[str] | None = None, community: str | None = None,
                     kinds: Sequence[str] | None = None, tags: Sequence[str] | None = None,
                     agent_id: str | None = None, caller: Caller = ANYONE) -> Forgotten:
        """Remove memories by id, or by a filter on kind / tags / agent_id, within one community.
        A call with no ids and no filter is refused rather than emptying the community."""
        name = check.community_name(community or self.settings.memory_default_community)
        caller.require(name)
        if not ids and not kinds and not tags and agent_id is None:
            raise InvalidInput("forget needs ids, or at least one of kinds, tags, agent_id; "
                               "to empty a whole community pass kinds with every kind in it")
        flt = MemoryFilter(
            communities=[name],
            ids=check.memory_ids(list(ids or ()), self._limits),
            kinds=check.kinds(list(kinds or ()), self._limits),
            tags=check.tags(list(tags or ()), self._limits),
            agent_ids=[check.agent_id(agent_id, self._limits)] if agent_id is not None else [],
        )
        deleted = await anyio.to_thread.run_sync(self.store.delete, flt)
        self._known.discard(name)  # re-checked on next use
        return Forgotten(deleted=deleted)

    # -- reads -----------------------------------------------------------------------------

    async def recall(self, query: str, *, community: str | None = None, communities: Sequence[str] | None = None,
                     k: int | None = None, kinds: Sequence[str] | None = None, tags: Sequence[str] | None = None,
                     agent_id: str | None = None, since: str | None = None, mode: SearchMode = "hybrid",
                     caller: Caller = ANYONE) -> Recalled:
        """The k memories most relevant to `query`, best first, from `community` (default: the
        server's) or from several `communities` ("*" = every community the caller may read)."""
        check.query(query, self._limits)
        k = check.k_or_default(k, RECALL_K, self._limits)
        if mode not in ("hybrid", "semantic", "keyword"):
            raise InvalidInput(f"mode must be hybrid, semantic or keyword, got {mode!r}")
        scope = await self._scope(community, communities, caller)
        flt = MemoryFilter(
            communities=scope,
            kinds=check.kinds(list(kinds or ()), self._limits),
            tags=check.tags(list(tags or ()), self._limits),
            agent_ids=[check.agent_id(agent_id, self._limits)] if agent_id is not None else [],
            since_ms=check.since_ms(since),
        )
        if scope == []:
            return Recalled(hits=[], mode=mode, communities=[])
        vector = None
        if mode != "keyword":
            vector = (await anyio.to_thread.run_sync(self.embedder.embed, [query]))[0]
        found = await anyio.to_thread.run_sync(
            lambda: self.store.search(flt, k, mode, vector=vector, text=query))
        return Recalled(hits=[_hit(r, s) for r, s in found], mode=mode,
                        communities=[ALL_COMMUNITIES] if scope is None else scope)

    async def route(self, question: str, *, community: str | None = None, k: int | None = None,
                    caller: Caller = ANYONE) -> Routed:
        """The experts of `community` best placed to answer `question`, judged by how well their
        profile and skills fit it and by the memories they wrote that resemble it (see
        `routing.rank_experts`). Empty when no expert is a confident match."""
        check.query(question, self._limits)
        k = check.k_or_default(k, ROUTE_K, self._limits)
        name = check.community_name(community or self.settings.memory_default_community)
        caller.require(name)
        if community is not None and not await self._exists(name):
            raise UnknownCommunity(f"community {name!r} holds no memories yet, so it has no experts")
        lines = await anyio.to_thread.run_sync(lambda: self.store.get_with_vectors(
            MemoryFilter(communities=[name], kinds=list(EXPERT_KINDS)), limit=MAX_EXPERT_LINES))
        experts = sorted({r.agent_id for r, _ in lines if r.kind == PROFILE_KIND})
        if not experts:
            return Routed(experts=[], community=name)
        lines = [(r, v) for r, v in lines if r.agent_id in experts]
        parts = phrases(question, self.routing)

        def embed() -> list[list[float]]:
            # apart: in one batch the short phrases would be padded to the question's length
            return self.embedder.embed([question]) + (self.embedder.embed(parts) if parts else [])

        vectors = await anyio.to_thread.run_sync(embed)
        depth = min(16384, max(50, 20 * len(experts)))
        experience_hits = await anyio.to_thread.run_sync(lambda: self.store.search(
            MemoryFilter(communities=[name], agent_ids=experts, exclude_kinds=list(EXPERT_KINDS)),
            depth, "semantic", vector=vectors[0]))
        # profile and skill lines are few: compare every one with the question and its phrases here
        fits = similarities(vectors, [v for _, v in lines])
        records = [r for r, _ in lines]
        chosen = rank_experts(experts, list(zip(records, fits[0], strict=True)), experience_hits, k, self.routing,
                              phrase_hits=[(text, list(zip(records, row, strict=True)))
                                           for text, row in zip(parts, fits[1:], strict=True)],
                              experience_complete=len(experience_hits) < depth)
        return Routed(experts=chosen, community=name)

    async def stats(self, caller: Caller = ANYONE) -> Stats:
        """Counts per community and kind (only the communities the caller may read)."""
        counts = await anyio.to_thread.run_sync(self.store.group_counts)
        per: dict[str, dict[str, int]] = {}
        for (community, kind), n in counts.items():
            if caller.may_access(community):
                per.setdefault(community, {})[kind] = n
        return Stats(
            total=sum(sum(kinds.values()) for kinds in per.values()),
            communities=[CommunityStats(community=c, total=sum(kinds.values()), kinds=kinds)
                         for c, kinds in sorted(per.items())],
            store_uri=self.store.uri,
            collection=self.store.collection,
            embedder=self.embedder.name,
            dimension=self.embedder.dimension,
            index_type=self.store.index_type,
            embedder_loaded=bool(getattr(self.embedder, "loaded", True)),
        )

    # -- helpers ---------------------------------------------------------------------------

    async def _scope(self, community: str | None, communities: Sequence[str] | None,
                     caller: Caller) -> list[str] | None:
        """Which communities a read covers (None: all of them, for a caller granted all). Named
        communities must exist and be granted."""
        if community is not None and communities:
            raise InvalidInput("pass either community or communities, not both")
        if communities:
            if ALL_COMMUNITIES in communities:
                if caller.communities is None:
                    return None  # every community: no community clause at all
                return sorted([c for c in caller.communities if await self._exists(c)])
            names = check.community_names(list(communities), self._limits)
            for name in names:
                caller.require(name)
            present = [n for n in names if await self._exists(n)]
            if not present:
                raise UnknownCommunity(f"none of the communities {names} holds any memory yet")
            return present
        if community is None:
            name = self.settings.memory_default_community
            caller.require(name)
            return [name]
        name = check.community_name(community)
        caller.require(name)
        if not await self._exists(name):
            raise UnknownCommunity(f"community {name!r} holds no memories yet; remember something there "
                                   "first, or call list_communities to see the existing ones")
        return [name]

    async def _exists(self, community: str) -> bool:
        if community in self._known:
            return True
        n = await anyio.to_thread.run_sync(self.store.count, MemoryFilter(communities=[community]))
        if n:
            self._known.add(community)
        return n > 0


@dataclass
class _PendingWrite:
    """One call's rows waiting for a group commit, and its outcome."""

    rows: list[tuple[MemoryRecord, list[float]]]
    inserted: set[str] = field(default_factory=set)
    error: Exception | None = None
    done: bool = False


def _hit(record: MemoryRecord, score: float) -> Hit:
    return Hit(
        id=record.id,
        content=record.content,
        score=round(score, 6),
        community=record.community,
        kind=record.kind,
        tags=list(record.tags or []),
        agent_id=record.agent_id,
        created_at=datetime.fromtimestamp(record.created_at / 1000, tz=UTC).isoformat().replace("+00:00", "Z"),
        metadata=dict(record.metadata or {}),
    )

