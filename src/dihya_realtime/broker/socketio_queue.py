"""python-socketio's Redis message queue, on a bounded blocking pool.

Only the host app's own ``socketio.emit`` calls need it across processes: our traffic travels
on the broker (channels' and users' topics, sharded pub/sub by interest). Apart from
:mod:`redis` so that module holds the broker alone.
"""

from __future__ import annotations

from typing import Any

import redis


def socketio_queue(url: str, channel: str, *, max_connections: int = 64,
                   pool_timeout: float = 5.0) -> Any:
    """python-socketio's Redis message queue, on a bounded *blocking* connection pool.

    python-socketio builds its client with ``Redis.from_url``, whose pool raises "Too many
    connections" past 100 sockets instead of waiting: under gevent, a burst of emits from
    more than 100 greenlets at once (a reconnect storm, a busy room) would drop emits, each
    logged as a failed publish. Same remedy as :class:`RedisBroker`'s pool.
    """
    import socketio

    class BlockingRedisManager(socketio.RedisManager):
        def _redis_connect(self) -> None:
            pool = redis.BlockingConnectionPool.from_url(
                self.redis_url, max_connections=max_connections, timeout=pool_timeout,
                **self.redis_options)
            self.redis = redis.Redis(connection_pool=pool)
            self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            self.connected = True

    return BlockingRedisManager(url, channel=channel, write_only=False)
