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

from typing import TYPE_CHECKING

from dihya_realtime.features.channels.catchup import ROOM_PREFIX
from dihya_realtime.kernel.interest import Interest

if TYPE_CHECKING:
    from dihya_realtime.features.channels.service import ChannelService


class ChannelInterest(Interest):
    """Watch a channel on its first local subscriber, unwatch it a linger after the last
    (the rule is :class:`~dihya_realtime.kernel.interest.Interest`'s)."""

    def __init__(self, channels: ChannelService, linger: float) -> None:
        self.channels = channels
        super().__init__("channel interest", channels.broker, linger, in_use=self._used,
                         server=lambda: channels.rt.socketio.server, lock=channels._lock,
                         # positions are kept only for channels with local subscribers: the
                         # next first subscriber starts from its own reply's position
                         on_idle=channels.catchup.forget)

    def _used(self, channel: str) -> bool:
        """Is ``channel`` subscribed, or being subscribed, by a connection here? (Under the
        service's lock.)"""
        svc = self.channels
        return (svc._has_local_members(ROOM_PREFIX + channel) or channel in svc._pending
                or any(channel in reserved for reserved in svc._reserved.values()))
