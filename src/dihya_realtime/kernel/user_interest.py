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
from typing import TYPE_CHECKING

from dihya_realtime.kernel.errors import RealtimeError
from dihya_realtime.kernel.interest import Interest
from dihya_realtime.kernel.rooms import user_topic

if TYPE_CHECKING:
    from dihya_realtime.kernel.host import Host

log = logging.getLogger("dihya_realtime")


class UserInterest:
    """Watch a user's topic on their first local connection, unwatch it a linger after the
    last (the rule is :class:`~dihya_realtime.kernel.interest.Interest`'s)."""

    def __init__(self, host: Host, linger: float) -> None:
        self.host = host
        self.interest = Interest("user interest", host.broker, linger, in_use=self._in_use,
                                 topic_of=user_topic, server=lambda: host.socketio.server)

    @property
    def linger(self) -> float:
        return self.interest.linger

    def acquire(self, user_id: str) -> None:
        """A connection of ``user_id`` was added to its table: returns once the broker
        delivers the user's topic here. With the broker unavailable the connection is still
        accepted (the topic is subscribed when the broker is back); a warning says so."""
        try:
            self.interest.acquire(user_id)
        except RealtimeError:  # BrokerUnavailable
            log.warning("the broker is unavailable: messages to user %r may miss this "
                        "connection until it is back", user_id)

    def release(self, user_id: str) -> None:
        """A connection of ``user_id`` was removed from its table."""
        self.interest.release(user_id)

    def tick(self, now: float | None = None) -> bool:
        """See :meth:`Interest.tick` (public so tests can drive time)."""
        return self.interest.tick(now)

    def _in_use(self, user_id: str) -> bool:
        host = self.host
        return bool(host.connections.of_user(user_id)
                    or host.namespace_connections.of_user(user_id))


__all__ = ["UserInterest"]
