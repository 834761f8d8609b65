"""The embedded broker: all state in this process's memory.

For one process (``make run``, unit tests). Each channel has a lock; publishing assigns the
offset, appends history and calls the handler inside it, so order is guaranteed without any
queue. Expiry uses monotonic timestamps checked lazily on access - no timer threads.

What it retains is bounded: history by count and bytes per channel, by the number of
channels holding any, and in total (``max_history_bytes``: a running total and the channels'
last-publish order, so enforcing it costs only the publications it trims, never a scan); an
idempotency entry is only the first publication's result.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dihya_realtime.broker.base import (
    Broker,
    HistoryChannelsFull,
    Message,
    PresenceEvent,
    Publication,
    RecoveryResult,
    StreamPosition,
    check_recovery,
    decode_wire,
    encode_wire,
    fold_members,
    idempotency_digest,
    new_publication_id,
    public_user,
    topic_list,
)
from dihya_realtime.kernel.settings import HistoryPolicy

# Expired channels are swept once every this many publishes, so memory stays bounded by the
# live channels without a background thread.
_SWEEP_EVERY = 1000


def new_epoch() -> str:
    return secrets.token_hex(6)


@dataclass
class _Stream:
    epoch: str
    expires_at: float
    offset: int = 0
    # Each publication as its JSON bytes, with their length. Kept encoded, not as Python
    # objects: decoded JSON weighs up to ~25× its text in objects (a 64 KB `[{},{},…]` is
    # 21,000 dicts, 1.5 MB), and the history caps count JSON bytes, so objects would let a
    # client make this process hold many times what the caps say.
    publications: deque[tuple[bytes, int]] = field(default_factory=deque)
    size: int = 0  # bytes of ``publications``

    def retained(self) -> list[Publication]:
        return [decode_wire(raw) for raw, _ in self.publications]


@dataclass(frozen=True, slots=True)
class _Result:
    """What an idempotency entry keeps: the result, never the data (issue 12)."""

    offset: int
    epoch: str
    id: str
    ts: float


@dataclass
class _Conn:
    user: dict[str, Any]
    node_id: str
    since: float


@dataclass
class _Channel:
    lock: threading.Lock = field(default_factory=threading.Lock)
    stream: _Stream | None = None
    idempotency: OrderedDict[str, tuple[_Result, float]] = field(default_factory=OrderedDict)
    conns: dict[str, _Conn] = field(default_factory=dict)
    user_counts: dict[str, int] = field(default_factory=dict)


class MemoryBroker(Broker):
    """One process's broker. The handler runs synchronously in the publisher's thread."""

    def __init__(self, **caps: Any) -> None:
        super().__init__(**caps)
        self._channels: dict[str, _Channel] = {}
        # channels whose stream holds publications → last publish (monotonic), oldest first
        self._with_history: OrderedDict[str, float] = OrderedDict()
        self._history_bytes = 0  # sum of every stream's ``size``; changed under ``_lock``
        self._lock = threading.Lock()  # guards the dicts below, never held during a handler
        self._node_conns: dict[str, set[tuple[str, str]]] = {}
        self._heartbeats: dict[str, float] = {}
        self._publishes = 0

    @contextmanager
    def _locked(self, name: str) -> Iterator[_Channel]:
        """Hold the channel's lock. Re-checks after locking because a sweep may have dropped
        the channel meanwhile; state written to a dropped channel would be lost."""
        while True:
            with self._lock:
                state = self._channels.get(name)
                if state is None:
                    state = self._channels[name] = _Channel()
            with state.lock:
                if self._channels.get(name) is state:
                    yield state
                    return

    @property
    def history_bytes(self) -> int:
        """Bytes of history held by all channels together (at most ``max_history_bytes``,
        give or take the newest publication of channels being published to)."""
        return self._history_bytes

    def _live_stream(self, channel: _Channel, history: HistoryPolicy, now: float) -> _Stream:
        """The channel's stream, or a new epoch if it expired. Caller holds ``channel.lock``."""
        stream = channel.stream
        if stream is None or stream.expires_at <= now:
            if stream is not None and stream.size:
                with self._lock:
                    self._history_bytes -= stream.size
            stream = channel.stream = _Stream(epoch=new_epoch(), expires_at=now + history.ttl)
        return stream

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
        with self._locked(channel) as state:
            now = time.monotonic()
            if idempotency_key is not None:
                idempotency_key = idempotency_digest(idempotency_key)
                _prune_idempotency(state.idempotency, now)
                seen = state.idempotency.get(idempotency_key)
                if seen is not None and seen[1] > now:
                    r = seen[0]
                    return Publication(channel, r.offset, r.epoch, r.id, r.ts, None), False
            stream = self._live_stream(state, history, now)
            if history.size > 0 and not stream.publications:
                self._claim_history(channel, now)
            stream.offset += 1
            stream.expires_at = now + history.ttl
            pub = Publication(
                channel=channel,
                offset=stream.offset,
                epoch=stream.epoch,
                id=new_publication_id(),
                ts=time.time(),
                data=data,
                from_=from_,
            )
            held = stream.size
            if history.size > 0:
                # a copy of exactly its length: orjson's buffer is allocated several times
                # larger and the allocator keeps the block (tracemalloc: 507 KB for 60 KB)
                raw = bytes(memoryview(encode_wire(pub)))
                size = len(raw)
                stream.publications.append((raw, size))
                stream.size += size
                while stream.publications and (
                        len(stream.publications) > history.size
                        or stream.size > self.max_history_bytes_per_channel):
                    stream.size -= stream.publications.popleft()[1]
            else:
                stream.publications.clear()
                stream.size = 0
            with self._lock:
                self._history_bytes += stream.size - held
                if not stream.publications:
                    self._with_history.pop(channel, None)
                elif channel in self._with_history:
                    self._with_history[channel] = now
                    self._with_history.move_to_end(channel)
                if self._history_bytes > self.max_history_bytes:
                    self._trim_to_budget(channel, stream)
            if idempotency_key is not None:
                state.idempotency[idempotency_key] = (
                    _Result(pub.offset, pub.epoch, pub.id, pub.ts), now + idempotency_ttl)
            self._dispatch(pub)
        self._maybe_sweep()
        return pub, True

    def _trim_to_budget(self, channel: str, own: _Stream) -> None:
        """Trim the oldest publications of the least recently published channels until the
        total fits ``max_history_bytes``; ``channel`` (just published, so last in the order)
        keeps at least its newest publication.

        Caller holds ``channel``'s lock and ``self._lock``. Costs the publications trimmed
        (plus channels skipped): a channel whose lock is taken is publishing right now and
        checks the total itself, since we never wait for another channel's lock while
        holding ours. Trimmed offsets and the epoch stay: a recovery reaching back says
        ``recovered=False``.
        """
        emptied: list[str] = []
        for name in self._with_history:
            if self._history_bytes <= self.max_history_bytes:
                break
            if name == channel:
                pubs = own.publications
                while len(pubs) > 1 and self._history_bytes > self.max_history_bytes:
                    size = pubs.popleft()[1]
                    own.size -= size
                    self._history_bytes -= size
                continue
            state = self._channels.get(name)
            if state is None or state.stream is None:
                emptied.append(name)
                continue
            if not state.lock.acquire(blocking=False):
                continue
            try:
                stream = state.stream
                while stream.publications and self._history_bytes > self.max_history_bytes:
                    size = stream.publications.popleft()[1]
                    stream.size -= size
                    self._history_bytes -= size
                if not stream.publications:
                    emptied.append(name)
            finally:
                state.lock.release()
        for name in emptied:
            del self._with_history[name]

    def _claim_history(self, channel: str, now: float) -> None:
        """Count ``channel`` among those holding history; at the cap, make room or refuse.

        Caller holds the channel's lock. Room is made by dropping the history of the channel
        published least recently, only if it expired or has been idle for
        ``history_evict_idle`` seconds; otherwise :class:`HistoryChannelsFull`.
        """
        with self._lock:
            if channel in self._with_history:
                return
            while len(self._with_history) >= self.max_history_channels:
                victim, last = next(iter(self._with_history.items()))
                state = self._channels.get(victim)
                if state is None or state.stream is None:
                    del self._with_history[victim]
                    continue
                expired = state.stream.expires_at <= now
                if not expired and now - last < self.history_evict_idle:
                    raise HistoryChannelsFull(self.max_history_channels)
                # never wait for another channel's lock while holding ours
                if not state.lock.acquire(blocking=False):
                    raise HistoryChannelsFull(self.max_history_channels)
                try:
                    # offsets and epoch stay: a recovery reaching back says recovered=false
                    state.stream.publications.clear()
                    self._history_bytes -= state.stream.size
                    state.stream.size = 0
                finally:
                    state.lock.release()
                del self._with_history[victim]
            self._with_history[channel] = now

    def _maybe_sweep(self) -> None:
        with self._lock:
            self._publishes += 1
            if self._publishes % _SWEEP_EVERY:
                return
            self._sweep(time.monotonic())

    def _sweep(self, now: float) -> None:
        """Forget expired channels. Caller holds ``self._lock``."""
        for name, state in list(self._channels.items()):
            stream_gone = state.stream is None or state.stream.expires_at <= now
            # a locked channel may be publishing right now: it re-claims if it needs to
            if stream_gone and name in self._with_history and not state.lock.locked():
                del self._with_history[name]
                if state.stream is not None:
                    state.stream.publications.clear()
                    self._history_bytes -= state.stream.size
                    state.stream.size = 0
            idem_gone = all(exp <= now for _, exp in state.idempotency.values())
            if stream_gone and idem_gone and not state.conns and not state.lock.locked():
                del self._channels[name]
                self._with_history.pop(name, None)

    def position(self, channel: str, history: HistoryPolicy) -> StreamPosition:
        with self._locked(channel) as state:
            stream = self._live_stream(state, history, time.monotonic())
            return StreamPosition(stream.offset, stream.epoch)

    def history(
        self,
        channel: str,
        *,
        history: HistoryPolicy,
        since: StreamPosition | None = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> RecoveryResult:
        with self._locked(channel) as state:
            stream = self._live_stream(state, history, time.monotonic())
            top = StreamPosition(stream.offset, stream.epoch)
            retained = stream.retained()
        if since is None:
            if limit is not None:
                retained = retained[-limit:] if limit > 0 else []
            return RecoveryResult(True, retained, top)
        missed = [p for p in retained if p.offset > since.offset]
        return check_recovery(since, top, missed if page is None else missed[:page], limit, page)

    # -- presence -----------------------------------------------------------------------------

    def presence_add(self, channel: str, conn_id: str, user: dict[str, Any], node_id: str) -> bool:
        user_id = str(user["user_id"])
        with self._locked(channel) as state:
            if conn_id in state.conns:
                return False
            state.conns[conn_id] = _Conn(user=dict(user), node_id=node_id, since=time.time())
            with self._lock:
                self._node_conns.setdefault(node_id, set()).add((channel, conn_id))
                # A node that never heartbeats must still be reapable once it dies.
                self._heartbeats.setdefault(node_id, time.monotonic())
            count = state.user_counts.get(user_id, 0) + 1
            state.user_counts[user_id] = count
            if count == 1:
                self._dispatch(PresenceEvent(channel, "join", public_user(user)))
            return count == 1

    def presence_remove(self, channel: str, conn_id: str) -> bool:
        return self._remove(channel, conn_id) is True

    def _remove(self, channel: str, conn_id: str) -> bool | None:
        """True: the user's last connection left; False: others remain; None: not present."""
        with self._locked(channel) as state:
            conn = state.conns.pop(conn_id, None)
            if conn is None:
                return None
            with self._lock:
                node = self._node_conns.get(conn.node_id)
                if node is not None:
                    node.discard((channel, conn_id))
            user_id = str(conn.user["user_id"])
            count = state.user_counts.get(user_id, 1) - 1
            if count > 0:
                state.user_counts[user_id] = count
                return False
            state.user_counts.pop(user_id, None)
            self._dispatch(PresenceEvent(channel, "leave", public_user(conn.user)))
            return True

    def presence(self, channel: str) -> list[dict[str, Any]]:
        with self._locked(channel) as state:
            conns = list(state.conns.values())
        return fold_members((c.user, c.since) for c in conns)

    # -- node liveness ------------------------------------------------------------------------

    def heartbeat(self, node_id: str) -> None:
        with self._lock:
            self._heartbeats[node_id] = time.monotonic()

    def reap_dead_nodes(self, ttl: float) -> int:
        cutoff = time.monotonic() - ttl
        with self._lock:
            # Claiming under the lock is what makes exactly one reaper win a node.
            dead = [n for n, seen in self._heartbeats.items() if seen < cutoff]
            claimed = [(n, self._node_conns.pop(n, set())) for n in dead]
            for node_id in dead:
                del self._heartbeats[node_id]
        removed = 0
        for node_id, conns in claimed:
            for channel, conn_id in sorted(conns):
                if self._remove(channel, conn_id) is not None:
                    removed += 1
            self._tell_node_reaped(node_id)
        return removed

    # -- fan-out ------------------------------------------------------------------------------

    def send(self, topics: str | Iterable[str], data: Any) -> None:
        """Hand ``data`` to the handler at once, in the sending thread, once per topic (one
        process: every topic is watched)."""
        for topic in topic_list(topics):
            self._dispatch(Message(topic, data))

    def start(self) -> None:
        """Nothing to receive: every publisher is in this process."""

    def close(self) -> None:
        self.stop()

    def ping(self) -> None:
        """Always up: the state is in this process."""


def _prune_idempotency(seen: OrderedDict[str, tuple[_Result, float]], now: float) -> None:
    # Insertion order is expiry order when every caller uses the same ttl (the usual case);
    # with mixed ttls an entry may outlive its ttl a little, which is harmless.
    while seen:
        key, (_, expires_at) = next(iter(seen.items()))
        if expires_at > now:
            return
        del seen[key]
