"""Who may do what, and the verbs every memory backend offers.

Light on imports on purpose: the MCP server imports this at start-up, before the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import Forbidden
from .models import (
    ExpertProfile,
    Forgotten,
    MemoryIn,
    Recalled,
    Remembered,
    RememberedMany,
    Routed,
    SearchMode,
    Stats,
)

ALL_COMMUNITIES = "*"


@dataclass(frozen=True)
class Caller:
    """Who is calling. `communities=None` grants every community (no auth, or an admin token);
    `agent_id`, when set, is stamped on every memory this caller writes, whatever it claims."""

    agent_id: str | None = None
    communities: frozenset[str] | None = None

    def may_access(self, community: str) -> bool:
        return self.communities is None or community in self.communities

    def require(self, community: str) -> None:
        if not self.may_access(community):
            raise Forbidden(f"not allowed to use community {community!r}; your token grants: "
                            f"{', '.join(sorted(self.communities or ())) or 'none'}")


ANYONE = Caller()


class Memory(Protocol):
    """The verbs every memory backend offers: the local service, or a client of a remote hub."""

    async def remember(self, item: MemoryIn, caller: Caller = ANYONE) -> Remembered: ...
    async def remember_many(self, items: Sequence[MemoryIn], caller: Caller = ANYONE) -> RememberedMany: ...
    async def recall(self, query: str, *, community: str | None = None, communities: Sequence[str] | None = None,
                     k: int | None = None, kinds: Sequence[str] | None = None, tags: Sequence[str] | None = None,
                     agent_id: str | None = None, since: str | None = None, mode: SearchMode = "hybrid",
                     caller: Caller = ANYONE) -> Recalled: ...
    async def register_expert(self, agent_id: str, description: str, skills: Sequence[str] = (),
                              community: str | None = None, caller: Caller = ANYONE) -> ExpertProfile: ...
    async def route(self, question: str, *, community: str | None = None, k: int | None = None,
                    caller: Caller = ANYONE) -> Routed: ...
    async def forget(self, *, ids: Sequence[str] | None = None, community: str | None = None,
                     kinds: Sequence[str] | None = None, tags: Sequence[str] | None = None,
                     agent_id: str | None = None, caller: Caller = ANYONE) -> Forgotten: ...
    async def stats(self, caller: Caller = ANYONE) -> Stats: ...
