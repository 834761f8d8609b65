"""The shared broker: channel state in Redis (or a Redis Cluster), interest-routed fan-out.

For many processes (server replicas and workers). Every state change that must be atomic is
one Lua script (see :mod:`redis_scripts`) on one channel's hash tag, so one cluster slot; the
script SPUBLISHes publications and presence events on the channel's shard channel
``<prefix>:{<channel>}:pub``, received only by the processes that watch the channel
(:mod:`redis_listener`, one daemon thread that reconnects by itself). Redis's single-threaded
execution per shard makes SPUBLISH order equal offset order. :meth:`RedisBroker.send` is the
light path beside it: a plain SPUBLISH on a topic's shard channel (user-addressed messages),
no script, no offset, no history.

``url`` may name a standalone Redis or any node of a Redis Cluster: :mod:`redis_backend`
finds out on first use.

If Redis restarts without persistence the channel meta is gone, so the next access starts a
new epoch and clients holding an old position get ``recovered=False`` - by design.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import orjson
import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import (
    ClusterError,
    NoScriptError,
    OutOfMemoryError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from dihya_realtime.broker.base import (
    Broker,
    BrokerUnavailable,
    HistoryChannelsFull,
    Message,
    PresenceEvent,
    Publication,
    RecoveryResult,
    StreamPosition,
    check_recovery,
    encode_json,
    fold_members,
    idempotency_digest,
    new_publication_id,
    public_user,
    topic_list,
)
from dihya_realtime.broker.redis_backend import Backend, BackendFactory, Scripts
from dihya_realtime.broker.redis_listener import ShardListener
from dihya_realtime.broker.socketio_queue import socketio_queue  # noqa: F401 - its old home
from dihya_realtime.kernel.settings import HistoryPolicy

log = logging.getLogger(__name__)

# A Redis Cluster mid-failover answers CLUSTERDOWN / TRYAGAIN, or has a slot nobody serves
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError, ClusterError, TryAgainError,
         RedisClusterException)


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


def _evalsha(pipe: Any, script: Script, keys: list[Any], args: list[Any]) -> None:
    """Queue ``script`` on a pipeline by its sha alone. Not the Script object: a pipeline
    holding one first asks SCRIPT EXISTS (one more round trip), and a cluster pipeline
    refuses its ``evalsha`` method (the raw command is routed by its keys' slot)."""
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


def _message(topic: str, body: bytes) -> bytes:
    """What :meth:`RedisBroker.send` puts on the wire: ``m`` and the JSON ``[topic, data]``."""
    return b"m[" + orjson.dumps(topic) + b"," + body + b"]"


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
        self._nodes = f"{prefix}:nodes"
        self._history_channels = f"{prefix}:{{history-channels}}"
        self._history_ttls = f"{prefix}:{{history-channels}}:ttl"
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        # Named so an operator (or a test) can tell our connections apart in CLIENT LIST.
        client_name = "dihya-broker:" + re.sub(r"\s", "_", prefix)
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout if pool_timeout is None else pool_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=retry,
            health_check_interval=10,
            client_name=client_name,
        )
        self._backends = BackendFactory(url, pool, {
            "socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout,
            # no command sent again by redis-py's cluster client: it would re-send one that
            # timed out (a script that may have run); a command refused mid-failover
            # (CLUSTERDOWN) or on a dead primary is ``unavailable`` and the caller retries
            "max_connections": max_connections, "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 10, "client_name": client_name})
        self._listener = ShardListener(self._backend, self._shard, self._deliver,
                                       confirm_timeout=max(socket_timeout, 1.0))

    def _backend(self) -> Backend:
        """The command client, standalone or cluster (asked on first use)."""
        with _available():
            return self._backends.get()

    @property
    def _redis(self) -> Any:
        return self._backend().redis

    @property
    def cluster(self) -> bool:
        """Is Redis a Redis Cluster? (Asks it on first use.)"""
        return self._backend().cluster

    @property
    def _lua(self) -> Scripts:
        """The scripts, registered on the client that runs them."""
        return self._backend().scripts

    @property
    def _publish(self) -> Script:
        return self._lua.publish

    # -- keys: one hash tag per channel keeps a channel's keys in one cluster slot ------------

    def _key(self, channel: str, kind: str) -> str:
        return f"{self._prefix}:{{{channel}}}:{kind}"

    def _node_key(self, node_id: str) -> str:
        return f"{self._prefix}:node:{node_id}"

    def _shard(self, channel: str) -> str:
        """The channel's shard channel: its publications and presence events, its slot."""
        return self._key(channel, "pub")

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
            self._shard(channel),
            _ms(idempotency_ttl) if idempotency_key is not None else 0,
            self.max_history_bytes_per_channel,
            0,
            pub_id,
            repr(ts),
            _ms(ts),
        ]
        with _available():
            if history.size > 0 and self.cluster:
                # Not pipelined on a cluster: the two keys are on other slots anyway, and
                # redis-py's cluster pipeline asks its "default node" for a script's keys
                # (a dead one after a failover: every publish failed) and re-sends a
                # script that timed out (it may have run: a publication made twice).
                self._redis.zadd(self._history_channels, {channel: _ms(ts)}, xx=True, gt=True)
                result = self._publish(keys=keys, args=args)
            elif history.size > 0:
                # One round trip: keep this channel's place among those with history fresh,
                # and publish (which says {2} if it would start history on a new channel).
                pipe = self._redis.pipeline(transaction=False)
                pipe.zadd(self._history_channels, {channel: _ms(ts)}, xx=True, gt=True)
                _evalsha(pipe, self._publish, keys, args)
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
        claim = self._lua.claim_history(
            keys=[self._history_channels, self._history_ttls],
            args=[channel, _ms(time.time()), _ms(history.ttl), self.max_history_channels,
                  _ms(self.history_evict_idle)])
        if claim[0] == 0:
            raise HistoryChannelsFull(self.max_history_channels)
        if claim[0] == 2:
            victim, last = claim[1].decode(), int(float(claim[2]))
            if not self._lua.drop_history(keys=[self._key(victim, "meta"),
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
            top, epoch, entries = self._lua.history(
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
        touch = ([self._nodes], [node_id, "nx"])
        add = ([self._key(channel, "presence"), self._key(channel, "users")],
               [conn_id, member["user_id"], orjson.dumps(entry), self._shard(channel),
                orjson.dumps(event)])
        with _available():
            if self.cluster:  # three slots; not pipelined (see publish)
                self._redis.sadd(self._node_key(node_id), orjson.dumps([channel, conn_id]))
                self._lua.touch_node(keys=touch[0], args=touch[1])
                return bool(self._lua.presence_add(keys=add[0], args=add[1]))
            pipe = self._redis.pipeline(transaction=False)
            pipe.sadd(self._node_key(node_id), orjson.dumps([channel, conn_id]))
            _evalsha(pipe, self._lua.touch_node, *touch)
            _evalsha(pipe, self._lua.presence_add, *add)
            results = pipe.execute(raise_on_error=False)
            # A script a node did not know (Redis restarted, a new primary) did not run: it
            # runs again alone, which loads it.
            if isinstance(results[1], NoScriptError):
                results[1] = self._lua.touch_node(keys=touch[0], args=touch[1])
            if isinstance(results[2], NoScriptError):
                results[2] = self._lua.presence_add(keys=add[0], args=add[1])
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return bool(results[-1])

    def presence_remove(self, channel: str, conn_id: str) -> bool:
        return self._remove(channel, conn_id) == 1

    def _remove(self, channel: str, conn_id: str) -> int:
        """1: the user's last connection left; 0: others remain; -1: not present."""
        with _available():
            code, node_id = self._lua.presence_remove(
                keys=[self._key(channel, "presence"), self._key(channel, "users")],
                args=[conn_id, self._shard(channel), channel],
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
            self._lua.touch_node(keys=[self._nodes], args=[node_id, "always"])

    def reap_dead_nodes(self, ttl: float) -> int:
        with _available():
            lease, *dead = self._lua.claim_dead(keys=[self._nodes], args=[ttl])
        removed = 0
        for raw in dead:
            node_id = raw.decode()
            with _available():
                members = self._redis.smembers(self._node_key(node_id))
            for member in sorted(members):
                channel, conn_id = orjson.loads(member)
                if self._remove(channel, conn_id) >= 0:
                    removed += 1
            self._tell_node_reaped(node_id)
            with _available():
                if self._lua.release_node(keys=[self._nodes], args=[node_id, lease]):
                    self._redis.delete(self._node_key(node_id))  # drops stale members too
        return removed

    # -- fan-out: interest routing over sharded pub/sub (redis_listener) --------------------

    def add_resubscribe_hook(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` each time the pub/sub links are subscribed again after they were
        lost (every watched channel confirmed), from the listener thread, before anything
        newly fanned out is dispatched and before :meth:`ping` reports ready again; hooks run
        in the order they were added. One brings local channel subscribers up to date from
        history (:mod:`dihya_realtime.features.channels.catchup`), another tells every local
        connection to resync what has none (:mod:`dihya_realtime.features.session.resync`).
        If a hook raises, the listener subscribes again and runs them all again."""
        self._listener.resubscribed.append(fn)

    def send(self, topics: str | Iterable[str], data: Any) -> None:
        """SPUBLISH ``m[<topic>,<data>]`` on each topic's shard channel, ``data`` encoded
        once, every topic in one round trip (a cluster pipeline: one per node)."""
        names = topic_list(topics)
        if not names:
            return
        body = encode_json(data)
        with _available():
            if len(names) == 1:
                self._redis.spublish(self._shard(names[0]), _message(names[0], body))
                return
            pipe = self._redis.pipeline(transaction=False)
            for topic in names:
                pipe.spublish(self._shard(topic), _message(topic, body))
            pipe.execute()

    def watch(self, channels: str | Iterable[str]) -> None:
        """SSUBSCRIBE each channel's shard channel; once started, returns when Redis has
        confirmed them all (every publication made afterwards is received). Raises
        :class:`BrokerUnavailable` when no confirmation comes, at once while the pub/sub
        links are down; the channels stay watched and are subscribed when they are back."""
        self._listener.watch(channels)

    def unwatch(self, channel: str) -> None:
        self._listener.unwatch(channel)

    def watched(self) -> set[str]:
        return self._listener.watched()

    @property
    def fanout_received(self) -> int:
        """Pub/sub messages this process received (tests check what interest routing spares)."""
        return self._listener.received

    def start(self) -> None:
        """Subscribe the watched channels (waiting for Redis's confirmations when it is up)
        and start listening.

        Returning with Redis up means every publication made afterwards on a watched channel
        will be received. With Redis down it returns at once; the listener keeps trying with
        backoff.
        """
        self._listener.start()

    def _deliver(self, raw: bytes) -> None:
        kind, body = raw[:1], raw[1:]
        try:
            try:
                wire = orjson.loads(body)
            except orjson.JSONDecodeError:  # what only the stdlib wrote (integers past 64 bits)
                wire = json.loads(body)
            if kind == b"p":
                self._dispatch(Publication.from_wire(wire))
            elif kind in (b"j", b"l"):
                event_kind: Literal["join", "leave"] = "join" if kind == b"j" else "leave"
                self._dispatch(PresenceEvent(wire["channel"], event_kind, wire["user"]))
            elif kind == b"m":
                topic, data = wire
                self._dispatch(Message(topic, data))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("redis broker: dropped a malformed fan-out message")

    def close(self) -> None:
        self.stop()
        self._listener.close()
        self._backends.close()

    def ping(self) -> None:
        """Redis answers *and* every watched channel is subscribed and caught up: before
        that, this process would miss publications acked meanwhile (``/readyz`` says 503)."""
        with _available():
            self._redis.ping()
        if not self._listener.ready:
            raise BrokerUnavailable("redis pub/sub not subscribed")
