"""Token buckets for per-connection, per-user and per-IP rate limits.

Buckets live in process memory: they are checked on every event, and a Redis round trip
there would cost more than the event itself. With N processes a user can therefore reach N
times the per-user rate; per-connection limits are exact because a connection lives on one
process.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from dihya_realtime.settings import RateLimit


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` kept."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, limit: RateLimit, now: float | None = None) -> None:
        self.rate = limit.rate
        self.burst = float(limit.burst)
        self.tokens = self.burst
        self.stamp = time.monotonic() if now is None else now

    def take(self, now: float | None = None, cost: float = 1.0) -> float:
        """Take ``cost`` tokens (one event, or a message's bytes). Returns 0 when allowed, else
        the seconds until that many are available (nothing is taken then)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class KeyedBuckets:
    """One bucket per key (user id, IP), the least recently used forgotten past ``max_keys``."""

    def __init__(self, limit: RateLimit, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.limit, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)
