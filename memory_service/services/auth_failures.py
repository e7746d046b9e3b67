"""Failed credentials, bounded per client address (per replica).

Each unknown API key or wrong admin token takes a token from its address's bucket; with the
bucket empty, further unverified credentials from that address are refused with 429 and
`Retry-After` before any database lookup. Keys this process has already verified (its positive
cache) still pass, so a client that shares an address with a guesser keeps working. Behind a
proxy every client has the proxy's address: the bound then applies to all of them together.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .errors import RateLimited

_PRUNE_ABOVE = 10_000  # addresses remembered at most (full buckets are forgotten first)


class FailureLimiter:
    def __init__(
        self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # address -> [tokens, last refill]

    def _tokens(self, address: str, now: float) -> float:
        bucket = self._buckets.get(address)
        if bucket is None:
            return float(self.burst)
        return min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)

    def check(self, address: str) -> None:
        """Refuse (429) when the address has no failures left to spend."""
        now = self.clock()
        tokens = self._tokens(address, now)
        if tokens < 1.0:
            wait = max(1, math.ceil((1.0 - tokens) / self.rate))
            raise RateLimited(
                f"too many failed credentials from this address; retry in {wait} s",
                code="too_many_auth_failures",
                headers={"Retry-After": str(wait)},
            )

    def failed(self, address: str) -> None:
        now = self.clock()
        tokens = self._tokens(address, now)
        if address not in self._buckets and len(self._buckets) >= _PRUNE_ABOVE:
            self._prune(now)
        self._buckets[address] = [max(0.0, tokens - 1.0), now]

    def _prune(self, now: float) -> None:
        for address in [a for a in self._buckets if self._tokens(a, now) >= self.burst]:
            del self._buckets[address]
        if len(self._buckets) >= _PRUNE_ABOVE:  # all of them failing: start afresh
            self._buckets.clear()
