"""The service's reads for a person looking at the memory (the hub's web view, `hub/ui/`): the
newest memories of a scope, memories by id, and the experts registered in a community.

`Browsing` is mixed into `MemoryService` (service.py): these verbs use the same validation, the
same `access` rules and the same store as every other verb, and know nothing of HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio.to_thread

from . import validation as check
from .access import ANYONE, Caller, read_scope
from .config import Limits, Settings
from .errors import InvalidInput, UnknownMemory
from .filters import MemoryFilter
from .models import LATEST_MAX, Expert, Experts, Latest, LatestIn, MemoryRecord, RecallIn, StoredMemory
from .recent import ALL, RecentWrites, merge, newest
from .records import is_live, iso, stored
from .routing import EXPERT_KINDS, MAX_EXPERT_LINES, PROFILE_KIND, SKILL_KIND
from .store import MemoryStore


class Browsing:
    """The browsing verbs; `MemoryService` provides the attributes below."""

    settings: Settings
    store: MemoryStore
    _limits: Limits
    recent: RecentWrites

    async def exists(self, community: str) -> bool:
        raise NotImplementedError  # MemoryService.exists

    def community(self, named: str | None) -> str:
        raise NotImplementedError  # MemoryService.community

    async def scoped_filter(self, request: LatestIn | RecallIn,
                            caller: Caller) -> tuple[list[str] | None, MemoryFilter]:
        """The communities a read covers (None: every community; []: none the caller may read) and
        the filter of its kinds, tags, agent, thread and time, each value checked; expired memories out."""
        scope = await read_scope(caller, request.community, request.communities, exists=self.exists,
                                 default=self.settings.memory_default_community, limits=self._limits)
        return scope, MemoryFilter(
            communities=scope,
            kinds=check.kinds(list(request.kinds or ()), self._limits),
            tags=check.tags(list(request.tags or ()), self._limits),
            agent_ids=[check.agent_id(request.agent_id, self._limits)] if request.agent_id is not None else [],
            threads=[check.thread(request.thread, self._limits)] if request.thread is not None else [],
            since_ms=check.since_ms(request.since),
            live_at_ms=_now_ms(),
        )

    async def latest(self, request: LatestIn, caller: Caller = ANYONE) -> Latest:
        """The newest memories of one community (default: the server's) or of several ("*" = every
        community the caller may read), newest first. Unfiltered, they come from the lists the
        service keeps in memory (`recent.RecentWrites`); filtered by kind, tags, agent, thread or time, from
        bounded reads of the store (`recent.newest`)."""
        limit = request.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LATEST_MAX:
            raise InvalidInput(f"limit must be a whole number from 1 to {LATEST_MAX}, got {limit!r}")
        scope, flt = await self.scoped_filter(request, caller)
        if scope == []:
            return Latest(memories=[], communities=[])
        if flt.kinds or flt.tags or flt.agent_ids or flt.threads or flt.since_ms is not None:
            records = await anyio.to_thread.run_sync(self._read_newest, flt, limit)
        else:
            records = merge([await self._newest_of(key) for key in (scope or [ALL])], limit)
        return Latest(memories=[stored(r) for r in records], communities=[ALL] if scope is None else scope)

    async def memories(self, ids: Sequence[str], community: str | None = None,
                       caller: Caller = ANYONE) -> list[StoredMemory]:
        """The memories of `community` (default: the server's) with these ids, in the order asked;
        ids that `community` does not hold are left out."""
        name = check.community_name(self.community(community))
        caller.require(name)
        wanted = check.memory_ids(list(ids), self._limits)
        found = await anyio.to_thread.run_sync(self.store.get_by_ids, wanted)
        now = _now_ms()
        held = {r.id: r for r in found if r.community == name and is_live(r, now)}
        return [stored(held[i]) for i in dict.fromkeys(wanted) if i in held]

    async def memory(self, memory_id: str, caller: Caller = ANYONE) -> StoredMemory:
        """The memory with this id, from any community the caller may read. Raises UnknownMemory
        when there is none (never stored, forgotten, replaced or expired, or in a community the
        caller may not read: the two are not told apart)."""
        wanted = check.memory_ids([memory_id], self._limits)
        found = await anyio.to_thread.run_sync(self.store.get_by_ids, wanted)
        now = _now_ms()
        for record in found:
            if caller.may_access(record.community) and is_live(record, now):
                return stored(record)
        raise UnknownMemory(f"no memory with id {memory_id!r} in the communities you may read (it may have "
                            "been forgotten, replaced or expired)")

    async def experts(self, community: str | None = None, caller: Caller = ANYONE) -> Experts:
        """The experts registered in `community` (default: the server's), by agent id, each with its
        description and skills: who `route` can choose from."""
        name = check.community_name(self.community(community))
        caller.require(name)
        lines = await anyio.to_thread.run_sync(lambda: self.store.get(
            MemoryFilter(communities=[name], kinds=list(EXPERT_KINDS), live_at_ms=_now_ms()), MAX_EXPERT_LINES))
        return Experts(experts=registered(lines), community=name)

    async def _newest_of(self, key: str) -> list[MemoryRecord]:
        """The newest memories of one community, or of every community (`ALL`), as kept or read."""
        kept = self.recent.cached(key)
        if kept is not None:
            return kept
        generation = self.recent.generation(key)
        flt = MemoryFilter(communities=None if key == ALL else [key], live_at_ms=_now_ms())
        records = await anyio.to_thread.run_sync(self._read_newest, flt, self.recent.depth)
        self.recent.keep(key, records, generation)
        return records

    def _read_newest(self, flt: MemoryFilter, n: int) -> list[MemoryRecord]:
        """Blocking: the n newest memories `flt` matches, from the store."""
        ids = newest(self.store.stamps, flt, n, _now_ms())
        found = {r.id: r for r in self.store.get_by_ids(ids)}
        return [found[i] for i in ids if i in found]


def registered(lines: Sequence[MemoryRecord]) -> list[Expert]:
    """The experts described by profile and skill memories (`service.register_expert` writes them),
    by agent id. Skills come in the order they were registered (kept in the profile's metadata)."""
    profiles: dict[str, MemoryRecord] = {}
    skills: dict[str, list[str]] = {}
    for line in sorted(lines, key=lambda r: r.created_at):
        if line.kind == PROFILE_KIND:
            profiles[line.agent_id] = line
        elif line.kind == SKILL_KIND:
            skills.setdefault(line.agent_id, []).append(line.content)
    experts = []
    for agent, profile in sorted(profiles.items()):
        listed = (profile.metadata or {}).get("skills")
        own = [s for s in listed if isinstance(s, str)] if isinstance(listed, list) else sorted(skills.get(agent, []))
        experts.append(Expert(agent_id=agent, community=profile.community, description=profile.content, skills=own,
                              profile_id=profile.id, registered_at=iso(profile.created_at)))
    return experts


def _now_ms() -> int:
    return int(time.time() * 1000)
