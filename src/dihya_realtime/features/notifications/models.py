"""The notification tables: one row per notification per user, and per-category preferences.

Why ``(user_id, idempotency_key)`` is unique: a sender that retries (a worker after a timeout,
an HTTP client after a dropped response) must not give the user the same notification twice;
NULL keys never collide, so notifications without a key are never deduplicated. The index on
``(user_id, created_at, id)`` serves both the inbox page (newest first, keyset cursor) and the
per-user counts.

The tables belong to the feature (its migration is ``0002_notifications``); the two SQL helpers
at the end are what every part of the feature uses on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from dihya_realtime.store.models import Base, UTCDateTime


class Notification(Base):
    """One in-app notification of one user (written by
    :mod:`dihya_realtime.features.notifications.creating`)."""

    __tablename__ = "notifications"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_notifications_idempotency"),
        sa.Index("ix_notifications_user_created", "user_id", "created_at", "id"),
        sa.Index("ix_notifications_digest_due", "created_at",
                 postgresql_where=sa.text("digested_at IS NULL AND read_at IS NULL"),
                 sqlite_where=sa.text("digested_at IS NULL AND read_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    category: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    title: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    body: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    data: Mapped[Any] = mapped_column(sa.JSON, nullable=False, default=dict)
    action_url: Mapped[str | None] = mapped_column(sa.String(2048), nullable=True)
    severity: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="info")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    # when an email digest claimed it (sent at most once; migration 0004_notifications_digest)
    digested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class NotificationPreference(Base):
    """A user's choice for one category: live push on or off (absent row: on)."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    category: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    push: Mapped[bool] = mapped_column(sa.Boolean, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class DigestSubscription(Base):
    """A user's email digest: how often (absent row or NULL: ``DIHYA_RT_DIGEST_DEFAULT``), the
    address the standalone service mails (a host app may supply addresses instead) and when
    the last digest went out (the next one waits an hour or a day after it)."""

    __tablename__ = "notification_digests"

    user_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    frequency: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    email: Mapped[str | None] = mapped_column(sa.String(320), nullable=True)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


NOTIFICATIONS = cast(sa.Table, Notification.__table__)
PREFERENCES = cast(sa.Table, NotificationPreference.__table__)
DIGESTS = cast(sa.Table, DigestSubscription.__table__)

CHUNK = 500
"""Rows per ``IN (...)`` / executemany: well under SQLite's and PostgreSQL's limits."""


def insert_for(dialect: str) -> Any:
    """The dialect's ``INSERT`` (both have ``on_conflict_do_nothing`` / ``_do_update``)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- Web Push (docs/notifications.md "Web Push"; migration 0003_notifications_push)


class PushSubscription(Base):
    """One browser (device) of a user that accepted push: its PushSubscription.

    The endpoint is unique: a browser re-subscribing (or another user signing in on the same
    browser) takes the row over. Removed on ``push:unsubscribe`` or when the push service
    answers 404/410.
    """

    __tablename__ = "push_subscriptions"
    __table_args__ = (sa.Index("ix_push_subscriptions_user", "user_id"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    endpoint: Mapped[str] = mapped_column(sa.String(1024), nullable=False, unique=True)
    p256dh: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    auth: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class PushJob(Base):
    """One push waiting to be sent to one subscription: the persisted queue.

    ``payload`` is the JSON to encrypt (already redacted). A worker claims due rows
    (``next_attempt_at`` past, ``claimed_until`` empty or past), sends, then deletes the row
    or moves ``next_attempt_at`` on (429/5xx): a restart loses nothing, a crash mid-send
    sends again once the lease has run out.
    """

    __tablename__ = "push_queue"
    __table_args__ = (sa.Index("ix_push_queue_due", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(sa.String(32), nullable=False, index=True)
    user_id: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    notification_id: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    payload: Mapped[str] = mapped_column(sa.Text, nullable=False)
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class PushQuietHours(Base):
    """A user's quiet hours: no Web Push between ``start`` and ``end`` (minutes after local
    midnight in ``timezone``; may wrap midnight), critical categories excepted."""

    __tablename__ = "push_quiet_hours"

    user_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    start_minute: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    end_minute: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    timezone: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


PUSH_SUBSCRIPTIONS = cast(sa.Table, PushSubscription.__table__)
PUSH_QUEUE = cast(sa.Table, PushJob.__table__)
PUSH_QUIET_HOURS = cast(sa.Table, PushQuietHours.__table__)
