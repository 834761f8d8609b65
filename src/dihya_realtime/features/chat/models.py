"""Chat tables: rooms, members, bans, messages, mentions and reactions.

Ordering lives in the database: ``chat_rooms.last_seq`` is incremented in the same
transaction that inserts the message (the ``UPDATE`` row-locks the room on PostgreSQL; SQLite
writers hold the database write lock from ``BEGIN IMMEDIATE``), so a failed insert rolls the
counter back with it and ``seq`` has no gaps. ``UNIQUE(room_id, seq)`` is the safety net, and
``UNIQUE(room_id, author_id, client_msg_id)`` makes a resend idempotent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dihya_realtime.store.models import Base, UTCDateTime


class ChatRoom(Base):
    """A room: ``kind`` is ``room`` (named, public or private) or ``dm`` (two users)."""

    __tablename__ = "chat_rooms"
    __table_args__ = (sa.UniqueConstraint("dm_key", name="uq_chat_rooms_dm_key"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8), nullable=False, default="room")
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    topic: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    visibility: Mapped[str] = mapped_column(sa.String(8), nullable=False, index=True)
    created_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    # "userA|userB" (sorted) for a DM, so two users share exactly one DM room
    dm_key: Mapped[str | None] = mapped_column(sa.String(260), nullable=True)


class ChatMember(Base):
    """A user's membership: role, read marker, mute (moderation) and notifications mute."""

    __tablename__ = "chat_members"

    room_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("chat_rooms.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="member")
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_read_seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # the member's own choice (``chat:set_notifications``): the room's mentions and DMs stay
    # in-app but are never pushed to their devices
    notifications_muted: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False,
                                                      server_default=sa.false())


class ChatBan(Base):
    """A user banned from a room: removed, and refused at ``chat:join`` / ``chat:invite``."""

    __tablename__ = "chat_bans"

    room_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("chat_rooms.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    banned_by: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    reason: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ChatMessage(Base):
    """One message; a deleted message stays as a tombstone so its ``seq`` is kept."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        sa.UniqueConstraint("room_id", "seq", name="uq_chat_messages_room_seq"),
        sa.UniqueConstraint("room_id", "author_id", "client_msg_id",
                            name="uq_chat_messages_client_msg"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    room_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("chat_rooms.id", ondelete="CASCADE"), nullable=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(8), nullable=False, default="user")
    author_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    author_name: Mapped[str | None] = mapped_column(sa.String(256), nullable=True)
    client_msg_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    text: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    data: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    reply_to: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)


class ChatMention(Base):
    """A user mentioned by a message (``seq`` copied so mention counts need no join)."""

    __tablename__ = "chat_mentions"
    __table_args__ = (sa.Index("ix_chat_mentions_user_room_seq", "user_id", "room_id", "seq"),)

    message_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("chat_messages.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    room_id: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


class ChatReaction(Base):
    """One user's reaction with one emoji on one message."""

    __tablename__ = "chat_reactions"
    # chat:reactors pages and counts one emoji's users; the kinds bound reads the emoji
    __table_args__ = (sa.Index("ix_chat_reactions_message_emoji_user",
                               "message_id", "emoji", "user_id"),)

    message_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("chat_messages.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    emoji: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
