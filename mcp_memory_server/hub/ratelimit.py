"""Per-token limits on the hub: requests per minute (token buckets) and open MCP sessions."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mcp.server.streamable_http_manager import DEFAULT_SESSION_IDLE_TIMEOUT

from ..access import Grant
from ..errors import RateLimited

# The MCP SDK ends a streamable-HTTP session after this long without a request in flight (30 min);
# the hub keeps the SDK's default, and counts sessions the same way.
SESSION_IDLE_SECONDS: float = DEFAULT_SESSION_IDLE_TIMEOUT


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """Token buckets, one per hub token: `rate_limit` requests per minute, bursts of `burst`
    (default: ten seconds' worth). Every HTTP request counts once: tool calls, `initialize`,
    `tools/list`, notifications, streams. Runs on the event loop thread only."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def admit(self, key: str, grant: Grant) -> None:
        """Count one request; raise RateLimited (with the seconds to wait) when over the limit."""
        if grant.rate_limit is None:
            return
        per_second = grant.rate_limit / 60.0
        capacity = float(grant.burst or max(1, math.ceil(per_second * 10)))
        now = self.clock()
        bucket = self._buckets.setdefault(key, _Bucket(capacity, now))
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * per_second)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / per_second
        raise RateLimited(f"rate limit reached for agent {grant.agent_id!r} ({grant.rate_limit:g} requests per "
                          f"minute); retry in {wait:.2f} s", retry_after=wait)


@dataclass
class _Session:
    in_flight: int
    idle_since: float


@dataclass
class SessionLimiter:
    """Open MCP sessions per hub token, at most `limit` each (MEMORY_MAX_SESSIONS_PER_TOKEN), so
    that one token cannot fill the SDK's global session cap and lock every other client out.

    A streamable-HTTP session counts from the response that opened it until the client deletes
    it, the hub answers 404 for it, or no request of it has been in flight for `idle_seconds`
    (then the SDK has ended it too). An SSE session counts while its GET stream is open. Runs on
    the event loop thread only."""

    limit: int
    idle_seconds: float = SESSION_IDLE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _open: dict[str, dict[str, _Session]] = field(default_factory=dict)
    _opening: dict[str, int] = field(default_factory=dict)

    def reserve(self, key: str, agent: str) -> None:
        """Hold a place for a session `key` is opening; raise RateLimited when it has `limit` open.
        Every reserve is followed by `opened` or `abandoned`."""
        sessions = self._live(key)
        if len(sessions) + self._opening.get(key, 0) >= self.limit:
            idle = [s.idle_since for s in sessions.values() if s.in_flight == 0]
            wait = max(1.0, min(idle) + self.idle_seconds - self.clock()) if idle else self.idle_seconds
            raise RateLimited(f"agent {agent!r} has {self.limit} MCP sessions open, the limit "
                              "(MEMORY_MAX_SESSIONS_PER_TOKEN): close one (clients close theirs when they exit; "
                              f"idle ones end after {self.idle_seconds / 60:g} min)", retry_after=wait)
        self._opening[key] = self._opening.get(key, 0) + 1

    def opened(self, key: str, session: str, in_flight: int = 0) -> None:
        self._opening[key] -= 1
        self._open.setdefault(key, {})[session] = _Session(in_flight, self.clock())

    def abandoned(self, key: str) -> None:
        self._opening[key] -= 1

    def started(self, key: str, session: str) -> None:
        """A request of `session` is in flight (it keeps the session alive, as in the SDK)."""
        known = self._open.get(key, {}).get(session)
        if known is not None:
            known.in_flight += 1

    def ended(self, key: str, session: str, gone: bool = False) -> None:
        """A request of `session` ended; `gone`: the session ended with it (deleted, or unknown to the hub)."""
        sessions = self._open.get(key, {})
        known = sessions.get(session)
        if known is None:
            return
        known.in_flight -= 1
        known.idle_since = self.clock()
        if gone:
            del sessions[session]

    def _live(self, key: str) -> dict[str, _Session]:
        sessions = self._open.setdefault(key, {})
        now = self.clock()
        for session, state in list(sessions.items()):
            if state.in_flight <= 0 and now - state.idle_since >= self.idle_seconds:
                del sessions[session]
        return sessions
