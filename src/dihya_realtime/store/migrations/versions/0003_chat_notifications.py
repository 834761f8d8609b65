"""Chat: a member may mute a room's notifications (mentions and DMs stay in-app, not pushed).

Revision ID: 0003_chat_notifications
Revises: 0002_chat
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_chat_notifications"
down_revision: str | Sequence[str] | None = "0002_chat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_members") as batch:
        batch.add_column(sa.Column("notifications_muted", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("chat_members") as batch:
        batch.drop_column("notifications_muted")
