"""MemoryService: remember, recall, route, forget. Knows nothing of MCP or OpenAgents.

Every method validates its input completely before it writes anything, runs blocking work
(embedding, Milvus) in worker threads, and raises only `errors.MemoryServerError` subclasses
for conditions a caller can act on.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

import anyio
import anyio.to_thread

from . import validation as check
from .access import ANYONE, Caller, read_scope
from .browse import Browsing
from .config import Settings
from .embeddings import Embedder
from .errors import Forbidden, InvalidInput, UnknownCommunity
from .filters import MemoryFilter
from .models import (
    LATEST_MAX,
    RECALL_K,
    ROUTE_K,
    CommunityStats,
    ExpertProfile,
    ForgetIn,
    Forgotten,
    Hit,
    MemoryIn,
    MemoryRecord,
    Recalled,
    RecallIn,
    RegisterExpertIn,
    Remembered,
    RememberedMany,
    RememberManyIn,
    Routed,
    RouteIn,
    Stats,
    memory_id,
)
from .recent import OWN_TTL_S, SHARED_TTL_S, RecentWrites
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
from .store import MemoryStore
from .writes import GroupCommit

CATALOG_SECONDS = 60.0  # how long the list of every community (see _every_community) is trusted


class MemoryService(Browsing):
    """The memory's verbs over one store and one embedder (the reads for browsing are in
    browse.py). Constructing it does no I/O."""

    def __init__(self, settings: Settings, store: MemoryStore, embedder: Embedder,
                 routing: RoutingPolicy | None = None) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.routing = routing or RoutingPolicy()
        self._limits = settings.limits
        self._writes = GroupCommit(store)
        self._known: set[str] = set()
        self._recent = RecentWrites(LATEST_MAX, ttl=OWN_TTL_S if store.exclusive else SHARED_TTL_S)
        self._catalog: tuple[float, list[str]] | None = None  # (when, every community): see _every_community

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self.store.open)

    async def warm_up(self) -> None:
        await anyio.to_thread.run_sync(self.embedder.warm_up, abandon_on_cancel=True)

    async def close(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.store.close)
        finally:
            self.embedder.close()

    # -- writes ----------------------------------------------------------------------------

    async def remember(self, item: MemoryIn, caller: Caller = ANYONE) -> Remembered:
        """Store one memory; see `remember_many`."""
        return (await self.remember_many(RememberManyIn(memories=[item]), caller)).results[0]

    async def remember_many(self, request: RememberManyIn, caller: Caller = ANYONE) -> RememberedMany:
        """Store memories, embedding them in batches. All items are validated before anything is
        written; a bad item fails the whole call. Identical content already in the same community
        is not stored again: its existing id comes back with `duplicate=True`."""
        items = request.memories
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
        vectors = await self._embed([r.content for r in fresh.values()])
        inserted = await self._writes.commit(list(zip(fresh.values(), vectors, strict=True)))
        self._recent.wrote(r for r in fresh.values() if r.id in inserted)
        self._known.update(communities)
        if self._catalog is not None and not set(communities) <= set(self._catalog[1]):
            self._catalog = (self._catalog[0], sorted(set(self._catalog[1]) | set(communities)))
        results: list[Remembered] = []
        claimed: set[str] = set()
        for record in records:
            new = record.id in inserted and record.id not in claimed
            claimed.add(record.id)
            results.append(Remembered(id=record.id, community=record.community, duplicate=not new))
        return RememberedMany(results=results, stored=len(inserted), duplicates=len(records) - len(inserted))

    def _record(self, item: MemoryIn, caller: Caller, now: int, position: int | None) -> MemoryRecord:
        where = f"memory {position}: " if position is not None else ""
        try:
            community = check.community_name(self._community(item.community))
            caller.require(community)
            text = check.content(item.content, self._limits)
            record = MemoryRecord(
                id=memory_id(community, text),
                content=text,
                community=community,
                kind=check.kind(item.kind, self._limits),
                tags=check.tags(item.tags or [], self._limits),
                agent_id=caller.agent_id or check.agent_id(item.agent_id or "anonymous", self._limits),
                created_at=now,
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
                metadata=check.metadata({} if item.metadata is None else item.metadata, self._limits),
            )
        except (InvalidInput, Forbidden) as exc:
            raise type(exc)(f"{where}{exc}") from exc
        return record

    async def register_expert(self, request: RegisterExpertIn, caller: Caller = ANYONE) -> ExpertProfile:
        """Store (or replace) an expert's profile: one memory for the description and one per
        skill, so a question can match a single skill closely. The new lines are stored before the
        old ones are removed, so a failure on the way leaves the previous profile whole."""
        agent = caller.agent_id or check.agent_id(request.agent_id, self._limits)
        name = check.community_name(self._community(request.community))
        caller.require(name)
        description = check.content(request.description, self._limits, "description")
        skill_list = [check.content(s, self._limits, "skill").strip() for s in request.skills or ()]
        if len(skill_list) > self._limits.batch - 1:
            raise InvalidInput(f"{len(skill_list)} skills, the limit is {self._limits.batch - 1}")
        items = [MemoryIn(content=description, community=name, kind=PROFILE_KIND, agent_id=agent,
                          metadata={"skills": skill_list})]
        items += [MemoryIn(content=s, community=name, kind=SKILL_KIND, agent_id=agent) for s in skill_list]
        owner = Caller(agent_id=agent, communities=caller.communities)
        mine = MemoryFilter(communities=[name], kinds=list(EXPERT_KINDS), agent_ids=[agent])
        old = {r.id: r for r in await anyio.to_thread.run_sync(lambda: self.store.get(mine, limit=MAX_EXPERT_LINES))}
        stored = await self.remember_many(RememberManyIn(memories=items), owner)
        ids = [r.id for r in stored.results]  # content hashes: an unchanged line keeps its id
        # A kept line whose kind or metadata changed (the same description, other skills) is replaced in place.
        changed = [self._record(item, owner, int(time.time() * 1000), None) for item, i in zip(items, ids, strict=True)
                   if i in old and (old[i].kind, old[i].metadata) != (item.kind, item.metadata)]
        if changed:
            vectors = await self._embed([r.content for r in changed])
            await anyio.to_thread.run_sync(self.store.upsert, changed, vectors)
        if stale := [i for i in old if i not in ids]:
            await anyio.to_thread.run_sync(self.store.delete, MemoryFilter(communities=[name], ids=stale))
        if changed or stale:
            self._recent.forgot(name)  # the newest memories of the community are read again
        return ExpertProfile(agent_id=agent, community=name, profile_id=ids[0], skills=skill_list)

    async def forget(self, request: ForgetIn, caller: Caller = ANYONE) -> Forgotten:
        """Remove memories by id, or by a filter on kind / tags / agent_id, within one community.
        A call with no ids and no filter is refused rather than emptying the community."""
        ids, kinds, tags, agent_id = request.ids, request.kinds, request.tags, request.agent_id
        name = check.community_name(self._community(request.community))
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
        if deleted:
            self._recent.forgot(name)
        self._known.discard(name)  # re-checked on next use
        self._catalog = None
        return Forgotten(deleted=deleted)

    # -- reads -----------------------------------------------------------------------------

    async def recall(self, request: RecallIn, caller: Caller = ANYONE) -> Recalled:
        """The k memories most relevant to the query, best first, from one community (default: the
        server's) or from several ("*" = every community the caller may read)."""
        query, mode = check.query(request.query, self._limits), request.mode
        k = check.k_or_default(_given(request, "k"), RECALL_K, self._limits)
        if mode not in ("hybrid", "semantic", "keyword"):
            raise InvalidInput(f"mode must be hybrid, semantic or keyword, got {mode!r}")
        scope = await read_scope(caller, request.community, request.communities, exists=self._exists,
                                 default=self.settings.memory_default_community, limits=self._limits)
        flt = MemoryFilter(
            communities=scope,
            kinds=check.kinds(list(request.kinds or ()), self._limits),
            tags=check.tags(list(request.tags or ()), self._limits),
            agent_ids=[check.agent_id(request.agent_id, self._limits)] if request.agent_id is not None else [],
            since_ms=check.since_ms(request.since),
        )
        if scope == []:
            return Recalled(hits=[], mode=mode, communities=[])
        vector = None
        if mode != "keyword":
            vector = (await self._embed([query]))[0]
        found = await anyio.to_thread.run_sync(
            lambda: self.store.search(flt, k, mode, vector=vector, text=query))
        return Recalled(hits=[_hit(r, s) for r, s in found], mode=mode,
                        communities=await self._every_community() if scope is None else scope)

    async def route(self, request: RouteIn, caller: Caller = ANYONE) -> Routed:
        """The experts of the community best placed to answer the question, judged by how well
        their profile and skills fit it and by the memories they wrote that resemble it (see
        `routing.rank_experts`). Empty when no expert is a confident match."""
        question = check.query(request.question, self._limits)
        k = check.k_or_default(_given(request, "k"), ROUTE_K, self._limits)
        name = check.community_name(self._community(request.community))
        caller.require(name)
        if request.community is not None and not await self._exists(name):
            raise UnknownCommunity(f"community {name!r} holds no memories yet, so it has no experts")
        lines = await anyio.to_thread.run_sync(lambda: self.store.get_with_vectors(
            MemoryFilter(communities=[name], kinds=list(EXPERT_KINDS)), limit=MAX_EXPERT_LINES))
        experts = sorted({r.agent_id for r, _ in lines if r.kind == PROFILE_KIND})
        if not experts:
            return Routed(experts=[], community=name)
        lines = [(r, v) for r, v in lines if r.agent_id in experts]
        parts = phrases(question, self.routing)
        # apart: in one batch the short phrases would be padded to the question's length
        vectors = await self._embed([question]) + (await self._embed(parts) if parts else [])
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
            store_uri=self.store.uri if caller.is_admin else None,
            collection=self.store.collection,
            embedder=self.embedder.name,
            dimension=self.embedder.dimension,
            index_type=self.store.index_type,
            embedder_loaded=bool(getattr(self.embedder, "loaded", True)),
        )

    # -- helpers ---------------------------------------------------------------------------

    async def _every_community(self) -> list[str]:
        """Every community that holds memories: what a recall over ["*"] by a caller granted every
        community searched. One scan of the collection, kept up to date by this process's writes
        and redone after CATALOG_SECONDS (other hubs on the same Milvus server write too)."""
        if self._catalog is None or time.monotonic() - self._catalog[0] > CATALOG_SECONDS:
            counts = await anyio.to_thread.run_sync(self.store.group_counts)
            self._catalog = (time.monotonic(), sorted({community for community, _ in counts}))
        return list(self._catalog[1])

    def _community(self, named: str | None) -> str:
        """The community a call names, or the default when it names none. An empty name is not
        "none": it is refused by `check.community_name` like any other invalid name."""
        return self.settings.memory_default_community if named is None else named

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        # Abandoned when cancelled: a hub that stops does not wait for a model call nobody will read.
        return await anyio.to_thread.run_sync(self.embedder.embed, texts, abandon_on_cancel=True)

    async def _exists(self, community: str) -> bool:
        if community in self._known:
            return True
        # one row, not a count: Milvus Lite counts by reading every row (~1 s for 5k memories, vs ~30 ms)
        n = len(await anyio.to_thread.run_sync(self.store.stamps, MemoryFilter(communities=[community]), 1))
        if n:
            self._known.add(community)
        return n > 0


def _given(request: RecallIn | RouteIn, name: str) -> int | None:
    """The request's value of `name`, or None when the caller left it to the default."""
    value = getattr(request, name)
    return value if name in request.model_fields_set else None


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

