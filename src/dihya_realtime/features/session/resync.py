"""``resync``: telling this process's connections that live events may have been missed.

Why: with the Redis broker, everything a process hears from the others comes over its pub/sub
links (issue 14): a user's topic (notifications, chat pushes, ``disconnect_user``), a chat
room's or a document's relay, a channel's publications. When a link breaks (a Redis restart,
a failover, a dropped connection), whatever was sent until the links are subscribed again is
never received here. Channels have offsets and history, and are caught up exactly
(:mod:`dihya_realtime.features.channels.catchup`); the rest has neither, so the server cannot
replay it. It can say so: once the links are back (every watched topic confirmed, before
``/readyz`` reports ready and before anything newly relayed is delivered), every connection
on this process gets one ``resync`` event and re-reads what it shows, as after a reconnect
(``chat:history`` with ``after_seq``, ``notifications:counts``, ``doc:join`` again).

One event per connection and break: the listener drops every link on any break, so every
local connection may have missed something. The emit is local (``ignore_queue``): each
process tells its own connections. The memory broker never loses its fan-out: nothing is
attached there.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.resync")

RESYNC_EVENT = "resync"
REASON = "fanout_restored"
"""``resync.reason``: the broker's fan-out was lost and is back."""


class ResyncNotice:
    """The broker's resubscribe hook that tells every local connection to resync."""

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.told = 0
        """Connections told since start (tests and logs read it)."""

    def attach(self) -> bool:
        """Register with the broker if its fan-out can be lost; returns whether it could."""
        add_hook = getattr(self.rt.broker, "add_resubscribe_hook", None)
        if add_hook is None:
            return False
        add_hook(self.tell)
        return True

    def tell(self) -> None:
        """Emit ``resync`` to every connection of this process on ``/``."""
        socketio = self.rt.socketio
        if socketio is None:
            return
        server = socketio.server
        count = len((server.manager.rooms.get("/") or {}).get(None) or ())
        if not count:
            return
        server.emit(RESYNC_EVENT, {"reason": REASON}, namespace="/", ignore_queue=True)
        self.told += count
        log.warning("fan-out back: %d connections told to resync", count)


__all__ = ["REASON", "RESYNC_EVENT", "ResyncNotice"]
