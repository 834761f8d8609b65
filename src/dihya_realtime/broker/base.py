"""The broker interface (the value types of the channel protocol are in :mod:`values`).

The broker is where realtime state lives: per-channel offsets and epochs, history, presence
and node liveness, plus the fan-out that tells every server process watching a channel
(:meth:`Broker.watch`) about its publications.
It imports nothing from Flask or Socket.IO because worker processes (Celery, cron) use it with
only a Redis URL, and because the same code runs under plain threads and under gevent.

Modelled on centrifugal/centrifuge's ``Broker``: one documented interface, one in-memory and
one Redis implementation, and one test suite (``tests/unit/broker/test_broker.py``) run
against both.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from dihya_realtime.broker.values import (
    Handler,
    Message,
    PresenceEvent,
    Publication,
    RecoveryResult,
    StreamPosition,
    check_recovery,
    decode_wire,
    encode_json,
    encode_wire,
    fold_members,
    idempotency_digest,
    new_publication_id,
    public_user,
    topic_list,
    wire_size,
)
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.settings import HistoryPolicy

log = logging.getLogger(__name__)


class BrokerUnavailable(RealtimeError):
    """The backend cannot be reached. Nothing was silently dropped: the caller decides.

    A :class:`RealtimeError` with code ``unavailable`` so an event handler that lets it
    propagate gives the client the contract's error reply rather than ``internal``.
    """

    def __init__(self, message: str = "realtime broker unavailable") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


DEFAULT_MAX_HISTORY_CHANNELS = 100_000
"""Channels holding history per broker (``DIHYA_RT_MAX_HISTORY_CHANNELS``)."""

DEFAULT_MAX_HISTORY_BYTES_PER_CHANNEL = 4 * 1024 * 1024
"""History bytes kept per channel (``DIHYA_RT_MAX_HISTORY_BYTES_PER_CHANNEL``)."""

DEFAULT_MAX_HISTORY_BYTES = 256 * 1024 * 1024
"""History bytes kept in total, all channels together (``DIHYA_RT_MAX_HISTORY_BYTES``).
Enforced by the memory broker; on Redis the total is bounded by Redis's ``maxmemory``."""

DEFAULT_HISTORY_EVICT_IDLE = 600.0
"""Seconds a channel must have been idle before its history may make room for a new channel
(``DIHYA_RT_HISTORY_EVICT_IDLE``)."""


