"""The shared broker: channel state in Redis, fan-out over one pub/sub channel.

For many processes (server replicas and workers). Every state change that must be atomic is
one Lua script (see :mod:`redis_scripts`); publications and presence events reach every
process through ``<prefix>:fanout``, received by a daemon listener thread that reconnects by
itself. Redis's single-threaded execution makes PUBLISH order equal offset order.

If Redis restarts without persistence the channel meta is gone, so the next access starts a
new epoch and clients holding an old position get ``recovered=False`` - by design.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import orjson
import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from dihya_realtime.broker import redis_scripts as lua
from dihya_realtime.broker.base import (
    Broker,
    BrokerUnavailable,
    HistoryChannelsFull,
    PresenceEvent,
    Publication,
    RecoveryResult,
    StreamPosition,
    check_recovery,
    fold_members,
    idempotency_digest,
    new_publication_id,
    public_user,
)
from dihya_realtime.kernel.settings import HistoryPolicy

log = logging.getLogger(__name__)

_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
# Subscribing again: any Redis error is retried with backoff (a NOPERM or LOADING reply too),
# never the end of the listener thread.
_RETRY = (redis.RedisError, OSError)
_MAX_BACKOFF = 5.0
_POLL = 0.2


@contextmanager
def _available() -> Iterator[None]:
    try:
        yield
    except _DOWN as exc:
        raise BrokerUnavailable(f"redis unavailable: {exc}") from exc
    except redis.ResponseError as exc:
        # Redis at ``maxmemory`` with the ``noeviction`` policy refuses writes ("OOM ...";
        # inside a script, its first write fails, so nothing was written): the bound on
        # history in Redis is its maxmemory (docs/limits.md), and the client must hear
        # ``unavailable``, not ``internal``.
        if isinstance(exc, OutOfMemoryError) or "maxmemory" in str(exc):
            raise BrokerUnavailable("redis is out of memory (maxmemory)") from exc
        raise


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisBroker(Broker):
    """Broker backed by Redis at ``url``; every key starts with ``prefix``.

    ``socket_timeout`` / ``connect_timeout`` bound how long a call may hang before it raises
    :class:`BrokerUnavailable`. A command is retried once, immediately, only on a connection
    error (a pooled connection gone stale after a Redis restart) - never on a timeout, where
    the script may have run and a retry could publish twice.

    The connection pool is bounded and *blocking*: at most ``max_connections`` sockets to
    Redis, and a caller that finds them all busy waits up to ``pool_timeout`` for one.
    redis-py's default pool instead raises "Too many connections" at once past 100, which
    under gevent (one greenlet per event) made 1,000 simultaneous ``subscribe`` calls fail
    with ``unavailable`` on a healthy Redis. Waiting for a pooled connection is cheap: a
    script runs in well under a millisecond, so 64 connections serve thousands of calls/s.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "dihya",
        *,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_connections: int = 64,
        pool_timeout: float | None = None,
        **caps: Any,
    ) -> None:
        super().__init__(**caps)
        self._prefix = prefix
        self._fanout = f"{prefix}:fanout"
        self._nodes = f"{prefix}:nodes"
        self._history_channels = f"{prefix}:{{history-channels}}"
        self._history_ttls = f"{prefix}:{{history-channels}}:ttl"
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout if pool_timeout is None else pool_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            health_check_interval=10,
            # Named so an operator (or a test) can tell our connections apart in CLIENT LIST.
            client_name="dihya-broker:" + re.sub(r"\s", "_", prefix),
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._publish = self._redis.register_script(lua.PUBLISH)
        self._history = self._redis.register_script(lua.HISTORY)
        self._claim_history = self._redis.register_script(lua.CLAIM_HISTORY)
        self._drop_history = self._redis.register_script(lua.DROP_HISTORY)
        self._presence_add = self._redis.register_script(lua.PRESENCE_ADD)
        self._presence_remove = self._redis.register_script(lua.PRESENCE_REMOVE)
        self._touch_node = self._redis.register_script(lua.TOUCH_NODE)
        self._claim_dead = self._redis.register_script(lua.CLAIM_DEAD_NODES)
        self._release_node = self._redis.register_script(lua.RELEASE_NODE)
        self._listener: threading.Thread | None = None
        self._closing = threading.Event()
        self._fanout_ready = threading.Event()  # subscribed, and caught up: see ping()
        self._resubscribed: Callable[[], None] | None = None

    # -- keys: one hash tag per channel keeps a channel's keys in one cluster slot ------------

    def _key(self, channel: str, kind: str) -> str:
        return f"{self._prefix}:{{{channel}}}:{kind}"

    def _node_key(self, node_id: str) -> str:
        return f"{self._prefix}:node:{node_id}"

    # -- publications -------------------------------------------------------------------------

    def publish(
        self,
        channel: str,
        data: Any,
        *,
        history: HistoryPolicy,
        from_: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl: float = 300,
    ) -> tuple[Publication, bool]:
        pub_id = new_publication_id()
        ts = time.time()
        wire: dict[str, Any] = {"channel": channel, "id": pub_id, "ts": ts, "data": data}
        if from_ is not None:
            wire["from"] = from_
        head = orjson.dumps(wire)[:-1]  # the script appends offset, epoch and the brace
        # A fixed-length digest: "{channel}:idem:<digest>" reads back one way only.
        idem_key = self._key(channel, f"idem:{idempotency_digest(idempotency_key or '')}")
        keys = [self._key(channel, "meta"), self._key(channel, "stream"), idem_key]
        args: list[Any] = [
            head,
            history.size,
            _ms(history.ttl),
            secrets.token_hex(6),
            self._fanout,
            _ms(idempotency_ttl) if idempotency_key is not None else 0,
            self.max_history_bytes_per_channel,
            0,
            pub_id,
            repr(ts),
            _ms(ts),
        ]
        with _available():
            if history.size > 0:
                # One round trip: keep this channel's place among those with history fresh,
                # and publish (which says {2} if it would start history on a new channel).
                # EVALSHA, not the Script object: a pipeline holding a Script first asks
                # SCRIPT EXISTS, one more round trip on every publish.
                pipe = self._redis.pipeline(transaction=False)
                pipe.zadd(self._history_channels, {channel: _ms(ts)}, xx=True, gt=True)
                pipe.evalsha(self._publish.sha, len(keys), *keys, *args)
                try:
                    result = pipe.execute()[-1]
                except NoScriptError:  # not loaded (Redis restarted): nothing ran
                    result = self._publish(keys=keys, args=args)
            else:
                result = self._publish(keys=keys, args=args)
            if result[0] == 2:
                self._make_room(channel, history)
                args[7] = 1
                result = self._publish(keys=keys, args=args)
        if result[0] == 0:
            offset, epoch, first_id, first_ts = orjson.loads(result[1])
            return Publication(channel, int(offset), epoch, first_id, float(first_ts), None), False
        offset, epoch = int(result[1]), result[2].decode()
        return Publication(channel, offset, epoch, pub_id, ts, data, from_), True

    def _make_room(self, channel: str, history: HistoryPolicy) -> None:
        """Count ``channel`` among those with history, dropping an idle one's at the cap."""
        claim = self._claim_history(
            keys=[self._history_channels, self._history_ttls],
            args=[channel, _ms(time.time()), _ms(history.ttl), self.max_history_channels,
                  _ms(self.history_evict_idle)])
        if claim[0] == 0:
            raise HistoryChannelsFull(self.max_history_channels)
        if claim[0] == 2:
            victim, last = claim[1].decode(), int(float(claim[2]))
            if not self._drop_history(keys=[self._key(victim, "meta"),
                                            self._key(victim, "stream")], args=[last]):
                # it published meanwhile: it keeps its history and its place (one over the
                # cap until the next claim makes room)
                self._redis.zadd(self._history_channels, {victim: last}, gt=True)

    def position(self, channel: str, history: HistoryPolicy) -> StreamPosition:
        return self._read(channel, history, since=None, limit=0)[0]

    def history(
        self,
        channel: str,
        *,
        history: HistoryPolicy,
        since: StreamPosition | None = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> RecoveryResult:
        top, publications = self._read(channel, history, since, limit, page)
        if since is None:
            return RecoveryResult(True, publications, top)
        return check_recovery(since, top, publications, limit, page)

    def _read(
        self,
        channel: str,
        history: HistoryPolicy,
        since: StreamPosition | None,
        limit: int | None,
        page: int | None = None,
    ) -> tuple[StreamPosition, list[Publication]]:
        """Top position and entries in one script, so both come from the same instant."""
        with _available():
            top, epoch, entries = self._history(
                keys=[self._key(channel, "meta"), self._key(channel, "stream")],
                args=[
                    secrets.token_hex(6),
                    _ms(history.ttl),
                    since.offset if since is not None else -1,
                    since.epoch if since is not None else "",
                    limit if limit is not None else -1,
                    page if page is not None else -1,
                ],
            )
        publications = [Publication.from_wire(orjson.loads(fields[1])) for _, fields in entries]
        if since is None and limit is not None:
            publications.reverse()  # XREVRANGE gave the newest first
        return StreamPosition(int(top), epoch.decode()), publications

    # -- presence -----------------------------------------------------------------------------

    def presence_add(self, channel: str, conn_id: str, user: dict[str, Any], node_id: str) -> bool:
        member = public_user(user)
        entry = {**member, "node": node_id, "since": time.time()}
        event = {"channel": channel, "user": member}
        # Not one transaction (the node keys live in other cluster slots), but ordered so a
        # crash leaves at worst a node-set entry pointing at nothing, which reaping ignores.
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(self._node_key(node_id), orjson.dumps([channel, conn_id]))
        self._touch_node(keys=[self._nodes], args=[node_id, "nx"], client=pipe)
        self._presence_add(
            keys=[self._key(channel, "presence"), self._key(channel, "users")],
            args=[
                conn_id,
                member["user_id"],
                orjson.dumps(entry),
                self._fanout,
                orjson.dumps(event),
            ],
            client=pipe,
        )
        with _available():
            return bool(pipe.execute()[-1])

    def presence_remove(self, channel: str, conn_id: str) -> bool:
        return self._remove(channel, conn_id) == 1

    def _remove(self, channel: str, conn_id: str) -> int:
        """1: the user's last connection left; 0: others remain; -1: not present."""
        with _available():
            code, node_id = self._presence_remove(
                keys=[self._key(channel, "presence"), self._key(channel, "users")],
                args=[conn_id, self._fanout, channel],
            )
            if code >= 0:
                # Separately from the script (other cluster slot). A crash in between leaves
                # a stale node-set member, which reaping skips as an unknown connection.
                self._redis.srem(self._node_key(node_id.decode()), orjson.dumps([channel, conn_id]))
        return int(code)

    def presence(self, channel: str) -> list[dict[str, Any]]:
        with _available():
            entries = self._redis.hvals(self._key(channel, "presence"))
        parsed = [orjson.loads(e) for e in entries]
        return fold_members((e, e["since"]) for e in parsed)

    # -- node liveness ------------------------------------------------------------------------

    def heartbeat(self, node_id: str) -> None:
        with _available():
            self._touch_node(keys=[self._nodes], args=[node_id, "always"])

    def reap_dead_nodes(self, ttl: float) -> int:
        with _available():
            lease, *dead = self._claim_dead(keys=[self._nodes], args=[ttl])
        removed = 0
        for raw in dead:
            node_id = raw.decode()
            with _available():
                members = self._redis.smembers(self._node_key(node_id))
            for member in sorted(members):
                channel, conn_id = orjson.loads(member)
                if self._remove(channel, conn_id) >= 0:
                    removed += 1
            with _available():
                if self._release_node(keys=[self._nodes], args=[node_id, lease]):
                    self._redis.delete(self._node_key(node_id))  # drops stale members too
        return removed

    # -- fan-out ------------------------------------------------------------------------------

    def set_resubscribe_hook(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` each time the fan-out is subscribed again after it was lost, from the
        listener thread, before anything newly fanned out is dispatched and before
        :meth:`ping` reports ready again. ``fn`` brings local subscribers up to date from
        history (:mod:`dihya_realtime.features.channels.catchup`); if it raises, the listener
        subscribes again
        and calls it again."""
        self._resubscribed = fn

    def start(self) -> None:
        """Subscribe (waiting for Redis's confirmation when it is up) and start listening.

        Returning with Redis up means every publication made afterwards will be received.
        With Redis down it returns at once; the listener keeps trying with backoff.
        """
        if self._listener is not None:
            return
        self._closing.clear()
        pubsub: PubSub | None
        try:
            pubsub = self._subscribe()
            self._fanout_ready.set()
        except _RETRY:
            log.warning("redis broker: fan-out not subscribed yet; retrying in background")
            pubsub = None
        self._listener = threading.Thread(
            target=self._listen, args=(pubsub,), name="dihya-broker-listener", daemon=True
        )
        self._listener.start()

    def _subscribe(self) -> PubSub:
        pubsub = self._redis.pubsub()
        try:
            pubsub.subscribe(self._fanout)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "subscribe":
                    return pubsub
            raise RedisTimeoutError("no subscribe confirmation")
        except BaseException:
            pubsub.close()
            raise

    def _resubscribe(self) -> PubSub:
        """Subscribe again, then catch up (the hook) before anything new is dispatched."""
        pubsub = self._subscribe()
        try:
            if self._resubscribed is not None:
                self._resubscribed()
        except BaseException:
            pubsub.close()
            raise
        return pubsub

    def _listen(self, pubsub: PubSub | None) -> None:
        backoff = 0.1
        while not self._closing.is_set():
            if pubsub is None:
                try:
                    pubsub = self._resubscribe()
                    self._fanout_ready.set()
                    log.info("redis broker: fan-out subscribed")
                    backoff = 0.1
                except (*_RETRY, BrokerUnavailable) as exc:
                    log.debug("redis broker: fan-out not back yet: %s", exc)
                    self._closing.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
            try:
                # Short polls so close() returns promptly; idle cost is a few wakeups a second.
                message = pubsub.get_message(timeout=_POLL)
            except (*_DOWN, redis.ResponseError) as exc:
                # Not ready until subscribed again and caught up (publications sent while
                # we are away are delivered from history then, see set_resubscribe_hook).
                # A ResponseError here is redis-py's own re-subscription being refused.
                self._fanout_ready.clear()
                log.warning("redis broker: fan-out connection lost (%s); reconnecting",
                            type(exc).__name__)
                pubsub.close()
                pubsub = None
                continue
            except Exception:
                log.exception("redis broker: unexpected listener error")
                continue
            if message is None:
                continue
            if message["type"] == "message":
                self._deliver(message["data"])
            elif message["type"] == "subscribe":
                # redis-py reconnected and subscribed again by itself (its retry on a
                # connection error): the connection was lost meanwhile, so catch up first.
                self._fanout_ready.clear()
                try:
                    if self._resubscribed is not None:
                        self._resubscribed()
                except (*_RETRY, BrokerUnavailable) as exc:
                    log.warning("redis broker: catch-up after reconnecting failed (%s); "
                                "subscribing again", exc)
                    pubsub.close()
                    pubsub = None
                    continue
                self._fanout_ready.set()
                log.info("redis broker: fan-out subscribed again")
        self._fanout_ready.clear()
        if pubsub is not None:
            pubsub.close()

    def _deliver(self, raw: bytes) -> None:
        kind, body = raw[:1], raw[1:]
        try:
            wire = orjson.loads(body)
            if kind == b"p":
                self._dispatch(Publication.from_wire(wire))
            elif kind in (b"j", b"l"):
                event_kind: Literal["join", "leave"] = "join" if kind == b"j" else "leave"
                self._dispatch(PresenceEvent(wire["channel"], event_kind, wire["user"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("redis broker: dropped a malformed fan-out message")

    def close(self) -> None:
        self.stop()
        self._closing.set()
        if self._listener is not None:
            self._listener.join(timeout=3)
            self._listener = None
        self._redis.close()

    def ping(self) -> None:
        """Redis answers *and* the fan-out is subscribed and caught up: before that, this
        process would miss publications acked meanwhile (``/readyz`` says 503)."""
        with _available():
            self._redis.ping()
        if not self._fanout_ready.is_set():
            raise BrokerUnavailable("redis fan-out not subscribed")


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
