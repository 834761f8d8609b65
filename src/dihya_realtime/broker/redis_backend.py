"""One Redis or a Redis Cluster behind the same broker: found out once, on first use.

``DIHYA_RT_REDIS_URL`` may name a standalone Redis or any node of a Redis Cluster; the
operator should not have to say which. So the first use asks the node (``INFO cluster``):
``cluster_enabled:1`` gives a :class:`redis.cluster.RedisCluster` (commands and scripts are
routed by the slot of their keys), anything else the usual :class:`redis.Redis` on a bounded
blocking pool. Nothing is opened before that first use (Flask extension manners). The mode is
logged, once.

The listener's pub/sub needs one dedicated connection per Redis node that holds a watched
channel's slot: :meth:`Backend.node_of` names that node, :meth:`Backend.connection` opens a
connection to it, outside any pool (its socket is the listener's alone).
"""

from __future__ import annotations

import inspect
import logging
import threading
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script
from redis.connection import AbstractConnection

from dihya_realtime.broker import redis_scripts as lua

log = logging.getLogger("dihya_realtime.broker.redis")

STANDALONE = "redis"
"""The node name of the one Redis when it is not a cluster."""


class RedisInternalsMissing(RuntimeError):
    """redis-py lacks what the pub/sub listener relies on (a new major version?)."""


def check_connection_internals(conn: Any) -> None:
    """The listener drives its connections by hand: it waits on their sockets with ``select``
    (redis-py keeps the socket in the private ``_sock``) and reads push frames with
    ``read_response(disconnect_on_error=False, push_request=True)`` (pinned ``redis<9`` in
    pyproject). Fail loudly, naming the adaptation, rather than have the listener break and
    reconnect forever."""
    missing = []
    sock = getattr(conn, "_sock", None)
    if sock is None or not callable(getattr(sock, "fileno", None)):
        missing.append("Connection._sock after connect()")
    read = getattr(conn, "read_response", None)
    params = inspect.signature(read).parameters if callable(read) else {}
    for name in ("disconnect_on_error", "push_request"):
        if name not in params:
            missing.append(f"Connection.read_response({name}=...)")
    if not callable(getattr(conn, "can_read", None)):
        missing.append("Connection.can_read(timeout)")
    if missing:
        raise RedisInternalsMissing(
            "dihya-realtime's broker listener (dihya_realtime.broker.redis_listener: sharded "
            f"pub/sub by interest) needs redis-py's {', '.join(missing)}, which this version "
            "lacks; install redis<9 or adapt dihya_realtime.broker.redis_listener")


@dataclass
class Scripts:
    """The Lua scripts, registered on the client that runs them."""

    publish: Script
    history: Script
    claim_history: Script
    drop_history: Script
    presence_add: Script
    presence_remove: Script
    touch_node: Script
    claim_dead: Script
    release_node: Script

    @classmethod
    def register(cls, client: Any) -> Scripts:
        return cls(*(client.register_script(body) for body in (
            lua.PUBLISH, lua.HISTORY, lua.CLAIM_HISTORY, lua.DROP_HISTORY, lua.PRESENCE_ADD,
            lua.PRESENCE_REMOVE, lua.TOUCH_NODE, lua.CLAIM_DEAD_NODES, lua.RELEASE_NODE)))


class Backend:
    """The command client (standalone or cluster) and what the listener needs of it."""

    def __init__(self, client: Any, cluster: bool) -> None:
        self.redis = client
        self.cluster = cluster
        self.scripts = Scripts.register(client)

    def node_of(self, shard_channel: str) -> str:
        """The name of the node serving ``shard_channel``'s slot (its primary)."""
        if not self.cluster:
            return STANDALONE
        slot = self.redis.keyslot(shard_channel)
        return str(self.redis.nodes_manager.get_node_from_slot(slot).name)

    def connection(self, node_name: str) -> AbstractConnection:
        """A new connection to ``node_name``, connected, in no pool."""
        if self.cluster:
            node = self.redis.get_node(node_name=node_name)
            if node is None:
                raise redis.ConnectionError(f"no cluster node {node_name}")
            pool = self.redis.get_redis_connection(node).connection_pool
        else:
            pool = self.redis.connection_pool
        conn: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        conn.connect()
        check_connection_internals(conn)
        return conn

    def refresh(self) -> None:
        """Read the cluster's slot map again (after a pub/sub link broke or was moved)."""
        if self.cluster:
            self.redis.nodes_manager.initialize()

    def close(self) -> None:
        self.redis.close()


class BackendFactory:
    """Builds the :class:`Backend` on first use, once, and keeps it."""

    def __init__(self, url: str, pool: redis.BlockingConnectionPool,
                 cluster_options: dict[str, Any]) -> None:
        self._url = url
        self._pool = pool
        self._cluster_options = cluster_options
        self._lock = threading.Lock()
        self._backend: Backend | None = None

    @property
    def built(self) -> Backend | None:
        return self._backend

    def get(self) -> Backend:
        """The backend; raises redis-py's connection errors while Redis cannot be asked."""
        backend = self._backend
        if backend is not None:
            return backend
        with self._lock:
            if self._backend is None:
                self._backend = self._build()
            return self._backend

    def _build(self) -> Backend:
        probe = redis.Redis(connection_pool=self._pool)
        try:
            enabled = int(probe.info("cluster").get("cluster_enabled", 0)) == 1
        except redis.ResponseError:  # INFO refused (ACL): not a cluster we could use anyway
            enabled = False
        if not enabled:
            log.info("redis broker: standalone Redis")
            return Backend(probe, cluster=False)
        from redis.cluster import RedisCluster

        self._pool.disconnect()
        client = RedisCluster.from_url(self._url, **self._cluster_options)
        primaries = len(client.get_primaries())
        log.info("redis broker: Redis Cluster mode (%d primaries): channels are spread over "
                 "the slots by their hash tag", primaries)
        return Backend(client, cluster=True)

    def close(self) -> None:
        with self._lock:
            if self._backend is not None:
                self._backend.close()
            self._pool.disconnect()
