"""Who may use which communities: the one place that decides.

A hub token maps to a `Grant` (hub/tokens.py reads the token file); a grant acts as a `Caller`;
every verb of the service asks the caller before it reads or writes a community, and a read
covers the communities `read_scope` returns. stdio callers and hubs without tokens act as
`ANYONE`, who may use every community.

Light on imports on purpose: the MCP server imports this at start-up, before the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from . import validation as check
from .config import Limits
from .errors import Forbidden, InvalidInput, UnknownCommunity

ALL_COMMUNITIES = "*"


@dataclass(frozen=True)
class Caller:
    """Who is calling. `communities=None` grants every community (no auth, or an admin token);
    `agent_id`, when set, is stamped on every memory this caller writes, whatever it claims."""

    agent_id: str | None = None
    communities: frozenset[str] | None = None

    @property
    def is_admin(self) -> bool:
        """Granted every community: a "*" token, a stdio client, or any client of a hub without
        tokens (loopback only). Only admins see where and how the memory is stored."""
        return self.communities is None

    def may_access(self, community: str) -> bool:
        return self.communities is None or community in self.communities

    def require(self, community: str) -> None:
        """Raise Forbidden unless the caller may read and write `community`."""
        if not self.may_access(community):
            raise Forbidden(f"not allowed to use community {community!r}; your token grants: "
                            f"{', '.join(sorted(self.communities or ())) or 'none'}")


ANYONE = Caller()


@dataclass(frozen=True)
class Grant:
    """What one hub token allows: who it is, the communities it may read and write (None = all),
    and at most how many requests per minute (None = unlimited), with bursts of up to `burst`."""

    agent_id: str
    communities: frozenset[str] | None
    rate_limit: float | None = None
    burst: int | None = None

    @property
    def caller(self) -> Caller:
        return Caller(agent_id=self.agent_id, communities=self.communities)


Exists = Callable[[str], Awaitable[bool]]


async def read_scope(caller: Caller, community: str | None, communities: Sequence[str] | None, *,
                     default: str, exists: Exists, limits: Limits) -> list[str] | None:
    """The communities a read covers: one named `community` (else `default`), or several named
    `communities`, where "*" means every community the caller may read. None means every community
    with no restriction at all (only for a caller granted all). Named communities must be granted
    (Forbidden) and hold memories (UnknownCommunity, judged by `exists`)."""
    if community is not None and communities:
        raise InvalidInput("pass either community or communities, not both")
    if communities is not None and not communities:
        raise InvalidInput('communities is empty: name at least one, or pass ["*"] for every community you may read')
    if communities:
        if ALL_COMMUNITIES in communities:
            if caller.communities is None:
                return None
            return sorted([c for c in caller.communities if await exists(c)])
        names = check.community_names(list(communities), limits)
        for name in names:
            caller.require(name)
        present = [n for n in names if await exists(n)]
        if not present:
            raise UnknownCommunity(f"none of the communities {names} holds any memory yet")
        return present
    if community is None:
        caller.require(default)
        return [default]
    name = check.community_name(community)
    caller.require(name)
    if not await exists(name):
        raise UnknownCommunity(f"community {name!r} holds no memories yet; remember something there "
                               "first, or call list_communities to see the existing ones")
    return [name]
