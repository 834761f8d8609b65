"""Chat: an index for "who reacted with this emoji" (``chat:reactors``) and for the bound on
different emoji per message: both read one message's reactions by emoji, in user order,
from the index alone.

Revision ID: 0004_chat_reactors
Revises: 0003_chat_notifications
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_chat_reactors"
down_revision: str | Sequence[str] | None = "0003_chat_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_chat_reactions_message_emoji_user", "chat_reactions",
                    ["message_id", "emoji", "user_id"])


def downgrade() -> None:
    op.drop_index("ix_chat_reactions_message_emoji_user", table_name="chat_reactions")
