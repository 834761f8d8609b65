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
    # when an email digest claimed it (sent at most once; migration 0003_notifications_digest)
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
