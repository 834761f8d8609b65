"""Which users' topics this process asks the broker for: those of the users connected here.

Why: a message addressed to a user (a notification, a chat push, ``disconnect_user``,
``unsubscribe``) travels on the user's topic (:func:`~dihya_realtime.kernel.rooms.user_topic`,
``Broker.send``), and with interest routing (issue 14) a process receives it only while it
watches the topic. So the topic is watched when the user's first connection here (on any
namespace: ``disconnect_user`` ends the host app's namespaces too) is accepted - before its
CONNECT is acknowledged, so nothing sent to the user after the connect is missed - and
unwatched ``DIHYA_RT_INTEREST_LINGER`` seconds after the last one closed, so a page reload
does not cost a round of SUNSUBSCRIBE / SSUBSCRIBE. The same rule as the channels'
(``features/channels/interest.py``), for users.

Whether a user is still connected is read from the connection tables: a connection is added
to its table before :meth:`UserInterest.acquire`, and removed before :meth:`release`, so an
unwatch decided under the lock either saw it, or came first and the watch subscribes again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from dihya_realtime.kernel.errors import RealtimeError
from dihya_realtime.kernel.rooms import user_topic
from dihya_realtime.kernel.sweeper import Sweeper

if TYPE_CHECKING:
    from dihya_realtime.kernel.host import Host

log = logging.getLogger("dihya_realtime")


class UserInterest:
    """Watch a user's topic on their first local connection, unwatch it a linger after the
    last."""

    def __init__(self, host: Host, linger: float) -> None:
        self.host = host
        self.linger = linger
        self._lock = threading.Lock()
        self._idle: dict[str, float] = {}  # user id → when it may be unwatched (monotonic)
        self._sweeper: Sweeper | None = None

    def acquire(self, user_id: str) -> None:
        """A connection of ``user_id`` was added to its table: returns once the broker
        delivers the user's topic here. With the broker unavailable the connection is still
        accepted (the topic is subscribed when the broker is back); a warning says so."""
        with self._lock:
            self._idle.pop(user_id, None)
        try:
            self.host.broker.watch(user_topic(user_id))
        except RealtimeError:  # BrokerUnavailable
            log.warning("the broker is unavailable: messages to user %r may miss this "
                        "connection until it is back", user_id)

    def release(self, user_id: str) -> None:
        """A connection of ``user_id`` was removed from its table."""
        with self._lock:
            if self._in_use(user_id):
                return
            if self.linger <= 0:
                self.host.broker.unwatch(user_topic(user_id))
                return
            self._idle[user_id] = time.monotonic() + self.linger
        self._ensure_sweeper().wake()

    def tick(self, now: float | None = None) -> bool:
        """Unwatch the topics of users gone for the linger and still gone; returns whether any
        remain to look at (the sweeper's contract). Public so tests can drive time."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for user_id, due in list(self._idle.items()):
                if due > now:
                    continue
                del self._idle[user_id]
                if not self._in_use(user_id):
                    self.host.broker.unwatch(user_topic(user_id))
            return bool(self._idle)

    def _in_use(self, user_id: str) -> bool:
        host = self.host
        return bool(host.connections.of_user(user_id)
                    or host.namespace_connections.of_user(user_id))

    def _ensure_sweeper(self) -> Sweeper:
        """Built on first use: the Socket.IO server, whose task and sleep it uses, is made
        after the lifecycle."""
        with self._lock:
            if self._sweeper is None:
                server = self.host.socketio.server
                self._sweeper = Sweeper("user interest", min(1.0, max(self.linger / 4, 0.05)),
                                        self.tick, spawn=server.start_background_task,
                                        sleep=lambda seconds: server.sleep(seconds))
            return self._sweeper


__all__ = ["UserInterest"]
