"""MemoryService: remember, recall, route, forget. Knows nothing of MCP or OpenAgents.

Every method validates its input completely before it writes anything, runs blocking work
(embedding, Milvus) in worker threads, and raises only `errors.MemoryServerError` subclasses
for conditions a caller can act on.
"""

from __future__ import annotations

import time
from collections import defaultdict

import anyio
import anyio.to_thread

from . import validation as check
from .access import ANYONE, Caller
from .browse import Browsing
from .config import Settings
from .editing import Editing
from .embeddings import Embedder
from .errors import InvalidInput
from .exchange import ExportIn, ExportPage, Imported, ImportIn
from .expertise import Expertise
from .filters import MemoryFilter
from .indexing import Given, Indexer
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
    Updated,
    UpdateIn,
)
from .progress import Progress, report
from .query_cache import QueryCache
from .ranking import Scored, fuse, keyword_score, semantic_score
from .recent import OWN_TTL_S, SHARED_TTL_S, RecentWrites
from .records import stored_fields, to_record
from .routing import RoutingPolicy
from .store import QUERY_LIMIT, MemoryStore
from .transfer import Transfer
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
        self._editing = Editing(self)
        self._transfer = Transfer(self)
        self.recent = RecentWrites(LATEST_MAX, ttl=OWN_TTL_S if store.exclusive else SHARED_TTL_S)
        self.queries = QueryCache(settings.memory_query_cache)

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

    async def remember_many(self, request: RememberManyIn, caller: Caller = ANYONE,
                            progress: Progress | None = None) -> RememberedMany:
        """Store memories, indexed with their thread context (`indexing.py`). All items are
        validated before anything is written; a bad item fails the whole call. Identical content
        already in the same community (and thread) is not stored again: its existing id comes back
        with `duplicate=True` and the stored memory is left as it is (`update` changes it).
        `progress` hears how many of the new memories are embedded."""
        items = request.memories
        if not items:
            raise InvalidInput("nothing to remember: pass at least one memory")
        if len(items) > self._limits.batch:
            raise InvalidInput(f"{len(items)} memories in one call, the limit is {self._limits.batch}: "
                               "send them in several calls")
        now = int(time.time() * 1000)
        records = [self.to_record(item, caller, now, i, len(items) > 1) for i, item in enumerate(items)]
        inserted = await self.write(records, appended={r.id for r in records if r.created_at == now},
                                    progress=progress)
        await report(progress, len(records), len(records), "stored")
        results: list[Remembered] = []
        claimed: set[str] = set()
        for record in records:
            new = record.id in inserted and record.id not in claimed
            claimed.add(record.id)
            results.append(Remembered(id=record.id, community=record.community, duplicate=not new))
        return RememberedMany(results=results, stored=len(inserted), duplicates=len(records) - len(inserted))

    async def write(self, records: list[MemoryRecord], *, appended: set[str], given: Given | None = None,
                    progress: Progress | None = None) -> set[str]:
        """Store those of `records` not stored yet, indexed with their thread context (`appended`
        and `given`: see `Indexer.index`), and re-index the memories after them; return the ids
        stored. The records must be valid (`to_record`)."""
        communities = sorted({r.community for r in records})
        existing = await anyio.to_thread.run_sync(self.store.existing_ids, communities, [r.id for r in records],
                                                  int(time.time() * 1000))
        fresh = list({r.id: r for r in records if r.id not in existing}.values())
        inserted: set[str] = set()
        if fresh:
            async with self.indexer.threads_held(fresh):
                indexed, neighbours = await self.indexer.index(fresh, appended, given, progress)
                inserted = await self.writer.commit(indexed)
                self.recent.wrote(r for r in fresh if r.id in inserted)
                for (community, thread), group in _threads(neighbours).items():
                    await self.indexer.reindex(community, thread, [r.id for r in group])
        return inserted

    def to_record(self, item: MemoryIn, caller: Caller, now: int, position: int = 0,
                  many: bool = False) -> MemoryRecord:
        """`item` validated as the record it would be stored as (InvalidInput / Forbidden if not)."""
        return to_record(item, caller, community=self.community(item.community), limits=self._limits, now=now,
                         position=position, many=many)

    async def update(self, request: UpdateIn, caller: Caller = ANYONE) -> Updated:
        """Change one memory's fields; see `editing.Editing.update`."""
        return await self._editing.update(request, caller)

    async def export(self, request: ExportIn, caller: Caller = ANYONE, progress: Progress | None = None) -> ExportPage:
        """One page of an export; see `transfer.Transfer.export`."""
        return await self._transfer.export(request, caller, progress)

    async def import_memories(self, request: ImportIn, caller: Caller = ANYONE,
                              progress: Progress | None = None) -> Imported:
        """Store memories of an export; see `transfer.Transfer.import_memories`."""
        return await self._transfer.import_memories(request, caller, progress)

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
            live_at_ms=int(time.time() * 1000),  # the expired ones are the purge's (expiry.py)
        )
        deleted = 0
        while doomed := await anyio.to_thread.run_sync(lambda: self.store.get_indexed(flt, limit=QUERY_LIMIT)):
            deleted += await self.indexer.remove(name, doomed)
            self.recent.forgot(name)
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
        scope, flt = await self.scoped_filter(request, caller)
        if scope == []:
            return Recalled(hits=[], mode=mode, communities=[])
        # Statistics with a TTL may lag other hubs' writes: their new words still weigh.
        stale = self.writer.tallies.ttl is not None
        weights = query_sparse(query, await self._keyword_stats(scope), stale) if mode != "semantic" else {}
        depth = max(k, self.settings.fusion.depth)
        cached = self.queries.get(query) if mode != "keyword" else []

        def search() -> list[Scored]:  # one worker thread does the model call (unless cached) and the search
            vector = self._embed_query(query) if cached is None else cached
            if mode == "semantic":
                return [Scored(r, semantic_score(d), d, None) for r, d in self.store.search_dense(flt, vector, k)]
            if mode == "keyword":
                return [Scored(r, keyword_score(d), None, d) for r, d in self.store.search_sparse(flt, weights, k)]
            return fuse(query, self.store.candidates(flt, vector, weights, depth), k)

        scored = await anyio.to_thread.run_sync(search, abandon_on_cancel=True)
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

    def _embed_query(self, query: str) -> list[float]:
        """The query's vector, from the model; kept in the query cache. Blocks."""
        vector = self.embedder.embed([query])[0]
        self.queries.put(query, vector)
        return vector

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
    return Hit(**stored_fields(found.record), score=round(found.score, 6),
               dense=round(found.dense, 6) if found.dense is not None else None,
               keyword=round(found.keyword, 6) if found.keyword is not None else None)
