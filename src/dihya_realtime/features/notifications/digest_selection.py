"""Which notifications go into digests, and claiming them so each is mailed at most once.

Due: unread, not archived, not yet claimed, created at least ``DIHYA_RT_DIGEST_DELAY`` ago,
of a user whose digest is ``hourly`` or ``daily`` (their choice, else
``DIHYA_RT_DIGEST_DEFAULT``) and whose last digest is at least an hour or a day old.

**At most once, across processes and restarts.** :meth:`DigestStore.claim` sets
``digested_at`` with ``UPDATE … WHERE digested_at IS NULL … RETURNING id`` *before* the email
is sent, in one transaction with the user's ``last_sent_at``. Two runs racing for a user get
disjoint sets: on PostgreSQL the second ``UPDATE`` waits for the first's row locks and then
re-checks ``digested_at IS NULL`` (so finds nothing); SQLite has one writer at a time
(``BEGIN IMMEDIATE``). The trade-off: a crash (or an SMTP failure) between the claim and the
send loses that digest - those notifications stay in the inbox, unread, but are never mailed.
That is the issue's "at most once"; "at least once" would mean duplicate emails after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

import sqlalchemy as sa

from dihya_realtime.features.notifications.models import DIGESTS, NOTIFICATIONS, insert_for
from dihya_realtime.store.models import UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection as SqlConnection

    from dihya_realtime.store import Database

Frequency = Literal["off", "hourly", "daily"]
FREQUENCIES: tuple[str, ...] = get_args(Frequency)
CADENCE: dict[str, float] = {"hourly": 3600.0, "daily": 86400.0}
"""Seconds between two digests to one user, by frequency."""


@dataclass(frozen=True)
class Claimed:
    """What one claim took for a user: the newest ``items`` (rows) and how many in all."""

    user_id: str
    items: list[Any]
    total: int


class DigestStore:
    """The SQL of the digest: frequencies, stored addresses, due users, claims."""

    def __init__(self, db: Database, default: str, delay: float) -> None:
        self.db = db
        self.default = default
        self.delay = delay

    # -- a user's choice and address

    def subscription(self, user_id: str) -> tuple[str, str | None]:
        """``(frequency, stored email or None)`` of the user."""
        d = DIGESTS
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(d.c.frequency, d.c.email)
                               .where(d.c.user_id == user_id)).first()
        if row is None:
            return self.default, None
        return row.frequency or self.default, row.email

    def set_frequency(self, user_id: str, frequency: str) -> None:
        self._upsert(user_id, frequency=frequency)

    def set_email(self, user_id: str, email: str | None) -> None:
        self._upsert(user_id, email=email)

    def _upsert(self, user_id: str, **values: Any) -> None:
        d = DIGESTS
        values["updated_at"] = datetime.now(UTC)
        insert = insert_for(self.db.dialect)(d).values(user_id=user_id, **values)
        stmt = insert.on_conflict_do_update(index_elements=[d.c.user_id], set_=values)
        with self.db.write_transaction() as conn:
            conn.execute(stmt)

    # -- due work

    def _due(self, now: datetime) -> list[Any]:
        n = NOTIFICATIONS
        return [n.c.read_at.is_(None), n.c.archived_at.is_(None), n.c.digested_at.is_(None),
                n.c.created_at <= now - timedelta(seconds=self.delay)]

    def due_users(self, now: datetime, limit: int) -> list[str]:
        """Users with due notifications whose digest is on and not sent too recently, the
        longest-waiting first; at most ``limit``."""
        n, d = NOTIFICATIONS, DIGESTS
        frequency = sa.func.coalesce(d.c.frequency, sa.literal(self.default, sa.String()))
        gap = sa.case(*((frequency == f, sa.literal(now - timedelta(seconds=s), UTCDateTime()))
                        for f, s in CADENCE.items()),
                      else_=sa.literal(now, UTCDateTime()))
        query = (sa.select(n.c.user_id)
                 .select_from(n.outerjoin(d, d.c.user_id == n.c.user_id))
                 .where(*self._due(now), frequency.in_(list(CADENCE)),
                        sa.or_(d.c.last_sent_at.is_(None), d.c.last_sent_at <= gap))
                 .group_by(n.c.user_id)
                 .order_by(sa.func.min(n.c.created_at), n.c.user_id)
                 .limit(limit))
        with self.db.engine.connect() as conn:
            return list(conn.scalars(query))

    def claim(self, user_id: str, now: datetime, max_items: int) -> Claimed | None:
        """Take every due notification of the user for one digest (``None``: nothing due, the
        digest is off, or the last one is too recent - another run may have just sent it)."""
        n, d = NOTIFICATIONS, DIGESTS
        with self.db.write_transaction() as conn:
            row = conn.execute(sa.select(d.c.frequency, d.c.last_sent_at)
                               .where(d.c.user_id == user_id)).first()
            frequency = (row.frequency if row is not None else None) or self.default
            if frequency not in CADENCE:
                return None
            last = row.last_sent_at if row is not None else None
            if last is not None and last > now - timedelta(seconds=CADENCE[frequency]):
                return None
            taken = list(conn.execute(
                n.update().where(n.c.user_id == user_id, *self._due(now))
                .values(digested_at=now).returning(n.c.id, n.c.created_at)))
            if not taken:
                return None
            self._sent(conn, user_id, now)
            newest = [id_ for id_, _ in sorted(taken, key=lambda r: (r[1], r[0]),
                                                 reverse=True)[:max_items]]
            items = list(conn.execute(sa.select(n).where(n.c.id.in_(newest))
                                      .order_by(n.c.created_at.desc(), n.c.id.desc())))
        return Claimed(user_id=user_id, items=items, total=len(taken))

    def _sent(self, conn: SqlConnection, user_id: str, now: datetime) -> None:
        d = DIGESTS
        insert = insert_for(self.db.dialect)(d).values(user_id=user_id, last_sent_at=now,
                                                       updated_at=now)
        conn.execute(insert.on_conflict_do_update(index_elements=[d.c.user_id],
                                                  set_={"last_sent_at": now}))


__all__ = ["CADENCE", "FREQUENCIES", "Claimed", "DigestStore", "Frequency"]
