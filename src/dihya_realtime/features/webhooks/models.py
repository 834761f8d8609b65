"""The webhook delivery queue: one row per event per endpoint, until it is sent or given up.

Why a table in our own database: a delivery must survive a restart of the process that queued
it (at-least-once), and any process may send it. A row is ``pending`` until sent (then
deleted: the queue holds only what is owed) or until the retry horizon passes (then
``failed``, audited, and kept one more horizon for inspection). ``next_attempt_at`` is also
the lease of a claimed row: the process that claims it pushes it past the send timeout, so a
process that dies mid-send leaves the row to be claimed again (at-least-once, receivers dedupe
by ``event_id``). The migration is ``0002_webhooks``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dihya_realtime.store.models import Base, UTCDateTime

PENDING = "pending"
FAILED = "failed"


class WebhookDelivery(Base):
    """One event owed to one endpoint (written by :mod:`.queue`)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_endpoint", "endpoint", "state"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    endpoint: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    type: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    body: Mapped[str] = mapped_column(sa.Text, nullable=False)
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=PENDING)
    last_error: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)


__all__ = ["FAILED", "PENDING", "WebhookDelivery"]
