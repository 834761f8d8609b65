"""A user's inbox in SQL: counts, pages with a keyset cursor, state changes, retention.

Everything here reads or changes one user's own rows (or, for retention, old handled ones);
nothing is pushed from here: :mod:`.delivery` tells the connections.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from dihya_realtime.features.notifications.models import NOTIFICATIONS, chunks
from dihya_realtime.features.notifications.schemas import State, Status, serialize
from dihya_realtime.kernel.errors import invalid, not_found
from dihya_realtime.store.models import UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection as SqlConnection

    from dihya_realtime.store import Database

_CURSOR_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")


def encode_cursor(created_at: datetime, id_: str) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{id_}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after; ``invalid_payload`` when it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, id_ = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None or not _CURSOR_ID.match(id_):
            raise ValueError(raw)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise invalid("bad cursor: pass the next_cursor of a previous page",
                      [{"field": "before", "message": "not a cursor from notifications:list",
                        "type": "value_error"}]) from None
    return created_at, id_


def purge_notifications(db: Database, older_than: float, now: datetime | None = None) -> int:
    """Delete read or archived notifications created more than ``older_than`` seconds ago.

    Unread, unarchived notifications are kept whatever their age: the user has not dealt with
    them yet. Returns how many rows were deleted.
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=older_than)
    table = NOTIFICATIONS
    with db.write_transaction() as conn:
        result = conn.execute(table.delete().where(
            table.c.created_at < cutoff,
            sa.or_(table.c.read_at.is_not(None), table.c.archived_at.is_not(None))))
    return int(result.rowcount or 0)


class Inbox:
    """Read and change the rows of ``notifications``, one user at a time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.table = NOTIFICATIONS

    # -- reading

    def counts(self, user_id: str) -> dict[str, int]:
        return self.counts_many([user_id])[user_id]

    def counts_many(self, user_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """``{user_id: {"unseen": n, "unread": m}}`` for every given user (zeros included)."""
        t = self.table
        result = {u: {"unseen": 0, "unread": 0} for u in user_ids}
        unseen = sa.func.sum(sa.case((t.c.seen_at.is_(None), 1), else_=0))
        unread = sa.func.sum(sa.case((t.c.read_at.is_(None), 1), else_=0))
        with self.db.engine.connect() as conn:
            for chunk in chunks(list(user_ids)):
                query = sa.select(t.c.user_id, unseen, unread).where(
                    t.c.user_id.in_(chunk), t.c.archived_at.is_(None)).group_by(t.c.user_id)
                for user, n_unseen, n_unread in conn.execute(query):
                    result[user] = {"unseen": int(n_unseen or 0), "unread": int(n_unread or 0)}
        return result

    def page(self, user_id: str, status: Status = "all", category: str | None = None,
             before: str | None = None, limit: int = 20) -> dict[str, Any]:
        """One page of the user's notifications, newest first.

        Keyset pagination on ``(created_at, id)``: a page never repeats or skips an item, even
        when many notifications share a timestamp or new ones arrive between pages.
        """
        t = self.table
        query = sa.select(t).where(t.c.user_id == user_id)
        if status == "archived":
            query = query.where(t.c.archived_at.is_not(None))
        else:
            query = query.where(t.c.archived_at.is_(None))
            if status == "unread":
                query = query.where(t.c.read_at.is_(None))
            elif status == "read":
                query = query.where(t.c.read_at.is_not(None))
        if category is not None:
            query = query.where(t.c.category == category)
        if before is not None:
            at, after_id = decode_cursor(before)
            query = query.where(sa.or_(t.c.created_at < at,
                                       sa.and_(t.c.created_at == at, t.c.id < after_id)))
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit + 1)
        with self.db.engine.connect() as conn:
            rows = list(conn.execute(query))
        items = rows[:limit]
        cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        return {"items": [serialize(r) for r in items], "next_cursor": cursor}

    # -- changing state (only the user's own notifications)

    def mark(self, user_id: str, ids: Sequence[str], state: State) -> list[str]:
        """Move the user's notifications ``ids`` to ``state``; returns the ids that changed.

        All or nothing: if any id is not one of the user's notifications (someone else's, or
        none at all), ``not_found`` and nothing changes.
        """
        t = self.table
        wanted = list(dict.fromkeys(ids))
        with self.db.write_transaction() as conn:
            owned = set(conn.scalars(sa.select(t.c.id).where(
                t.c.user_id == user_id, t.c.id.in_(wanted))))
            missing = [i for i in wanted if i not in owned]
            if missing:
                raise not_found("no such notification", {"ids": missing})
            return self._update(conn, user_id, state, t.c.id.in_(wanted))

    def mark_all(self, user_id: str, state: Literal["read", "seen"],
                 category: str | None = None) -> list[str]:
        """Mark every one of the user's notifications (of ``category``) read or seen."""
        where = [] if category is None else [self.table.c.category == category]
        with self.db.write_transaction() as conn:
            return self._update(conn, user_id, state, *where)

    def _update(self, conn: SqlConnection, user_id: str, state: State,
                *where: Any) -> list[str]:
        t = self.table
        now = datetime.now(UTC)
        changes: dict[str, tuple[Any, dict[str, Any]]] = {
            "read": (t.c.read_at.is_(None),
                     {"read_at": now,
                      "seen_at": sa.func.coalesce(t.c.seen_at, sa.literal(now, UTCDateTime()))}),
            "unread": (t.c.read_at.is_not(None), {"read_at": None}),
            "seen": (t.c.seen_at.is_(None), {"seen_at": now}),
            "archived": (t.c.archived_at.is_(None), {"archived_at": now}),
            "unarchived": (t.c.archived_at.is_not(None), {"archived_at": None}),
        }
        needs_change, values = changes[state]
        stmt = (t.update().where(t.c.user_id == user_id, needs_change, *where)
                .values(**values).returning(t.c.id))
        return sorted(conn.scalars(stmt))
