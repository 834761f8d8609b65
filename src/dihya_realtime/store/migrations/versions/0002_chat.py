"""Chat: rooms, members, bans, messages, mentions, reactions.

Revision ID: 0002_chat
Revises: 0001_foundation
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_chat"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("chat",)
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "chat_rooms",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("topic", sa.String(500), nullable=True),
        sa.Column("visibility", sa.String(8), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("dm_key", sa.String(260), nullable=True),
        sa.UniqueConstraint("dm_key", name="uq_chat_rooms_dm_key"),
    )
    op.create_index("ix_chat_rooms_visibility", "chat_rooms", ["visibility"])
    op.create_table(
        "chat_members",
        sa.Column("room_id", sa.String(32),
                  sa.ForeignKey("chat_rooms.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("joined_at", TS, nullable=False),
        sa.Column("last_read_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("muted_until", TS, nullable=True),
    )
    op.create_index("ix_chat_members_user_id", "chat_members", ["user_id"])
    op.create_table(
        "chat_bans",
        sa.Column("room_id", sa.String(32),
                  sa.ForeignKey("chat_rooms.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("banned_by", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("room_id", sa.String(32),
                  sa.ForeignKey("chat_rooms.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("author_id", sa.String(128), nullable=True),
        sa.Column("author_name", sa.String(256), nullable=True),
        sa.Column("client_msg_id", sa.String(36), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("reply_to", sa.String(32), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("edited_at", TS, nullable=True),
        sa.Column("deleted_at", TS, nullable=True),
        sa.Column("deleted_by", sa.String(128), nullable=True),
        sa.UniqueConstraint("room_id", "seq", name="uq_chat_messages_room_seq"),
        sa.UniqueConstraint("room_id", "author_id", "client_msg_id",
                            name="uq_chat_messages_client_msg"),
    )
    op.create_table(
        "chat_mentions",
        sa.Column("message_id", sa.String(32),
                  sa.ForeignKey("chat_messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("room_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_chat_mentions_user_room_seq", "chat_mentions",
                    ["user_id", "room_id", "seq"])
    op.create_table(
        "chat_reactions",
        sa.Column("message_id", sa.String(32),
                  sa.ForeignKey("chat_messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("emoji", sa.String(64), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chat_reactions")
    op.drop_index("ix_chat_mentions_user_room_seq", table_name="chat_mentions")
    op.drop_table("chat_mentions")
    op.drop_table("chat_messages")
    op.drop_table("chat_bans")
    op.drop_index("ix_chat_members_user_id", table_name="chat_members")
    op.drop_table("chat_members")
    op.drop_index("ix_chat_rooms_visibility", table_name="chat_rooms")
    op.drop_table("chat_rooms")