class HistoryChannelsFull(RealtimeError):
    """Publishing would start history on one channel more than the broker keeps, and every
    channel holding history was published within ``history_evict_idle`` seconds.

    Code ``unavailable`` with details ``{"reason": "history_channels", "limit": N}``: nothing
    was published. Recent history is never evicted to make room, so a client creating
    channels cannot erase other users' recent history; it can only push out history idle for
    longer, the least recently published first, one channel per new channel it starts.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(ErrorCode.UNAVAILABLE,
                         f"too many channels with history (limit {limit}); try again later",
                         {"reason": "history_channels", "limit": limit})

class Broker(ABC):
    """Channel state and fan-out for one or many server processes.

    Channel names are opaque here; namespace policy (history size and ttl) is passed in by
    the caller as a :class:`HistoryPolicy` on every call that may create channel state.
    """

    def __init__(
        self,
        *,
        max_history_channels: int = DEFAULT_MAX_HISTORY_CHANNELS,
        max_history_bytes_per_channel: int = DEFAULT_MAX_HISTORY_BYTES_PER_CHANNEL,
        max_history_bytes: int = DEFAULT_MAX_HISTORY_BYTES,
        history_evict_idle: float = DEFAULT_HISTORY_EVICT_IDLE,
    ) -> None:
        self.max_history_channels = max_history_channels
        self.max_history_bytes_per_channel = max_history_bytes_per_channel
        self.max_history_bytes = max_history_bytes
        self.history_evict_idle = history_evict_idle
        self._handler: Handler | None = None
        self._maintenance: threading.Thread | None = None
        self._maintenance_stop = threading.Event()
        self._node_reaped: list[Callable[[str], None]] = []

    # -- publications -------------------------------------------------------------------------

    @abstractmethod
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
        """Publish ``data`` on ``channel``; return ``(publication, created)``.

        Assigning the offset (+1 per channel, 1 for the first publication of an epoch),
        appending to history (at most ``history.size`` kept and at most
        ``max_history_bytes_per_channel`` bytes of JSON, the oldest trimmed first; all of it
        dropped after ``history.ttl`` seconds without a publish, which also ends the epoch)
        and fanning
        out to every process's handler are ONE atomic step per channel: every handler sees
        a channel's publications in offset order with no gaps, even with concurrent
        publishers in different processes. With ``history.size == 0`` offsets still advance
        but nothing is stored.

        The same ``idempotency_key`` on the same channel within ``idempotency_ttl`` seconds
        returns the first publication's result with ``created=False`` and publishes nothing,
        so a client resend or a worker retry is harmless. Only the result is kept for the
        ttl (channel, offset, epoch, id, ts): the repeated publication has ``data=None``
        and ``from_=None``.

        At most ``max_history_channels`` channels hold history. Starting history on one more
        drops the history of the channel published least recently if it expired or has been
        idle for ``history_evict_idle`` seconds (its offsets and epoch go on: a recovery
        reaching back says ``recovered=False``); otherwise it raises
        :class:`HistoryChannelsFull` and publishes nothing.

        All channels together keep at most ``max_history_bytes`` of history on the memory
        broker: past it, the oldest publications of the least recently published channels
        are trimmed (a recovery reaching back says ``recovered=False``); the channel
        published to always keeps its newest publication, and a publish is never refused
        because of other channels' history. On Redis the total is bounded by Redis's
        ``maxmemory`` (docs/limits.md). Raises :class:`BrokerUnavailable` when the backend
        cannot be reached or refuses the write for lack of memory.
        """

    @abstractmethod
    def position(self, channel: str, history: HistoryPolicy) -> StreamPosition:
        """The channel's current top offset and epoch (creating an epoch if it has none)."""

    @abstractmethod
    def history(
        self,
        channel: str,
        *,
        history: HistoryPolicy,
        since: StreamPosition | None = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> RecoveryResult:
        """Read a channel's retained publications, consistently with its position.

        With ``since``: every publication after ``since.offset`` in order, exactly once,
        ``recovered=True`` (empty when ``since`` is the top). ``recovered=False`` with an
        empty list when the epoch differs, when history no longer reaches back to
        ``since.offset + 1``, or when more than ``limit`` were missed - never a partial list.
        With ``page``: only the first ``page`` of those, and ``more=True`` when the rest
        follows (ask again from the last offset returned).

        Without ``since``: the latest ``limit`` publications (all retained when ``limit`` is
        None), ascending by offset, ``recovered=True``.
        """

    # -- presence -----------------------------------------------------------------------------

    @abstractmethod
    def presence_add(self, channel: str, conn_id: str, user: dict[str, Any], node_id: str) -> bool:
        """Record that connection ``conn_id`` of ``user`` (served by ``node_id``) is here.

        Returns True when it is the user's first connection in the channel; the broker then
        fans out a ``PresenceEvent("join")`` to every process's handler. Adding a connection
        that is already present changes nothing and returns False.
        """

    @abstractmethod
    def presence_remove(self, channel: str, conn_id: str) -> bool:
        """Forget connection ``conn_id`` in ``channel``.

        Returns True when it was the user's last connection there; a ``PresenceEvent("leave")``
        is then fanned out. Removing an unknown connection returns False.
        """

    @abstractmethod
    def presence(self, channel: str) -> list[dict[str, Any]]:
        """One entry per user: ``{"user_id", "name", "connections": int, "since": float}``.

        ``since`` is the UNIX time of the user's oldest connection still present.
        """

    # -- node liveness ------------------------------------------------------------------------

    @abstractmethod
    def heartbeat(self, node_id: str) -> None:
        """Record that ``node_id`` is alive now."""

    @abstractmethod
    def reap_dead_nodes(self, ttl: float) -> int:
        """Remove every presence entry of nodes silent for more than ``ttl`` seconds.

        Users who lose their last connection get a leave event. Exactly one reaper wins a
        given dead node, however many processes reap at once. Returns the number of
        connections removed.
        """

    def add_node_reaped_hook(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(node_id)`` when this process reaps a dead node (exactly one process
        does, see :meth:`reap_dead_nodes`), after its presence entries are removed: state a
        feature keeps per node elsewhere (webhooks' channel occupancy) is cleaned up once."""
        self._node_reaped.append(fn)

    def _tell_node_reaped(self, node_id: str) -> None:
        for fn in list(self._node_reaped):
            try:
                fn(node_id)
            except Exception:
                log.warning("a node-reaped hook failed for node %s", node_id, exc_info=True)

    def run_maintenance(self, node_id: str, interval: float, ttl: float) -> None:
        """Heartbeat ``node_id`` and reap dead nodes every ``interval`` seconds.

        Runs on a daemon thread (a greenlet under gevent) until :meth:`stop`; an unavailable
        backend is logged and retried at the next tick, never fatal.
        """
        if self._maintenance is not None:
            return
        self._maintenance_stop.clear()

        def loop() -> None:
            while True:
                try:
                    self.heartbeat(node_id)
                    self.reap_dead_nodes(ttl)
                except Exception:
                    log.warning("broker maintenance failed; retrying", exc_info=True)
                if self._maintenance_stop.wait(interval):
                    return

        self._maintenance = threading.Thread(
            target=loop, name=f"dihya-broker-maintenance-{node_id}", daemon=True
        )
        self._maintenance.start()

    def stop(self) -> None:
        """Stop the maintenance thread started by :meth:`run_maintenance`."""
        self._maintenance_stop.set()
        if self._maintenance is not None:
            self._maintenance.join(timeout=5)
            self._maintenance = None

    # -- fan-out ------------------------------------------------------------------------------

    @abstractmethod
    def send(self, topics: str | Iterable[str], data: Any) -> None:
        """Send ``data`` (JSON-able) as a :class:`Message` on ``topics`` (one or several):
        received by the processes watching a topic when it arrives, and by nobody else. Unlike a
        publication it has no offset and no history (what is missed is gone), which makes it
        one SPUBLISH per topic on Redis, pipelined, with ``data`` encoded once. For messages
        addressed to a user's connections, wherever they are (``kernel.rooms.user_topic``).
        Raises :class:`BrokerUnavailable` (Redis), ``TypeError`` when ``data`` is not
        JSON-able (Redis; the memory broker hands the object over as it is)."""

    def watch(self, channels: str | Iterable[str]) -> None:
        """Receive the publications and presence events of ``channels`` (one name or
        several, waited for together) from now on (interest routing: a process receives only
        the channels it watches). Once :meth:`start` has run, returns only when every
        publication made afterwards will reach the handler; raises :class:`BrokerUnavailable`
        when the backend cannot promise it (the channels stay watched, until
        :meth:`unwatch`: the Redis broker subscribes them when it can). Watching a watched
        channel changes nothing. The memory broker, one process, routes nothing:
        its handler sees every channel, watched or not."""
        return None

    def unwatch(self, channel: str) -> None:
        """Stop receiving ``channel`` (soon: a message already on its way may still come)."""
        return None

    def set_handler(self, fn: Handler) -> None:
        """Receive the publications and presence events of the watched channels, and the
        messages of the watched topics (every channel and topic on the memory broker), from
        any process.

        Calls for one channel arrive in order. The Redis broker calls it from its listener
        thread; the memory broker calls it in the publishing thread, inside the channel's
        critical section - so it must be quick and must not block on other channels.
        """
        self._handler = fn

    def _dispatch(self, item: Publication | PresenceEvent | Message) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            handler(item)
        except Exception:
            # One bad handler call must not stop delivery of everything after it.
            log.exception("broker handler failed for %s",
                          item.topic if isinstance(item, Message) else item.channel)

    @abstractmethod
    def start(self) -> None:
        """Begin receiving fan-out (publications from other processes)."""

    @abstractmethod
    def close(self) -> None:
        """Stop receiving, stop maintenance, release connections."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`BrokerUnavailable` if the backend is down (for ``/readyz``)."""


__all__ = [
    "DEFAULT_HISTORY_EVICT_IDLE",
    "DEFAULT_MAX_HISTORY_BYTES",
    "DEFAULT_MAX_HISTORY_BYTES_PER_CHANNEL",
    "DEFAULT_MAX_HISTORY_CHANNELS",
    "Broker",
    "BrokerUnavailable",
    "Handler",
    "HistoryChannelsFull",
    "Message",
    "PresenceEvent",
    "Publication",
    "RecoveryResult",
    "StreamPosition",
    "check_recovery",
    "decode_wire",
    "encode_json",
    "encode_wire",
    "fold_members",
    "idempotency_digest",
    "new_publication_id",
    "public_user",
    "topic_list",
    "wire_size",
]
