"""Per-token rate limits: token buckets, `rate_limit` calls per minute in bursts of `burst`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..access import Grant
from ..errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """Token buckets, one per hub token: `rate_limit` calls per minute, bursts of `burst`
    (default: ten seconds' worth). Runs on the event loop thread only."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def admit(self, key: str, grant: Grant) -> None:
        """Count one call; raise RateLimited (with the seconds to wait) when over the limit."""
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
        raise RateLimited(f"rate limit reached for agent {grant.agent_id!r} ({grant.rate_limit:g} calls per "
                          f"minute); retry in {wait:.2f} s", retry_after=wait)
