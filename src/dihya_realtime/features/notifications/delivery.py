"""Live delivery: push new notifications and state changes to every connection of a user.

Delivery never fails a write: the rows are stored first, and a user who misses a push gets
the counts at the next connect. Pushes travel on the user's topic (``rt.emit_to_user``), so
only the processes where the user has a connection receive them; a process without a
Socket.IO server (a worker: ``Realtime()`` without a Flask app) sends them the same way when
Redis is configured, and skips live delivery when there is none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dihya_realtime.features.notifications.inbox import Inbox
from dihya_realtime.features.notifications.preferences import PushPreferences
from dihya_realtime.features.notifications.schemas import State

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.notifications")


class Delivery:
    """Emit ``notifications:new``, ``:updated`` and ``:counts`` to a user's connections."""

    def __init__(self, rt: Realtime, inbox: Inbox, preferences: PushPreferences) -> None:
        self.rt = rt
        self.inbox = inbox
        self.preferences = preferences
        # then, for users with no live connection: Web Push (push_service.WebPush), if on
        self.after: Callable[[list[dict[str, Any]], set[str]], object] | None = None

    def deliver(self, notifications: list[dict[str, Any]]) -> None:
        """Push new notifications (unless muted) and the new counts to their users.

        Delivery failures are logged, never raised: the notifications are stored, and the
        next connect pushes the counts anyway.
        """
        users = list(dict.fromkeys(n["user_id"] for n in notifications))
        try:
            muted = self.preferences.muted(users, notifications[0]["category"])
            for n in notifications:
                if n["user_id"] not in muted:
                    self.emit_to_user(n["user_id"], "notifications:new", n)
            for user, counts in self.inbox.counts_many(users).items():
                self.emit_to_user(user, "notifications:counts", counts)
            if self.after is not None:
                self.after(notifications, muted)
        except Exception:
            log.exception("live delivery of %d notifications failed (they are stored)",
                          len(notifications))

    def changed(self, user_id: str, ids: list[str], state: State,
                skip_sid: str | None = None) -> dict[str, int]:
        """Tell the user's other connections what changed; returns the new counts.

        ``skip_sid`` (the connection that made the change) learns it from its reply instead.
        """
        counts = self.inbox.counts(user_id)
        if ids:
            try:
                self.emit_to_user(user_id, "notifications:updated",
                                  {"ids": ids, "state": state}, skip_sid=skip_sid)
                self.emit_to_user(user_id, "notifications:counts", counts, skip_sid=skip_sid)
            except Exception:
                log.exception("pushing a notification state change failed")
        return counts

    def emit_to_user(self, user_id: str, event: str, data: Any,
                     skip_sid: str | None = None) -> None:
        self.rt.emit_to_user(user_id, event, data, skip_sid=skip_sid)
