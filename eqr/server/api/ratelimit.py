"""Per-client admission limits: a token bucket for request rate, a counter for requests in flight.

Both are keyed by a client name (an API key's fingerprint, or an IP address when keys are off) and
live in the API process: with several API nodes each enforces its own share. Their memory is bounded
however many clients come and go: a bucket that has refilled is indistinguishable from a new one, so
it is dropped, and in-flight counters disappear at zero. Everything runs on the event loop thread,
so nothing here locks.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED = 65_536  # buckets kept before the least recently seen are forgotten


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets: ``rate`` tokens a second up to ``burst``; a request takes one token."""

    def __init__(
        self,
        rate: float,
        burst: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (a rate of 0 means no limiter at all)")
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(rate)))
        self._clock = clock
        self._max = max_tracked
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, client: str) -> float:
        """Take a token for ``client``: 0.0 when granted, else the seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.pop(client, None) or _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        wait = 0.0
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
        else:
            wait = (1.0 - bucket.tokens) / self.rate
        self._buckets[client] = bucket  # most recently seen last
        self._evict(now)
        return wait

    def blocked(self, client: str) -> float:
        """Seconds until ``client`` has a token again (0.0: it has one); takes nothing."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket.tokens + (self._clock() - bucket.stamp) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def spent(self, client: str) -> bool:
        """Whether ``client`` took a token that has not refilled yet (it was seen recently)."""
        bucket = self._buckets.get(client)
        return bucket is not None and bucket.tokens + (self._clock() - bucket.stamp) * self.rate < self.burst

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        """Forget buckets that refilled (oldest first), and the oldest past ``max_tracked``."""
        full_after = self.burst / self.rate
        while self._buckets:
            client, bucket = next(iter(self._buckets.items()))
            if len(self._buckets) <= self._max and now - bucket.stamp < full_after:
                break
            del self._buckets[client]


class FailureThrottle:
    """Failed authentications, budgeted so that guessing is throttled but one broken client is alone.

    ``per_min`` failures a minute for each (address, presented key) pair: a client that keeps sending
    the same wrong key (or none) is throttled on its own, and other clients behind the same address
    (a NAT, an unconfigured proxy) keep working. And ``per_min`` *different* failing keys a minute for
    each address: guessing means trying many keys, so a guesser soon blocks its whole address.
    """

    def __init__(self, per_min: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.addresses = RateLimiter(per_min / 60.0, per_min, clock=clock)
        self.attempts = RateLimiter(per_min / 60.0, per_min, clock=clock)

    def blocked(self, address: str, attempt: str) -> float:
        """Seconds until this address may try this key again (0.0: now)."""
        return max(self.addresses.blocked(address), self.attempts.blocked(f"{address} {attempt}"))

    def fail(self, address: str, attempt: str) -> None:
        pair = f"{address} {attempt}"
        if not self.attempts.spent(pair):  # a key this address has not failed with lately: one more guess
            self.addresses.acquire(address)
        self.attempts.acquire(pair)


class InFlightLimiter:
    """At most ``limit`` requests of one client at a time."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1 (a limit of 0 means no limiter at all)")
        self.limit = limit
        self._counts: dict[str, int] = {}

    def enter(self, client: str) -> bool:
        """Count a request in; False (and nothing counted) when the client is at its limit."""
        count = self._counts.get(client, 0)
        if count >= self.limit:
            return False
        self._counts[client] = count + 1
        return True

    def leave(self, client: str) -> None:
        count = self._counts.get(client, 0) - 1
        if count > 0:
            self._counts[client] = count
        else:
            self._counts.pop(client, None)

    def __len__(self) -> int:
        return len(self._counts)
