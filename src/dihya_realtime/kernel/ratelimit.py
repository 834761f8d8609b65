"""Token buckets for per-event (per user), per-user and per-IP rate limits.

Buckets live in process memory: they are checked on every event, and a Redis round trip
there would cost more than the event itself. With N processes a user can therefore reach N
times a limit (a user's connections usually share one process only by chance). Per-event
buckets are keyed by user so a reconnect refills nothing, and every keyed table forgets its
least recently used keys past a bound, so no caller can grow it without limit.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

from dihya_realtime.kernel.settings import RateLimit


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` kept."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, limit: RateLimit, now: float | None = None) -> None:
        self.rate = limit.rate
        self.burst = float(limit.burst)
        self.tokens = self.burst
        self.stamp = time.monotonic() if now is None else now

    def take(self, now: float | None = None, cost: float = 1.0) -> float:
        """Take ``cost`` tokens (at most the burst: a cost above it waits for a full bucket).

        Returns 0 when allowed, else the seconds until enough are available; nothing is taken
        then.
        """
        now = time.monotonic() if now is None else now
        cost = min(cost, self.burst)
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class KeyedBuckets:
    """One bucket per key (user id, IP, ``(user id, event)``), the least recently used
    forgotten past ``max_keys`` so the memory they take is bounded whoever calls.

    Forgetting a bucket gives that key a full burst again; with ``max_keys`` above the number
    of keys active within a burst's refill time, that only happens to idle keys.
    """

    def __init__(self, limit: RateLimit, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        # get / move_to_end / popitem must not interleave across threads (threading mode)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, now: float | None = None,
             limit: RateLimit | None = None, cost: float = 1.0) -> float:
        """Take ``cost`` tokens from ``key``'s bucket, made with ``limit`` (default: this
        one's); see :meth:`TokenBucket.take`."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(limit or self.limit, now)
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
            return bucket.take(now, cost)
