"""Per-workspace rate limit: one token bucket per workspace, in this process's memory.

Limits are per replica: N replicas behind a load balancer let a workspace through at up to N times
the configured rate. A refused request is answered before it touches the database, so a workspace
flooding the service costs the others almost nothing. With the limit off (the default) the app
holds no limiter at all, and the hot path pays one `is None` test.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .errors import RateLimited

# Buckets of idle workspaces are full, i.e. the same as no bucket: forget them past this many.
_PRUNE_ABOVE = 10_000


class RateLimiter:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1, burst or math.ceil(rate))
        self.clock = clock
        # workspace id -> [tokens, time of last refill]
        self._buckets: dict[int, list[float]] = {}

    def check(self, workspace_id: int) -> None:
        """Take one token from the workspace's bucket, or raise RateLimited with Retry-After."""
        now = self.clock()
        bucket = self._buckets.get(workspace_id)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_ABOVE:
                self._prune(now)
            self._buckets[workspace_id] = [self.burst - 1.0, now]
            return
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return
        bucket[0] = tokens
        wait = math.ceil((1.0 - tokens) / self.rate)
        raise RateLimited(
            f"rate limit exceeded: at most {self.rate:g} requests per second "
            f"(burst {self.burst}) per workspace; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )

    def _prune(self, now: float) -> None:
        full = [
            ws
            for ws, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for ws in full:
            del self._buckets[ws]
        if len(self._buckets) >= _PRUNE_ABOVE:  # all busy: start afresh rather than grow
            self._buckets.clear()


def limiter_from(rate: float, burst: int) -> RateLimiter | None:
    return RateLimiter(rate, burst) if rate > 0 else None
