"""The persisted push queue: one row per push to send, so delivery survives a restart.

A job is claimed by setting ``claimed_until`` (a lease of ``DIHYA_RT_PUSH_LEASE``) in the same
transaction that picks it: on PostgreSQL with ``SELECT … FOR UPDATE SKIP LOCKED`` (several
processes claim at once, each gets other rows), on SQLite under the single writer lock
(``BEGIN IMMEDIATE``). After the attempt the job is deleted (sent, or given up) or put back with
a later ``next_attempt_at`` (429/5xx). A process that dies mid-send leaves a claimed row whose
lease runs out, and another process (or the same one restarted) sends it then: delivery is at
least once; the payload carries the notification id, which the service worker uses as the
notification's ``tag``, so a rare repeat replaces the shown notification instead of adding one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dihya_realtime.features.notifications.models import PUSH_QUEUE, PUSH_SUBSCRIPTIONS, chunks

if TYPE_CHECKING:
    from dihya_realtime.store import Database


@dataclass(frozen=True)
class Job:
    """A claimed push, with what sending needs from its subscription."""

    id: str
    user_id: str
    notification_id: str
    payload: str
    attempts: int  # including this one
    subscription_id: str
    endpoint: str
    p256dh: str
    auth: str


class PushQueue:
    """Add, claim and settle push jobs."""

    def __init__(self, db: Database, lease: float) -> None:
        self.db = db
        self.table = PUSH_QUEUE
        self.lease = lease

    def enqueue(self, jobs: Iterable[tuple[str, str, str, str]]) -> int:
        """Queue ``(subscription_id, user_id, notification_id, payload)`` jobs, due now."""
        now = datetime.now(UTC)
        rows = [{"id": uuid.uuid4().hex, "subscription_id": s, "user_id": u,
                 "notification_id": n, "payload": p, "attempts": 0, "next_attempt_at": now,
                 "claimed_until": None, "created_at": now} for s, u, n, p in jobs]
        if rows:
            with self.db.write_transaction() as conn:
                for chunk in chunks(rows):
                    conn.execute(self.table.insert(), list(chunk))
        return len(rows)

    def claim(self, limit: int = 50, now: datetime | None = None) -> list[Job]:
        """Claim up to ``limit`` due jobs for this process (see the module docstring)."""
        q, s = self.table, PUSH_SUBSCRIPTIONS
        now = now or datetime.now(UTC)
        due = (sa.select(q.c.id).where(
            q.c.next_attempt_at <= now,
            sa.or_(q.c.claimed_until.is_(None), q.c.claimed_until <= now))
            .order_by(q.c.next_attempt_at).limit(limit)
            .with_for_update(skip_locked=True))  # rendered on PostgreSQL, not on SQLite
        with self.db.write_transaction() as conn:
            ids = list(conn.scalars(due))
            if not ids:
                return []
            conn.execute(q.update().where(q.c.id.in_(ids)).values(
                claimed_until=now + timedelta(seconds=self.lease), attempts=q.c.attempts + 1))
            rows = conn.execute(
                sa.select(q.c.id, q.c.user_id, q.c.notification_id, q.c.payload, q.c.attempts,
                          s.c.id.label("subscription_id"), s.c.endpoint, s.c.p256dh, s.c.auth)
                .join(s, s.c.id == q.c.subscription_id).where(q.c.id.in_(ids))).all()
            orphans = set(ids) - {r.id for r in rows}
            if orphans:  # the subscription went meanwhile
                conn.execute(q.delete().where(q.c.id.in_(orphans)))
        return [Job(**r._asdict()) for r in rows]

    def done(self, job_id: str) -> None:
        """Sent, or given up: the job leaves the queue."""
        with self.db.write_transaction() as conn:
            conn.execute(self.table.delete().where(self.table.c.id == job_id))

    def retry(self, job_id: str, delay: float) -> None:
        """Try again in ``delay`` seconds (the claim is released)."""
        at = datetime.now(UTC) + timedelta(seconds=delay)
        with self.db.write_transaction() as conn:
            conn.execute(self.table.update().where(self.table.c.id == job_id).values(
                next_attempt_at=at, claimed_until=None))

    def pending(self) -> list[dict[str, Any]]:
        """Every queued job (tests and operators)."""
        with self.db.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(self.table).order_by(self.table.c.created_at))]


__all__ = ["Job", "PushQueue"]
