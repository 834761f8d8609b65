"""Interest routing: this process receives only the channels it watches, over sharded pub/sub.

Why: with one fan-out channel every process received every publication of the cluster,
whether or not it had a subscriber for it (issue 14: ~115 µs of CPU per useless message), and
on Redis Cluster all of it landed on one shard. Here each channel has its own shard channel,
``<prefix>:{<channel>}:pub`` (the slot of the channel's keys, see :mod:`redis_scripts`); a
process SSUBSCRIBEs it while it watches the channel (:meth:`ShardListener.watch`) and
SUNSUBSCRIBEs when it stops.

One listener thread owns every pub/sub connection: one per Redis node serving a watched
channel (a single one on a standalone Redis). They are redis-py connections outside any
pool, driven by hand, not redis-py's ``PubSub`` / ``ClusterPubSub``: those reconnect and
subscribe again by themselves (the cluster one from its own worker thread), and a silent
reconnection is a silent gap. Here any break (a lost connection, an unanswered PING, a slot
that moved) drops every link; the listener connects again, subscribes every watched channel,
waits for each confirmation, runs the resubscribe hooks (the channels feature catches its
local subscribers up from history; the session feature tells every local connection to
``resync`` what has no history) and only then reports ready (:attr:`ready`) and delivers
what arrived meanwhile. :meth:`watch` returns once Redis has confirmed the subscription, so
anything published after it returns is received.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from redis.connection import AbstractConnection
from redis.exceptions import RedisClusterException

from dihya_realtime.broker.base import BrokerUnavailable
from dihya_realtime.broker.redis_backend import STANDALONE, Backend
from dihya_realtime.broker.values import topic_list

log = logging.getLogger("dihya_realtime.broker.redis")

_POLL = 0.5  # seconds the listener waits for data; watch() and close() wake it at once
_PING_EVERY = 10.0  # a link silent this long is pinged; unanswered this long, it is broken
_MAX_BACKOFF = 5.0
_BATCH = 256  # messages read from one link before the others get a turn
# Subscribing again: any Redis error is retried with backoff (a NOPERM or LOADING reply too),
# never the end of the listener thread.
RETRY = (redis.RedisError, OSError, BrokerUnavailable, RedisClusterException)

State = Literal["subscribing", "subscribed", "unsubscribing"]


class Broken(Exception):
    """A link can no longer be trusted to carry every message: start again."""


@dataclass
class _Link:
    """One pub/sub connection to one Redis node."""

    node: str
    conn: AbstractConnection
    subs: dict[bytes, tuple[str, State]] = field(default_factory=dict)  # shard → channel
    last_read: float = field(default_factory=time.monotonic)
    ping_sent: float | None = None

    def __post_init__(self) -> None:
        # RESP3 (redis-py's default) sends pub/sub messages as push frames, which its parser
        # hands to a handler that logs them; keep them, and ask for them (push_request)
        set_handler = getattr(getattr(self.conn, "_parser", None), "set_pubsub_push_handler",
                              None)
        if set_handler is not None:
            set_handler(lambda response: response)

    def send(self, *args: Any) -> None:
        self.conn.send_command(*args, check_health=False)

    def read(self) -> Any:
        return self.conn.read_response(disconnect_on_error=False, push_request=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.disconnect()


class ShardListener:
    """The watched channels, their pub/sub links, and the thread that reads them."""

    def __init__(self, backend: Callable[[], Backend], shard_of: Callable[[str], str],
                 deliver: Callable[[bytes], None], *, confirm_timeout: float = 5.0) -> None:
        self._backend = backend
        self._shard_of = shard_of
        self._deliver = deliver
        self._confirm_timeout = confirm_timeout
        self._lock = threading.Lock()
        self._wanted: dict[str, threading.Event] = {}  # channel → set once confirmed and ready
        self._dirty = False
        self._links: dict[str, _Link] | None = None  # None: not connected
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_ident: int | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self.resubscribed: list[Callable[[], None]] = []
        """Run in order after every re-subscription, before ready (see :meth:`_connect`)."""
        self.received = 0
        """Messages received on watched channels since start (tests and metrics read it)."""

    # -- interest ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def watched(self) -> set[str]:
        with self._lock:
            return set(self._wanted)

    def watch(self, channels: str | Iterable[str]) -> None:
        """Receive ``channels`` (one name or several) from now on. Once the listener runs,
        returns only when Redis has confirmed every subscription (and the links are ready),
        several channels with one wait; raises :class:`BrokerUnavailable` after
        ``confirm_timeout`` seconds without it, and at once while the links are down (a Redis
        outage must not hold a connect for seconds per topic). Either way the channels stay
        watched: they are subscribed when the links are back, and the resubscribe hooks run
        (until :meth:`unwatch`)."""
        events = []
        with self._lock:
            for channel in topic_list(channels):
                event = self._wanted.get(channel)
                if event is None:
                    event = self._wanted[channel] = threading.Event()
                    self._dirty = True
                events.append((channel, event))
        pending = [(c, e) for c, e in events if not e.is_set()]
        if not pending or self._thread is None or self._closing.is_set():
            return
        self._wake()
        if threading.get_ident() == self._thread_ident:
            return  # called from a handler on the listener itself: it cannot wait for itself
        if not self._ready.is_set():
            raise BrokerUnavailable(f"pub/sub links are down: {pending[0][0]!r} and "
                                    f"{len(pending) - 1} more are subscribed when they are back")
        deadline = time.monotonic() + self._confirm_timeout
        for channel, event in pending:
            if not event.wait(max(0.0, deadline - time.monotonic())):
                raise BrokerUnavailable(f"no subscribe confirmation for {channel!r}")

    def unwatch(self, channel: str) -> None:
        """Stop receiving ``channel`` (its SUNSUBSCRIBE is sent by the listener, soon)."""
        with self._lock:
            if self._wanted.pop(channel, None) is None:
                return
            self._dirty = True
        self._wake()

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and subscribe every watched channel (waiting for Redis's confirmations
        when it is up), then start the listener thread. With Redis down, returns at once."""
        if self._thread is not None:
            return
        self._closing.clear()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        try:
            self._connect(catch_up=False)
        except RETRY as exc:
            log.warning("redis broker: pub/sub not subscribed yet (%s); retrying in background",
                        exc)
        self._thread = threading.Thread(target=self._run, name="dihya-broker-listener",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
        self._drop_links()
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        self._thread_ident = threading.get_ident()
        backoff = 0.1
        while not self._closing.is_set():
            if self._links is None:
                try:
                    self._connect(catch_up=True)
                    log.info("redis broker: pub/sub subscribed again")
                    backoff = 0.1
                except RETRY as exc:
                    log.debug("redis broker: pub/sub not back yet: %s", exc)
                    with contextlib.suppress(*RETRY):
                        self._backend().refresh()  # a cluster's slots may have moved
                    self._closing.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            try:
                self._step()
            except (*RETRY, Broken) as exc:
                if self._closing.is_set():
                    break
                log.warning("redis broker: pub/sub link lost (%s: %s); subscribing again",
                            type(exc).__name__, exc)
                self._drop_links()
                with contextlib.suppress(*RETRY):
                    self._backend().refresh()
            except Exception:
                log.exception("redis broker: unexpected listener error; subscribing again")
                self._drop_links()
        self._drop_links()

    def _drop_links(self) -> None:
        """Not ready until every link is back and caught up (see :meth:`_connect`)."""
        self._ready.clear()
        with self._lock:
            links, self._links = self._links, None
            for event in self._wanted.values():
                event.clear()
        for link in (links or {}).values():
            link.close()

    def _connect(self, catch_up: bool) -> None:
        """Subscribe every watched channel on fresh links and wait for the confirmations;
        then the resubscribe hook; then ready, and what arrived meanwhile is delivered."""
        backend = self._backend()
        links: dict[str, _Link] = {}
        held: list[bytes] = []
        try:
            with self._lock:
                wanted = list(self._wanted)
                self._dirty = False
            if not backend.cluster:
                links[STANDALONE] = _Link(STANDALONE, backend.connection(STANDALONE))
            for channel in wanted:
                self._subscribe(backend, links, channel)
            deadline = time.monotonic() + self._confirm_timeout
            for link in links.values():
                while any(state == "subscribing" for _, state in link.subs.values()):
                    if time.monotonic() > deadline:
                        raise redis.TimeoutError("no subscribe confirmation")
                    response = link.read()
                    self._handle(link, response, held)
            if catch_up:
                for hook in list(self.resubscribed):
                    hook()
        except BaseException:
            for link in links.values():
                link.close()
            raise
        with self._lock:
            self._links = links
            confirmed = {ch for link in links.values() for ch, state in link.subs.values()
                         if state == "subscribed"}
            self._ready.set()
            for channel, event in self._wanted.items():
                if channel in confirmed:
                    event.set()
        for raw in held:
            self._deliver(raw)

    def _subscribe(self, backend: Backend, links: dict[str, _Link], channel: str) -> None:
        shard = self._shard_of(channel)
        node = backend.node_of(shard)
        link = links.get(node)
        if link is None:
            link = links[node] = _Link(node, backend.connection(node))
        link.send("SSUBSCRIBE", shard)
        link.subs[shard.encode()] = (channel, "subscribing")

    def _reconcile(self) -> None:
        """Bring the links in line with the watched channels (one command per channel: a
        node may serve several slots, and one SSUBSCRIBE may only name one)."""
        links = self._links
        with self._lock:
            if not self._dirty or links is None:
                return
            self._dirty = False
            wanted = set(self._wanted)
        held = {ch for link in links.values() for ch, _ in link.subs.values()}
        backend = self._backend()
        for channel in wanted - held:
            self._subscribe(backend, links, channel)
        for link in links.values():
            for shard, (channel, state) in list(link.subs.items()):
                if state == "subscribed" and channel not in wanted:
                    link.send("SUNSUBSCRIBE", shard)
                    link.subs[shard] = (channel, "unsubscribing")

    def _step(self) -> None:
        """Send what the watched set asks for, read what is there, or wait for data."""
        self._reconcile()
        links = self._links
        if links is None:
            return
        now = time.monotonic()
        read = 0
        for link in list(links.values()):
            if link.ping_sent is not None and now - link.ping_sent > _PING_EVERY:
                raise Broken(f"no PONG from {link.node}")
            if link.ping_sent is None and now - link.last_read > _PING_EVERY:
                link.send("PING")
                link.ping_sent = now
            count = 0
            while count < _BATCH and link.conn.can_read(timeout=0):
                self._handle(link, link.read(), None)
                count += 1
            if count:
                link.last_read = now
            read += count
        if read == 0:
            waiting: list[Any] = [link.conn._sock for link in links.values()]
            waiting.append(self._wake_r)
            ready, _, _ = select.select([s for s in waiting if s is not None], [], [], _POLL)
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    while self._wake_r is not None and self._wake_r.recv(4096):
                        pass

    def _handle(self, link: _Link, response: Any, held: list[bytes] | None) -> None:
        """One message from ``link``; publications go to ``held`` while connecting."""
        if response in (b"PONG", "PONG"):
            link.ping_sent = None
            return
        if not isinstance(response, list) or not response:
            raise Broken(f"unexpected reply {response!r}")
        kind = response[0].decode() if isinstance(response[0], bytes) else str(response[0])
        if kind == "smessage":
            self.received += 1
            if held is not None:
                held.append(response[2])
            else:
                self._deliver(response[2])
        elif kind == "pong":
            link.ping_sent = None
        elif kind == "ssubscribe":
            self._confirmed(link, response[1])
        elif kind == "sunsubscribe":
            self._unsubscribed(link, response[1])
        else:
            raise Broken(f"unexpected message {kind!r}")

    def _confirmed(self, link: _Link, shard: bytes) -> None:
        entry = link.subs.get(shard)
        if entry is None or entry[1] != "subscribing":
            raise Broken(f"unexpected subscribe confirmation for {shard!r}")
        channel = entry[0]
        link.subs[shard] = (channel, "subscribed")
        with self._lock:
            event = self._wanted.get(channel)
            if event is None:
                self._dirty = True  # unwatched meanwhile: unsubscribe at the next step
            elif self._ready.is_set():
                event.set()

    def _unsubscribed(self, link: _Link, shard: bytes) -> None:
        entry = link.subs.get(shard)
        if entry is None or entry[1] != "unsubscribing":
            # Redis unsubscribes us itself when the slot moves to another node
            raise Broken(f"unsubscribed from {shard!r} by the server (slot moved?)")
        del link.subs[shard]
        with self._lock:
            if entry[0] in self._wanted:
                self._dirty = True  # watched again meanwhile: subscribe at the next step
