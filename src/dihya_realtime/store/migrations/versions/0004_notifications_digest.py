"""Notifications: the email digest (who gets one, how often, and what was already mailed).

``notifications.digested_at`` is the claim that makes a notification go into at most one
digest: a digest run sets it (``UPDATE … WHERE digested_at IS NULL``) before it sends. The
partial index keeps finding due notifications cheap when most rows were mailed or read.

Revision ID: 0004_notifications_digest
Revises: 0003_notifications_push
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_notifications_digest"
down_revision: str | Sequence[str] | None = "0003_notifications_push"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("digested_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_notifications_digest_due", "notifications", ["created_at"],
                    postgresql_where=sa.text("digested_at IS NULL AND read_at IS NULL"),
                    sqlite_where=sa.text("digested_at IS NULL AND read_at IS NULL"))
    op.create_table(
        "notification_digests",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("frequency", sa.String(16), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notification_digests")
    op.drop_index("ix_notifications_digest_due", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("digested_at")
