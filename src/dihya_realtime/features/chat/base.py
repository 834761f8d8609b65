"""The chat feature's database and delivery primitives, shared by its parts.

Transactions, the lookups every rule starts from, and the one push that reaches the members of
a room on every process. Rules live in :mod:`.access`; what is stored, in the modules that use
these.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dihya_realtime.features.chat.common import Defer, table, utcnow
from dihya_realtime.features.chat.models import ChatBan, ChatMember, ChatMessage, ChatRoom
from dihya_realtime.kernel.errors import not_found
from dihya_realtime.kernel.rooms import user_room

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


class ChatStore:
    """``rt.db`` and ``rt.emit`` as the chat parts use them."""

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.db = rt.db

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in a write transaction (SQLite: ``BEGIN IMMEDIATE``), committed on exit."""
        with self.db.write_transaction() as conn:
            session = Session(bind=conn, expire_on_commit=False)
            try:
                yield session
                session.flush()
            finally:
                session.close()

    def insert(self) -> Any:
        return postgresql.insert if self.db.is_postgres else sqlite.insert

    def room(self, s: Session, room_id: str) -> ChatRoom:
        room = s.get(ChatRoom, room_id)
        if room is None:
            raise not_found("no such room", {"room_id": room_id})
        return room

    def member(self, s: Session, room_id: str, user_id: str) -> ChatMember | None:
        return s.get(ChatMember, (room_id, user_id))

    def member_ids(self, s: Session, room_id: str) -> list[str]:
        return list(s.scalars(sa.select(ChatMember.user_id).where(ChatMember.room_id == room_id)))

    def is_banned(self, s: Session, room_id: str, user_id: str) -> bool:
        return s.get(ChatBan, (room_id, user_id)) is not None

    def add_member(self, s: Session, room_id: str, user_id: str, role: str,
                    last_read_seq: int) -> bool:
        """Insert a membership unless it exists (two joins at once are not an error)."""
        stmt = self.insert()(table(ChatMember)).values(
            room_id=room_id, user_id=user_id, role=role, joined_at=utcnow(),
            last_read_seq=last_read_seq).on_conflict_do_nothing().returning(ChatMember.user_id)
        # RETURNING, not rowcount: SQLAlchemy + psycopg report -1 for this INSERT
        return s.execute(stmt).first() is not None

    def push(self, user_ids: Iterable[str], event: str, data: Any,
              defer: Defer | None = None) -> None:
        """One emit to the personal rooms of ``user_ids``, on every process.

        python-socketio accepts a list of rooms: the payload is redacted and encoded once and,
        with a message queue, published once; each process resolves the rooms locally. Not
        (yet) by interest: one message on each member's topic would cost a room of 1,000
        members 1,000 Redis messages instead of 1 (``make bench``, scenario ``cluster`` (b)).
        Chat's routing by interest is one publication on the room's channel (issue 14).
        """
        rooms = [user_room(u) for u in dict.fromkeys(user_ids)]
        if not rooms:
            return

        def send() -> None:
            self.rt.emit(event, data, to=rooms)

        if defer is None:
            send()
        else:
            defer(send)

    def message(self, s: Session, message_id: str) -> ChatMessage:
        message = s.get(ChatMessage, message_id)
        if message is None:
            raise not_found("no such message", {"message_id": message_id})
        return message
