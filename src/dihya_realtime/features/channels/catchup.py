"""No silent gap after the broker's fan-out comes back: catch up from history, or say so.

Why: the Redis broker receives publications over one pub/sub subscription. When that
connection is lost (a Redis restart, a network cut), publications acked in the meantime are
in history but were never fanned out: live subscribers on this process would simply never see
them, and nothing told them. So this process remembers, per locally subscribed channel, the
last position it delivered (from the subscribe replies and every publication it fans out).
When the broker has its subscription back (and before it reports ready), :meth:`catch_up`
reads each such channel's history from that position and delivers what was missed, in order,
through the normal delivery path; publications that then also arrive live are dropped as
duplicates (:meth:`accept`). When history cannot cover the gap (a new epoch after Redis lost
its data, history trimmed or expired, no known position), every local subscription of that
channel is removed with an ``unsubscribed`` event, ``reason: "recover"``: the client
subscribes again with ``since`` (its last offset and epoch) and learns from ``recovered``
whether it has everything.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from dihya_realtime.broker import Publication, StreamPosition

if TYPE_CHECKING:
    from dihya_realtime.features.channels.service import ChannelService

log = logging.getLogger("dihya_realtime.catchup")

RECOVER_REASON = "recover"
PRUNE_FLOOR = 1024
"""Positions kept before channels without local subscribers are forgotten (then twice the
number kept)."""
ROOM_PREFIX = "ch:"


class FanoutCatchUp:
    """Positions delivered per local channel, and the catch-up run on re-subscription."""

    def __init__(self, channels: ChannelService) -> None:
        self.channels = channels
        self._lock = threading.Lock()
        self._positions: dict[str, StreamPosition] = {}
        self._prune_at = PRUNE_FLOOR
        hook = getattr(channels.broker, "add_resubscribe_hook", None)
        # Only brokers whose fan-out can be lost (Redis) need it; with the memory broker
        # nothing is tracked at all.
        self.enabled = hook is not None
        if hook is not None:
            hook(self.catch_up)

    def subscribed(self, channel: str, top: StreamPosition) -> None:
        """A local subscription starts at ``top`` (its reply carried everything up to it).

        Only the first local subscription of a channel (or one in a new epoch) sets the
        position: with others live already, publications up to ``top`` may still be on their
        way through the fan-out, and they need them."""
        if not self.enabled:
            return
        with self._lock:
            known = self._positions.get(channel)
            if known is None or known.epoch != top.epoch:
                self._positions[channel] = top
            crowded = len(self._positions) > self._prune_at
        if crowded:
            self._prune()

    def forget(self, channel: str) -> None:
        """The last local subscriber of ``channel`` left: what was delivered no longer
        matters, and publications stop arriving here (interest routing), so a position kept
        would go stale; the next first subscriber sets it from its reply."""
        with self._lock:
            self._positions.pop(channel, None)

    def _prune(self) -> None:
        """Forget channels nobody here subscribes to any more (bounded memory)."""
        local = self._local_channels()
        with self._lock:
            for channel in set(self._positions) - local:
                del self._positions[channel]
            self._prune_at = max(PRUNE_FLOOR, 2 * len(self._positions))

    def accept(self, pub: Publication, local: bool) -> bool:
        """Record ``pub`` as delivered here; ``False`` if it was already (a duplicate)."""
        if not self.enabled:
            return True
        with self._lock:
            if not local:
                self._positions.pop(pub.channel, None)
                return True
            known = self._positions.get(pub.channel)
            if known is not None and known.epoch == pub.epoch and pub.offset <= known.offset:
                return False
            self._positions[pub.channel] = StreamPosition(pub.offset, pub.epoch)
            return True

    def catch_up(self) -> None:
        """Bring every locally subscribed channel up to its top (called by the broker once its
        fan-out is subscribed again, before it reports ready). Raises
        :class:`~dihya_realtime.broker.BrokerUnavailable` if the broker fails meanwhile: the
        broker then subscribes again and calls this again (nothing was marked delivered)."""
        self._prune()
        local = self._local_channels()
        delivered = recovered = 0
        for channel in sorted(local):
            with self._lock:
                since = self._positions.get(channel)
            ref = self.channels.resolve(channel)
            if since is None:
                recovered += self._recover(channel)
                continue
            result = self.channels.broker.history(channel, history=ref.policy.history,
                                                  since=since)
            if not result.recovered:
                recovered += self._recover(channel)
                continue
            for pub in result.publications:
                self.channels.on_broker_message(pub)
                delivered += 1
        if delivered or recovered:
            log.warning("fan-out back: %d missed publications delivered from history, %d "
                        "subscriptions told to recover", delivered, recovered)

    def _local_channels(self) -> set[str]:
        rooms = self.channels.rt.socketio.server.manager.rooms.get("/") or {}
        return {room[len(ROOM_PREFIX):] for room, members in list(rooms.items())
                if isinstance(room, str) and room.startswith(ROOM_PREFIX) and members}

    def _recover(self, channel: str) -> int:
        rt = self.channels.rt
        rooms = rt.socketio.server.manager.rooms.get("/") or {}
        told = 0
        for sid in list(rooms.get(ROOM_PREFIX + channel) or ()):
            conn = rt.connections.get(sid)
            if conn is not None and self.channels.remove(conn, channel, RECOVER_REASON):
                told += 1
        with self._lock:
            self._positions.pop(channel, None)
        return told
