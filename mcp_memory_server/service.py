"""MemoryService: remember, recall, route, forget. Knows nothing of MCP or OpenAgents.

Every method validates its input completely before it writes anything, runs blocking work
(embedding, Milvus) in worker threads, and raises only `errors.MemoryServerError` subclasses
for conditions a caller can act on.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict

import anyio
import anyio.to_thread

from . import validation as check
from .access import ANYONE, Caller, read_scope
from .browse import Browsing, iso
from .config import Settings
from .embeddings import Embedder
from .errors import Forbidden, InvalidInput
from .expertise import Expertise
from .filters import MemoryFilter
from .indexing import Indexer
from .keywords import KeywordStats, query_sparse
from .models import (
    LATEST_MAX,
    RECALL_K,
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
from .ranking import Candidate, Scored, fuse, keyword_score, semantic_score
from .recent import OWN_TTL_S, SHARED_TTL_S, RecentWrites
from .routing import RoutingPolicy
from .store import QUERY_LIMIT, MemoryStore
from .writes import Writer


class MemoryService(Browsing):
    """The memory's verbs over one store and one embedder (the reads for browsing are in
    browse.py). Constructing it does no I/O."""

    def __init__(self, settings: Settings, store: MemoryStore, embedder: Embedder,
                 routing: RoutingPolicy | None = None) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self._limits = settings.limits
        # On Milvus Lite this process is the only writer: its tallies stay exact (see tallies.py).
        self.writer = Writer(store, stats_ttl=None if store.is_lite else settings.memory_stats_ttl)
        self.indexer = Indexer(store, embedder, self.writer)
        self._expertise = Expertise(self, routing or RoutingPolicy())
        self.recent = RecentWrites(LATEST_MAX, ttl=OWN_TTL_S if store.exclusive else SHARED_TTL_S)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self.store.open)

    async def warm_up(self) -> None:
        """Load the embedding model and read every community's tally, so that neither the first
        recall nor the first stats pays for it."""
        await anyio.to_thread.run_sync(self.embedder.warm_up, abandon_on_cancel=True)
        await self.writer.tallies.everything()

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
        """Store memories, indexed with their thread context (`indexing.py`). All items are
        validated before anything is written; a bad item fails the whole call. Identical content
        already in the same community (and thread) is not stored again: its existing id comes back
        with `duplicate=True`."""
        items = request.memories
        if not items:
            raise InvalidInput("nothing to remember: pass at least one memory")
        if len(items) > self._limits.batch:
            raise InvalidInput(f"{len(items)} memories in one call, the limit is {self._limits.batch}: "
                               "send them in several calls")
        now = int(time.time() * 1000)
        records = [self.to_record(item, caller, now, i, len(items) > 1) for i, item in enumerate(items)]
        communities = sorted({r.community for r in records})
        existing = await anyio.to_thread.run_sync(self.store.existing_ids, communities, [r.id for r in records])
        fresh = list({r.id: r for r in records if r.id not in existing}.values())
        inserted: set[str] = set()
        if fresh:
            async with self.indexer.threads_held(fresh):
                indexed, neighbours = await self.indexer.index(fresh, appended={r.id for r in fresh
                                                                                if r.created_at == now})
                inserted = await self.writer.commit(indexed)
                self.recent.wrote(r for r in fresh if r.id in inserted)
                for (community, thread), group in _threads(neighbours).items():
                    await self.indexer.reindex(community, thread, [r.id for r in group])
        results: list[Remembered] = []
        claimed: set[str] = set()
        for record in records:
            new = record.id in inserted and record.id not in claimed
            claimed.add(record.id)
            results.append(Remembered(id=record.id, community=record.community, duplicate=not new))
        return RememberedMany(results=results, stored=len(inserted), duplicates=len(records) - len(inserted))

    def to_record(self, item: MemoryIn, caller: Caller, now: int, position: int = 0,
                  many: bool = False) -> MemoryRecord:
        """`item` validated as the record it would be stored as (InvalidInput / Forbidden if not)."""
        try:
            community = check.community_name(self.community(item.community))
            caller.require(community)
            text = check.content(item.content, self._limits)
            thread = check.thread(item.thread, self._limits) if item.thread is not None else ""
            created_at = check.moment(item.created_at, "created_at") or now
            return MemoryRecord(
                id=memory_id(community, text, thread),
                content=text,
                community=community,
                kind=check.kind(item.kind, self._limits),
                tags=check.tags(item.tags or [], self._limits),
                agent_id=caller.agent_id or check.agent_id(item.agent_id or "anonymous", self._limits),
                created_at=created_at,
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
                metadata=check.metadata({} if item.metadata is None else item.metadata, self._limits),
                thread=thread,
                seq=created_at * 1_000_000 + position,
            )
        except (InvalidInput, Forbidden) as exc:
            raise type(exc)(f"memory {position}: {exc}" if many else str(exc)) from exc

    async def register_expert(self, request: RegisterExpertIn, caller: Caller = ANYONE) -> ExpertProfile:
        """Store (or replace) an expert's profile; see `expertise.Expertise.register`."""
        return await self._expertise.register(request, caller)

    async def forget(self, request: ForgetIn, caller: Caller = ANYONE) -> Forgotten:
        """Remove memories by id, or by a filter on kind / tags / agent_id / thread, within one
        community. A call with no ids and no filter is refused rather than emptying the community.
        The memories after a forgotten one in its thread are re-indexed with their new context."""
        name = check.community_name(self.community(request.community))
        caller.require(name)
        if not request.ids and not request.kinds and not request.tags and request.agent_id is None \
                and request.thread is None:
            raise InvalidInput("forget needs ids, or at least one of kinds, tags, agent_id, thread; "
                               "to empty a whole community pass kinds with every kind in it")
        flt = MemoryFilter(
            communities=[name],
            ids=check.memory_ids(list(request.ids or ()), self._limits),
            kinds=check.kinds(list(request.kinds or ()), self._limits),
            tags=check.tags(list(request.tags or ()), self._limits),
            agent_ids=[check.agent_id(request.agent_id, self._limits)] if request.agent_id is not None else [],
            threads=[check.thread(request.thread, self._limits)] if request.thread is not None else [],
        )
        deleted = 0
        while doomed := await anyio.to_thread.run_sync(lambda: self.store.get_indexed(flt, limit=QUERY_LIMIT)):
            gone = {m.record.id for m in doomed}
            async with self.indexer.threads_held(m.record for m in doomed):
                after = {}
                for (community, thread), group in _threads([m.record for m in doomed]).items():
                    after[(community, thread)] = await self.indexer.followers(community, thread, group, gone)
                await self.writer.delete(name, doomed)
                self.recent.forgot(name)
                for (community, thread), ids in after.items():
                    await self.indexer.reindex(community, thread, ids)
            deleted += len(doomed)
            if len(doomed) < QUERY_LIMIT:
                break
        return Forgotten(deleted=deleted)

    # -- reads -----------------------------------------------------------------------------

    async def recall(self, request: RecallIn, caller: Caller = ANYONE) -> Recalled:
        """The k memories most relevant to the query, best first, from one community (default: the
        server's) or from several ("*" = every community the caller may read). Scores are
        calibrated (`ranking.py`): the same scale in every mode."""
        query, mode = check.query(request.query, self._limits), request.mode
        k = check.k_or_default(_given(request, "k"), RECALL_K, self._limits)
        if mode not in ("hybrid", "semantic", "keyword"):
            raise InvalidInput(f"mode must be hybrid, semantic or keyword, got {mode!r}")
        scope = await read_scope(caller, request.community, request.communities, exists=self.exists,
                                 default=self.settings.memory_default_community, limits=self._limits)
        flt = MemoryFilter(
            communities=scope,
            kinds=check.kinds(list(request.kinds or ()), self._limits),
            tags=check.tags(list(request.tags or ()), self._limits),
            agent_ids=[check.agent_id(request.agent_id, self._limits)] if request.agent_id is not None else [],
            threads=[check.thread(request.thread, self._limits)] if request.thread is not None else [],
            since_ms=check.since_ms(request.since),
            live_at_ms=int(time.time() * 1000),
        )
        if scope == []:
            return Recalled(hits=[], mode=mode, communities=[])
        vector = (await self.embed([query]))[0] if mode != "keyword" else []
        weights = query_sparse(query, await self._keyword_stats(scope)) if mode != "semantic" else {}
        depth = max(k, self.settings.fusion.depth)

        def search() -> list[Scored]:
            if mode == "semantic":
                return [Scored(r, semantic_score(d), d, None) for r, d in self.store.search_dense(flt, vector, k)]
            if mode == "keyword":
                return [Scored(r, keyword_score(d), None, d) for r, d in self.store.search_sparse(flt, weights, k)]
            found = self.store.candidates(flt, vector, weights, depth)
            return fuse(query, vector, weights, (Candidate(m.record, m.dense, m.sparse) for m in found), k)

        scored = await anyio.to_thread.run_sync(search)
        every = sorted((await self.writer.tallies.everything()).keys()) if scope is None else scope
        return Recalled(hits=[_hit(s) for s in scored], mode=mode, communities=every)

    async def route(self, request: RouteIn, caller: Caller = ANYONE) -> Routed:
        """The experts best placed to answer a question; see `expertise.Expertise.route`."""
        return await self._expertise.route(request, caller)

    async def stats(self, caller: Caller = ANYONE) -> Stats:
        """Counts per community and kind (only the communities the caller may read)."""
        tallies = await self.writer.tallies.everything()
        per = {c: {kind: n for kind, n in t.kinds.items() if n > 0} for c, t in tallies.items()
               if caller.may_access(c)}
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

    async def exists(self, community: str) -> bool:
        """Whether the community holds any memory."""
        return (await self.writer.tallies.get(community)).total > 0

    # -- helpers ---------------------------------------------------------------------------

    async def embed(self, texts: list[str]) -> list[list[float]]:
        # Abandoned when cancelled: a hub that stops does not wait for a model call nobody will read.
        return await anyio.to_thread.run_sync(self.embedder.embed, texts, abandon_on_cancel=True)

    def community(self, named: str | None) -> str:
        """The community a call names, or the default when it names none. An empty name is not
        "none": it is refused by `check.community_name` like any other invalid name."""
        return self.settings.memory_default_community if named is None else named

    async def _keyword_stats(self, scope: list[str] | None) -> KeywordStats:
        if scope is None:
            return KeywordStats.merged(t.keywords for t in (await self.writer.tallies.everything()).values())
        if len(scope) == 1:
            return (await self.writer.tallies.get(scope[0])).keywords
        return KeywordStats.merged([(await self.writer.tallies.get(c)).keywords for c in scope])


def _given(request: RecallIn | RouteIn, name: str) -> int | None:
    """The request's value of `name`, or None when the caller left it to the default."""
    value = getattr(request, name)
    return value if name in request.model_fields_set else None


def _threads(records: list[MemoryRecord]) -> dict[tuple[str, str], list[MemoryRecord]]:
    groups: dict[tuple[str, str], list[MemoryRecord]] = defaultdict(list)
    for r in records:
        if r.thread:
            groups[(r.community, r.thread)].append(r)
    return groups


def _hit(found: Scored) -> Hit:
    record = found.record
    return Hit(
        id=record.id,
        content=record.content,
        score=round(found.score, 6),
        dense=round(found.dense, 6) if found.dense is not None else None,
        keyword=round(found.keyword, 6) if found.keyword is not None else None,
        community=record.community,
        kind=record.kind,
        tags=list(record.tags or []),
        agent_id=record.agent_id,
        thread=record.thread or None,
        created_at=iso(record.created_at),
        metadata=dict(record.metadata or {}),
    )
