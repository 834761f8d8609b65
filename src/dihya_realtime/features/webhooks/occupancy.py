"""Cluster-wide channel occupancy: which subscription made a channel occupied, or vacated it.

Why an atomic operation in Redis: with several processes, "first subscriber" and "last one
gone" are facts about all of them at once. Each channel has a Redis set of its subscriptions
(``<node>|<sid>``); one Lua script adds a member and answers whether the set went from empty
to one, another removes one and answers whether it went to empty. Redis runs a script alone,
so exactly one process sees each transition and queues exactly one event for it. Without
Redis (the memory broker) there is one process and the same rule runs on a local dict.

A process killed with subscribers leaves their members behind. The process that reaps the dead
node (the broker's presence maintenance: exactly one does) calls :meth:`reap` with its id: its
members are removed channel by channel (each node keeps an index of the channels it added
members to), and each channel this empties gets its one ``channel.vacated``. What the index
missed (a crash between the member's script and the index's SADD) goes with the key's expiry,
``DEAD_MEMBER_TTL`` after its last change.
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

REAP = """
local prefix = ARGV[1]
local n = #prefix
local before = redis.call('SCARD', KEYS[1])
if before == 0 then return 0 end
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if string.sub(member, 1, n) == prefix then redis.call('SREM', KEYS[1], member) end
end
if redis.call('SCARD', KEYS[1]) == 0 then return 1 end
return 0
"""

DEAD_MEMBER_TTL = 7 * 86400
"""Seconds a channel's set outlives its last change (members of a killed process go then)."""


class Occupancy(Protocol):
    def add(self, channel: str, member: str) -> bool:
        """Count one subscription; ``True`` when the channel was empty before (occupied)."""

    def remove(self, channel: str, member: str) -> bool:
        """Forget one subscription; ``True`` when it was the last one (vacated)."""

    def reap(self, node: str) -> list[str]:
        """Forget every subscription of the dead ``node``; returns the channels it vacated."""


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

    def reap(self, node: str) -> list[str]:
        prefix = node + "|"
        vacated = []
        with self._lock:
            for channel, members in list(self._members.items()):
                gone = {m for m in members if m.startswith(prefix)}
                if not gone:
                    continue
                members -= gone
                if not members:
                    del self._members[channel]
                    vacated.append(channel)
        return vacated


class RedisOccupancy:
    """The subscriptions of every process, per channel, in Redis (``<prefix>:{ch}:subs``)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._add = client.register_script(ADD)
        self._remove = client.register_script(REMOVE)
        self._reap = client.register_script(REAP)

    def _key(self, channel: str) -> str:
        return f"{self._prefix}:{{{channel}}}:webhook-subs"

    def _node_key(self, node: str) -> str:
        return f"{self._prefix}:{{webhook-node:{node}}}"

    def add(self, channel: str, member: str) -> bool:
        first = bool(self._add(keys=[self._key(channel)], args=[member, DEAD_MEMBER_TTL]))
        node = member.partition("|")[0]
        # another slot than the channel's key: a second command (see the module's docstring)
        pipe = self._client.pipeline(transaction=False)
        pipe.sadd(self._node_key(node), channel)
        pipe.expire(self._node_key(node), DEAD_MEMBER_TTL)
        pipe.execute()
        return first

    def remove(self, channel: str, member: str) -> bool:
        return bool(self._remove(keys=[self._key(channel)], args=[member, DEAD_MEMBER_TTL]))

    def reap(self, node: str) -> list[str]:
        vacated = []
        for raw in sorted(self._client.smembers(self._node_key(node))):
            channel = raw.decode() if isinstance(raw, bytes) else str(raw)
            if self._reap(keys=[self._key(channel)], args=[node + "|"]):
                vacated.append(channel)
        self._client.delete(self._node_key(node))
        return vacated


def redis_client(url: str, cluster: bool) -> Any:
    """A command client for ``url`` (a Redis Cluster when the broker found one)."""
    import redis

    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


__all__ = ["LocalOccupancy", "Occupancy", "RedisOccupancy", "redis_client"]
