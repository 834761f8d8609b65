"""Cluster-wide channel occupancy: which subscription made a channel occupied, or vacated it.

Why an atomic operation in Redis: with several processes, "first subscriber" and "last one
gone" are facts about all of them at once. Each channel has a Redis set of its subscriptions
(``<node>|<sid>``); one Lua script adds a member and answers whether the set went from empty
to one, another removes one and answers whether it went to empty. Redis runs a script alone,
so exactly one process sees each transition and queues exactly one event for it. Without
Redis (the memory broker) there is one process and the same rule runs on a local dict.

A process killed with subscribers leaves their members behind: the channel stays occupied until
a later subscriber's unsubscribe or the key's expiry, ``DEAD_MEMBER_TTL`` after its last change
(docs/webhooks.md says so).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

ADD = """
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if added == 1 and redis.call('SCARD', KEYS[1]) == 1 then return 1 end
return 0
"""

REMOVE = """
local removed = redis.call('SREM', KEYS[1], ARGV[1])
if removed == 1 and redis.call('SCARD', KEYS[1]) == 0 then return 1 end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

DEAD_MEMBER_TTL = 7 * 86400
"""Seconds a channel's set outlives its last change (members of a killed process go then)."""


class Occupancy(Protocol):
    def add(self, channel: str, member: str) -> bool:
        """Count one subscription; ``True`` when the channel was empty before (occupied)."""

    def remove(self, channel: str, member: str) -> bool:
        """Forget one subscription; ``True`` when it was the last one (vacated)."""


class LocalOccupancy:
    """One process (the memory broker): the same rule on a dict."""

    def __init__(self) -> None:
        self._members: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def add(self, channel: str, member: str) -> bool:
        with self._lock:
            members = self._members.setdefault(channel, set())
            first = not members and member not in members
            members.add(member)
            return first

    def remove(self, channel: str, member: str) -> bool:
        with self._lock:
            members = self._members.get(channel)
            if not members or member not in members:
                return False
            members.discard(member)
            if members:
                return False
            del self._members[channel]
            return True


class RedisOccupancy:
    """The subscriptions of every process, per channel, in Redis (``<prefix>:{ch}:subs``)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._add = client.register_script(ADD)
        self._remove = client.register_script(REMOVE)

    def _key(self, channel: str) -> str:
        return f"{self._prefix}:{{{channel}}}:webhook-subs"

    def add(self, channel: str, member: str) -> bool:
        return bool(self._add(keys=[self._key(channel)], args=[member, DEAD_MEMBER_TTL]))

    def remove(self, channel: str, member: str) -> bool:
        return bool(self._remove(keys=[self._key(channel)], args=[member, DEAD_MEMBER_TTL]))


def redis_client(url: str, cluster: bool) -> Any:
    """A command client for ``url`` (a Redis Cluster when the broker found one)."""
    import redis

    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


__all__ = ["LocalOccupancy", "Occupancy", "RedisOccupancy", "redis_client"]
