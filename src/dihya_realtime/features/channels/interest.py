"""Which channels this process asks the broker for: those its connections subscribe to.

Why: with interest routing (issue 14) a process receives a channel's publications only while
it watches the channel, so the broker must be told when the first local subscriber arrives
and when the last one is gone. The first: :meth:`ChannelInterest.acquire`, before the
subscribe reply is built, waits for the broker's confirmation, so nothing published after the
reply's position is missed. The last: :meth:`ChannelInterest.release` lets the channel linger
``DIHYA_RT_INTEREST_LINGER`` seconds before it is unwatched, so a client that unsubscribes and
subscribes again (a page reload) does not cost a round of SUNSUBSCRIBE / SSUBSCRIBE.

Whether a channel is still used is read from the service's own state (the Socket.IO room of
its local subscribers, subscriptions being set up), under the service's lock: a subscriber
enters the room under that lock before it calls :meth:`acquire`, so an unwatch decided under
the lock either saw it, or came first and its watch subscribes again.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from dihya_realtime.features.channels.catchup import ROOM_PREFIX
from dihya_realtime.kernel.sweeper import Sweeper

if TYPE_CHECKING:
    from dihya_realtime.features.channels.service import ChannelService


class ChannelInterest:
    """Watch a channel on its first local subscriber, unwatch it a linger after the last."""

    def __init__(self, channels: ChannelService, linger: float) -> None:
        self.channels = channels
        self.linger = linger
        self._idle: dict[str, float] = {}  # channel → when it may be unwatched (monotonic)
        self._sweeper: Sweeper | None = None
        self._sweeper_lock = threading.Lock()

    def acquire(self, channel: str) -> None:
        """A local subscription of ``channel`` is being set up (it is in the room already):
        returns once the broker delivers the channel here. Raises ``BrokerUnavailable``."""
        with self.channels._lock:
            self._idle.pop(channel, None)
        self.channels.broker.watch(channel)

    def release(self, channel: str) -> None:
        """A local subscription of ``channel`` ended (or was never completed)."""
        with self.channels._lock:
            if self._in_use(channel):
                return
            # positions are kept only for channels with local subscribers: the next first
            # subscriber starts from its own reply's position
            self.channels.catchup.forget(channel)
            if self.linger <= 0:
                self.channels.broker.unwatch(channel)
                return
            self._idle[channel] = time.monotonic() + self.linger
        self._ensure_sweeper().wake()

    def tick(self, now: float | None = None) -> bool:
        """Unwatch the channels idle for the linger and still unused; returns whether any
        remain to look at (the sweeper's contract). Public so tests can drive time."""
        now = time.monotonic() if now is None else now
        with self.channels._lock:
            for channel, due in list(self._idle.items()):
                if due > now:
                    continue
                del self._idle[channel]
                if not self._in_use(channel):
                    self.channels.broker.unwatch(channel)
            return bool(self._idle)

    def _in_use(self, channel: str) -> bool:
        """Is ``channel`` subscribed, or being subscribed, by a connection here? (Under the
        service's lock.)"""
        svc = self.channels
        return (svc._has_local_members(ROOM_PREFIX + channel) or channel in svc._pending
                or any(channel in reserved for reserved in svc._reserved.values()))

    def _ensure_sweeper(self) -> Sweeper:
        """Built on first use: the Socket.IO server, whose task and sleep it uses, is made
        after the service."""
        with self._sweeper_lock:
            if self._sweeper is None:
                server = self.channels.rt.socketio.server
                self._sweeper = Sweeper("channel interest", min(1.0, max(self.linger / 4, 0.05)),
                                        self.tick, spawn=server.start_background_task,
                                        sleep=lambda seconds: server.sleep(seconds))
            return self._sweeper
