"""Creating notifications (server side only): check the request, resolve the recipients,
store one row per recipient, then hand the new ones to :mod:`.delivery`.

Stored first: a user with no connection open gets nothing live, but the row is there. With an
``idempotency_key`` a repeat returns what the first call created and delivers nothing again
(the ``(user_id, idempotency_key)`` unique constraint, see :mod:`.models`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from dihya_realtime.features.notifications.delivery import Delivery
from dihya_realtime.features.notifications.models import NOTIFICATIONS, chunks, insert_for
from dihya_realtime.features.notifications.schemas import (
    NotificationIn,
    RoleResolver,
    serialize,
)
from dihya_realtime.kernel.errors import invalid
from dihya_realtime.kernel.payloads import validate
from dihya_realtime.store.models import User

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


def check_target(request: NotificationIn) -> NotificationIn:
    """Exactly one of ``user_ids``, ``user_id`` or ``role`` says whom a request reaches."""
    given = [n for n in ("user_ids", "user_id", "role") if getattr(request, n) is not None]
    if len(given) != 1:
        raise invalid("give exactly one of user_ids, user_id or role",
                      [{"field": "user_ids", "type": "value_error",
                        "message": "give exactly one of user_ids, user_id or role"}])
    return request


def validate_request(raw: Any) -> NotificationIn:
    """Check a creation request; ``invalid_payload`` names every bad field."""
    return check_target(validate(NotificationIn, raw, "invalid notification"))


class Creating:
    """Store validated requests and deliver what is new.

    ``role_resolver`` is asked at each request (the facade's, which a host app may replace).
    """

    def __init__(self, rt: Realtime, delivery: Delivery,
                 role_resolver: Callable[[], RoleResolver]) -> None:
        self.rt = rt
        self.db = rt.db
        self.table = NOTIFICATIONS
        self.delivery = delivery
        self.role_resolver = role_resolver

    def recipients(self, request: NotificationIn) -> list[str]:
        if request.role is not None:
            ids = [str(u) for u in self.role_resolver()(request.role)]
        else:
            ids = request.user_ids if request.user_ids is not None else [request.user_id or ""]
        return list(dict.fromkeys(ids))  # once each, in the order given

    def create(self, request: NotificationIn, silent: frozenset[str] = frozenset()
               ) -> tuple[list[dict[str, Any]], int]:
        """Store and deliver a validated request; returns (every notification, how many new).
        ``silent`` users get theirs live in-app but never pushed to a device."""
        users = self.recipients(request)
        if not users:
            return [], 0
        now = datetime.now(UTC)
        rows = [{"id": uuid.uuid4().hex, "user_id": u, "category": request.category,
                 "title": request.title, "body": request.body, "data": request.data,
                 "action_url": request.action_url, "severity": request.severity,
                 "created_at": now, "seen_at": None, "read_at": None, "archived_at": None,
                 "idempotency_key": request.idempotency_key} for u in users]
        table = self.table
        with self.db.write_transaction() as conn:
            if request.idempotency_key is None:
                for chunk in chunks(rows):
                    conn.execute(table.insert(), list(chunk))
                stored = rows
            else:
                insert = insert_for(self.db.dialect)(table).on_conflict_do_nothing(
                    index_elements=["user_id", "idempotency_key"])
                for chunk in chunks(rows):
                    conn.execute(insert, list(chunk))
                by_user: dict[str, Any] = {}
                for chunk in chunks(users):
                    by_user.update((r.user_id, r) for r in conn.execute(
                        sa.select(table).where(table.c.user_id.in_(chunk),
                                               table.c.idempotency_key == request.idempotency_key)))
                stored = [by_user[u] for u in users]
        new_ids = {r["id"] for r in rows}
        out = [serialize(r) for r in stored]
        fresh = [n for n in out if n["id"] in new_ids]
        self.rt.audit.record("notifications_created", outcome="ok", details={
            "category": request.category, "recipients": len(users), "created": len(fresh)})
        if fresh:
            self.delivery.deliver(fresh, silent)
        return out, len(fresh)

    def users_with_role(self, role: str) -> list[str]:
        """The default role resolver: users seen at connect whose roles include it.

        Replace it (``rt.notifications.role_resolver = fn``) when the host app knows its users
        better, e.g. users who never connected.
        """
        users = User.__table__
        has_role: Any
        if self.db.is_postgres:
            has_role = sa.cast(users.c.roles, postgresql.JSONB).contains([role])
        else:
            has_role = sa.text("EXISTS (SELECT 1 FROM json_each(users.roles) "
                               "WHERE json_each.value = :role)").bindparams(role=role)
        with self.db.engine.connect() as conn:
            return list(conn.scalars(sa.select(users.c.id).where(has_role).order_by(users.c.id)))
