"""Is a user connected anywhere? Web Push goes only to users with no live connection.

A local check (this process's connection table) is not enough with several processes, and
the user-topic interest says only which processes *watch* a user, not whether they still
hold a connection. So each signed-in connection is recorded in the broker's presence, on a
per-user channel ``push-online:<user_id>`` (not a channel clients can name: namespaces have no
``-``): Redis with several processes, memory with one. The broker's node heartbeats reap the
entries of a process that died, so a crash does not leave a user "online" for ever (each
server process beats for its own node id: :meth:`.push_service.WebPush.beat`).

The race, accepted and documented: a connection that opens while a notification is being
delivered may get both the live ``notifications:new`` and a push (the service worker's
notification is then redundant, never missing); a tab closed without a goodbye counts as
connected until the ping timeout ends it, and a notification in that window is not pushed
(the user sees it at the next visit, as before). With the broker unavailable the check answers
"not connected": a redundant push beats a missing one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dihya_realtime.broker.base import Broker
    from dihya_realtime.kernel.connections import Connection

log = logging.getLogger("dihya_realtime.notifications.push")


def online_channel(user_id: str) -> str:
    return f"push-online:{user_id}"


class PushPresence:
    """Record signed-in connections in the broker's presence; answer "connected anywhere?"."""

    def __init__(self, broker: Broker, node_id: str) -> None:
        self.broker = broker
        self.node_id = node_id

    def on_connect(self, conn: Connection) -> None:
        if conn.principal.anonymous:
            return
        try:
            self.broker.presence_add(online_channel(conn.user_id), conn.sid,
                                     {"user_id": conn.user_id, "name": ""}, self.node_id)
        except Exception:
            log.warning("could not record the connection of %r for Web Push: the user may get "
                        "pushes while connected", conn.user_id, exc_info=True)

    def on_disconnect(self, conn: Connection, reason: str) -> None:
        if conn.principal.anonymous:
            return
        try:
            self.broker.presence_remove(online_channel(conn.user_id), conn.sid)
        except Exception:  # the entry goes when this node's heartbeat is reaped
            log.warning("could not forget a connection of %r for Web Push", conn.user_id,
                        exc_info=True)

    def connected(self, user_id: str) -> bool:
        """Does ``user_id`` hold a live connection on any process?"""
        try:
            return bool(self.broker.presence(online_channel(user_id)))
        except Exception:
            log.warning("presence unavailable: pushing to %r without knowing", user_id)
            return False


__all__ = ["PushPresence", "online_channel"]
