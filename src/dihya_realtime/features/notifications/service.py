"""Notifications: a persistent in-app inbox per user, delivered live to every connection.

What Novu's Inbox, Knock or MagicBell give users, served by this backend:

- **Stored first.** :meth:`NotificationService.notify` writes one row per recipient, then
  delivers. A user with no connection open gets nothing live, but the row is there: at the next
  connect the server pushes ``notifications:counts`` and ``notifications:list`` shows it.
- **Every tab follows.** New notifications go to the user's Socket.IO room (every connection,
  every process, through the Redis message queue when there is one). Every state change a
  client makes is pushed to the user's *other* connections as ``notifications:updated`` plus
  fresh ``notifications:counts``, so a second tab's badge follows the first.
- **Only servers create.** Clients read and change their own notifications; creation is the
  Python API (trusted server code) or ``POST /api/v1/notifications`` with an API key.
- **Works from a worker.** A ``Realtime()`` built without a Flask app has no Socket.IO server;
  it stores, then emits through a write-only Socket.IO emitter on the Redis message queue (or
  skips live delivery when there is no Redis: the next connect still shows everything).

Counts: ``unseen`` is what a badge shows (not yet seen, not archived); ``unread`` is what the
inbox bolds (not yet read, not archived). Marking read also marks seen.

:class:`NotificationService` (``rt.notifications``) is a facade over the feature's parts, one
job each:

- :mod:`.schemas`: the values on the wire (requests, notifications, counts, pages);
- :mod:`.creating`: checking a request, resolving recipients, storing (idempotent);
- :mod:`.inbox`: counts, pages and state changes of a user's own notifications, retention;
- :mod:`.preferences`: per-category push on/off (critical categories always pushed);
- :mod:`.delivery`: pushing to a user's connections, from a server or a worker;
- :mod:`.connect_hook`: the batched connect hook (users rows, counts at connect);
- :mod:`.push_service`: Web Push to users with no live connection (``push_*`` modules);
- :mod:`.digest`: the email digest of unread notifications (``rt.notifications.digest``);
- :mod:`.models`: the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from dihya_realtime.features.notifications.connect_hook import ConnectHook
from dihya_realtime.features.notifications.creating import (
    Creating,
    check_target,
    validate_request,
)
from dihya_realtime.features.notifications.delivery import Delivery
from dihya_realtime.features.notifications.digest import DigestService
from dihya_realtime.features.notifications.inbox import Inbox, decode_cursor, purge_notifications
from dihya_realtime.features.notifications.models import NOTIFICATIONS, PREFERENCES
from dihya_realtime.features.notifications.preferences import PushPreferences
from dihya_realtime.features.notifications.push_service import web_push_of
from dihya_realtime.features.notifications.schemas import (
    DEFAULT_CATEGORY,
    MAX_IDS,
    Category,
    Counts,
    NotificationId,
    NotificationIn,
    NotificationOut,
    Page,
    Preferences,
    RoleResolver,
    State,
    StateChange,
    Status,
    Updated,
)

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.kernel.outbox import Queued
    from dihya_realtime.kernel.outbox.queue import HostSession
    from dihya_realtime.kernel.principal import Principal
    from dihya_realtime.realtime import Realtime

__all__ = [
    "MAX_IDS", "NOTIFICATIONS", "Category", "Counts", "NotificationId", "NotificationIn",
    "NotificationOut", "NotificationService", "Page", "Preferences", "State", "StateChange",
    "Status", "Updated", "decode_cursor", "purge_notifications",
]


class NotificationService:
    """Create, list, count and change notifications; deliver them live. ``rt.notifications``.

    Each method delegates to the part that owns the job. ``role_resolver`` (whom
    ``notify(role=…)`` reaches) may be replaced by the host app.
    """

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.db = rt.db
        self.table = NOTIFICATIONS
        self.prefs = PREFERENCES
        self.inbox = Inbox(rt.db)
        self.push_preferences = PushPreferences(rt.db,
                                                rt.settings.notifications_critical_categories)
        self.critical = self.push_preferences.critical
        self.delivery = Delivery(rt, self.inbox, self.push_preferences)
        self.creating = Creating(rt, self.delivery, lambda: self.role_resolver)
        self.connect_hook = ConnectHook(rt, self.inbox)
        self.web_push = web_push_of(rt, self.critical)  # None unless VAPID is configured
        if self.web_push is not None:
            self.delivery.after = self.web_push.after_delivery
        self.role_resolver: RoleResolver = self.users_with_role
        app = rt.app  # the host's template folder overrides the digest's templates
        self.digest = DigestService(rt.db, rt.settings, rt.audit.record,
                                    [app.jinja_loader] if app and app.jinja_loader else [])

    # -- creating (server side only)

    @overload
    def notify(
        self, *, session: None = None,
        user_ids: Sequence[str] | None = None, user_id: str | None = None,
        role: str | None = None, category: str = DEFAULT_CATEGORY, title: str, body: str = "",
        data: dict[str, Any] | None = None, action_url: str | None = None,
        severity: str = "info", idempotency_key: str | None = None,
        silent_user_ids: Sequence[str] = (),
    ) -> list[dict[str, Any]]: ...
    @overload
    def notify(
        self, *, session: HostSession,
        user_ids: Sequence[str] | None = None, user_id: str | None = None,
        role: str | None = None, category: str = DEFAULT_CATEGORY, title: str, body: str = "",
        data: dict[str, Any] | None = None, action_url: str | None = None,
        severity: str = "info", idempotency_key: str | None = None,
        silent_user_ids: Sequence[str] = (),
    ) -> Queued: ...
    def notify(
        self,
        *,
        session: HostSession | None = None,
        user_ids: Sequence[str] | None = None,
        user_id: str | None = None,
        role: str | None = None,
        category: str = DEFAULT_CATEGORY,
        title: str,
        body: str = "",
        data: dict[str, Any] | None = None,
        action_url: str | None = None,
        severity: str = "info",
        idempotency_key: str | None = None,
        silent_user_ids: Sequence[str] = (),
    ) -> list[dict[str, Any]] | Queued:
        """Store a notification for each recipient, then deliver it live; returns them.

        Recipients are ``user_ids``, one ``user_id``, or every user holding ``role`` (through
        :attr:`role_resolver`). With an ``idempotency_key``, a repeat returns the notifications
        the first call created and delivers nothing again. Bad fields raise ``invalid_payload``
        with one detail per field. ``silent_user_ids`` get theirs live in-app, never pushed to
        a device (a chat room they muted). With ``session=`` (the host's SQLAlchemy session) nothing
        is stored yet: an outbox row is written in the host's transaction and the relay
        notifies once it commits; returns the :class:`~dihya_realtime.kernel.outbox.Queued`
        row. Example::

            rt.notify(user_ids=["17"], category="builds", title="Build 42 finished",
                      data={"build": 42}, action_url="/builds/42", severity="success")
        """
        fields = {"user_ids": list(user_ids) if user_ids is not None else None,
                  "user_id": user_id, "role": role, "category": category, "title": title,
                  "body": body, "data": {} if data is None else data, "action_url": action_url,
                  "severity": severity, "idempotency_key": idempotency_key}
        given = {k: v for k, v in fields.items() if v is not None}
        request = self.validate(given)
        if session is not None:
            # checked now; stored and delivered once the host's transaction commits (the
            # outbox row's id is the idempotency key unless one is given)
            self.check_target(request)
            return self.rt.outbox.enqueue(session, "notify", None, given)
        notifications, _created = self.creating.create(request, frozenset(silent_user_ids))
        return notifications

    def validate(self, raw: Any) -> NotificationIn:
        """Check a creation request; ``invalid_payload`` names every bad field."""
        return validate_request(raw)

    def check_target(self, request: NotificationIn) -> NotificationIn:
        """Exactly one of ``user_ids``, ``user_id`` or ``role`` (the rule the model cannot
        state field by field); ``invalid_payload`` otherwise."""
        return check_target(request)

    def recipients(self, request: NotificationIn) -> list[str]:
        return self.creating.recipients(request)

    def create(self, request: NotificationIn) -> tuple[list[dict[str, Any]], int]:
        """Store and deliver a validated request; returns (every notification, how many new)."""
        return self.creating.create(request)

    def deliver(self, notifications: list[dict[str, Any]]) -> None:
        """Push new notifications (unless muted) and the new counts to their users."""
        self.delivery.deliver(notifications)

    def users_with_role(self, role: str) -> list[str]:
        """The default :attr:`role_resolver`: users seen at connect whose roles include it.

        Replace it (``rt.notifications.role_resolver = fn``) when the host app knows its users
        better, e.g. users who never connected.
        """
        return self.creating.users_with_role(role)

    # -- reading

    def counts(self, user_id: str) -> dict[str, int]:
        return self.inbox.counts(user_id)

    def counts_many(self, user_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """``{user_id: {"unseen": n, "unread": m}}`` for every given user (zeros included)."""
        return self.inbox.counts_many(user_ids)

    def page(self, user_id: str, status: Status = "all", category: str | None = None,
             before: str | None = None, limit: int = 20) -> dict[str, Any]:
        """One page of the user's notifications, newest first (keyset cursor)."""
        return self.inbox.page(user_id, status, category, before, limit)

    # -- changing state (only the user's own notifications)

    def mark(self, user_id: str, ids: Sequence[str], state: State) -> list[str]:
        """Move the user's notifications ``ids`` to ``state``; returns the ids that changed.

        All or nothing: an id that is not the user's → ``not_found`` and nothing changes.
        """
        changed = self.inbox.mark(user_id, ids, state)
        if state == "read" and changed:
            self.rt.domain_events.emit("notification.read", {"user_id": user_id, "ids": changed})
        return changed

    def mark_all(self, user_id: str, state: Literal["read", "seen"],
                 category: str | None = None) -> list[str]:
        """Mark every one of the user's notifications (of ``category``) read or seen."""
        changed = self.inbox.mark_all(user_id, state, category)
        if state == "read" and changed:
            self.rt.domain_events.emit("notification.read", {"user_id": user_id, "ids": changed})
        return changed

    def changed(self, user_id: str, ids: list[str], state: State,
                skip_sid: str | None = None) -> dict[str, int]:
        """Tell the user's other connections what changed; returns the new counts."""
        return self.delivery.changed(user_id, ids, state, skip_sid)

    # -- preferences

    def preferences(self, user_id: str) -> dict[str, Any]:
        """The user's push setting for every category they have, have set, or is critical."""
        return self.push_preferences.preferences(user_id)

    def set_preferences(self, user_id: str, push: dict[str, bool]) -> dict[str, Any]:
        """Turn live push on or off per category; a critical category cannot be turned off."""
        return self.push_preferences.set_preferences(user_id, push)

    # -- connections

    def on_connect(self, conn: Connection) -> None:
        """Connect hook: refresh the users row and push the counts, off the connect path."""
        self.connect_hook.on_connect(conn)

    def after_connect(self, sid: str, principal: Principal) -> None:
        """Refresh one connection's users row and push its counts (see ``after_connect_many``)."""
        self.connect_hook.after_connect_many([(sid, principal)])

    def after_connect_many(self, batch: Sequence[tuple[str, Principal]]) -> None:
        """Upsert the users of these connections in one transaction, then push each its
        notification counts (one query for all)."""
        self.connect_hook.after_connect_many(batch)

    # -- retention

    def purge(self, older_than: float | None = None) -> int:
        """Delete read or archived notifications older than the retention (or ``older_than``)."""
        age = self.rt.settings.notifications_retention if older_than is None else older_than
        return purge_notifications(self.db, age)
