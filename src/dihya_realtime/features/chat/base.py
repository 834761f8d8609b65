"""The chat feature's database and delivery primitives, shared by its parts.

Transactions, the lookups every rule starts from, and the pushes: to a room's members on
every process (relayed by interest, :mod:`.delivery`), or to named users. Rules live in
:mod:`.access`; what is stored, in the modules that use these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dihya_realtime.features.chat.common import Defer, table, utcnow
from dihya_realtime.features.chat.delivery import RelayedRooms
from dihya_realtime.features.chat.models import ChatBan, ChatMember, ChatMessage, ChatRoom
from dihya_realtime.kernel.errors import not_found

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


class ChatStore:
    """``rt.db`` and the room pushes as the chat parts use them."""

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.db = rt.db
        self.relayed = RelayedRooms(rt)

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

    def push_room(self, room_id: str, event: str, data: Any, defer: Defer | None = None,
                  skip_user: str | None = None) -> None:
        """One relay of ``event`` to the connections of ``room_id``'s members (but
        ``skip_user``'s), received only by the processes that hold one (:mod:`.delivery`)."""
        self._run(lambda: self.relayed.emit(room_id, event, data, skip_user), defer)

    def push_room_and_user(self, room_id: str, user_id: str, event: str, data: Any,
                           defer: Defer | None = None) -> None:
        """``event`` to the room's members and to ``user_id``, who is joining or leaving it:
        to the user on the user's topic, never through the room (whether their connections
        are in it at that moment or not), so they get it once."""
        def send() -> None:
            self.relayed.emit(room_id, event, data, skip_user=user_id)
            self.rt.emit_to_user(user_id, event, data)

        self._run(send, defer)

    def members_changed(self, room_id: str, user_ids: Iterable[str], member: bool) -> None:
        """``user_ids`` joined (``member``) or left ``room_id``: their connections, on every
        process, start or stop receiving the room's pushes."""
        self.relayed.changed(room_id, user_ids, member)

    @staticmethod
    def _run(send: Callable[[], None], defer: Defer | None) -> None:
        if defer is None:
            send()
        else:
            defer(send)

    def message(self, s: Session, message_id: str) -> ChatMessage:
        message = s.get(ChatMessage, message_id)
        if message is None:
            raise not_found("no such message", {"message_id": message_id})
        return message
