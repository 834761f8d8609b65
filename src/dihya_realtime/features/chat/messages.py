"""Messages: storing, editing, deleting, reacting, and their wire form.

Ordering: ``seq`` is allocated inside the transaction that stores the message, by incrementing
``chat_rooms.last_seq`` (a row lock on PostgreSQL, the database write lock from
``BEGIN IMMEDIATE`` on SQLite). A failed insert rolls the counter back, so ``seq`` is gap-free
and strictly increasing per room, whatever the number of processes. Delivery order between two
concurrent senders is not guaranteed; clients order by ``seq`` and fill a gap with
``chat:history {"after_seq"}``.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dihya_realtime.features.chat.access import Access
from dihya_realtime.features.chat.base import ChatStore
from dihya_realtime.features.chat.common import (
    Actor,
    Defer,
    denied,
    iso,
    mention_candidates,
    message_dict,
    rowcount,
    table,
    typing_dict,
    utcnow,
)
from dihya_realtime.features.chat.models import (
    ChatMember,
    ChatMention,
    ChatMessage,
    ChatReaction,
    ChatRoom,
)
from dihya_realtime.features.chat.ports import Notifier
from dihya_realtime.features.chat.typing_indicator import TypingIndicator
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError, conflict, invalid

log = logging.getLogger("dihya_realtime.chat")


class Messages:
    """The messages of the rooms, from the send hot path to the tombstone."""

    def __init__(self, store: ChatStore, access: Access, typing: TypingIndicator,
                 notifier: Notifier | None = None) -> None:
        self.store = store
        self.access = access
        self.typing = typing
        self.notifier = notifier

    def send(self, actor: Actor, room_id: str, text: str, client_msg_id: str,
             reply_to: str | None = None, mentions: Sequence[str] = (),
             defer: Defer | None = None) -> tuple[dict[str, Any], bool]:
        """Store a message, then push it as ``chat:message``; returns ``(message, created)``.

        Resending the same ``client_msg_id`` returns the stored message and creates nothing.

        The hot path of the chat feature, so it is written in SQLAlchemy Core, in as few round
        trips as the rules allow (the ORM's unit of work and identity map were most of a
        send's cost): one statement checks membership, mute and ``reply_to`` *and* takes the
        next ``seq``; the insert skips a resent ``client_msg_id``. When either finds nothing
        to do, the transaction is rolled back (so ``seq`` keeps no gap) and
        :meth:`_send_refused` finds out why: the duplicate to return, or the error to raise.
        """
        author = actor.user_id
        wanted = mention_candidates(text, mentions, author)
        for _ in range(3):
            message_id = uuid.uuid4().hex
            now = utcnow()
            row = {"id": message_id, "room_id": room_id, "kind": "user", "author_id": author,
                   "author_name": actor.name, "client_msg_id": client_msg_id, "text": text,
                   "reply_to": reply_to, "created_at": now}
            checks = {"rid": room_id, "uid": author, "now": now, "parent": reply_to}
            try:
                stored = self._send_statements(checks, row, wanted)
            except _Refused:
                stored = None
            except IntegrityError:
                # the same client_msg_id stored by a concurrent resend: that one is the message
                stored = None
            if stored is not None:
                break
            existing = self._send_refused(actor, room_id, client_msg_id, reply_to)
            if existing is not None:
                return existing, False
            # nothing was wrong any more (a mute ran out, a concurrent resend rolled back)
        else:
            raise RealtimeError(ErrorCode.CONFLICT, "could not store the message, retry")
        seq, room_name, recipients, mentioned = stored
        data = {
            "id": message_id, "room_id": room_id, "seq": seq, "kind": "user",
            "author": {"user_id": author, "name": actor.name or author},
            "text": text, "data": None, "client_msg_id": client_msg_id, "reply_to": reply_to,
            "mentions": mentioned, "reactions": {}, "created_at": iso(now),
            "edited_at": None, "deleted": False, "deleted_at": None,
        }
        if self.typing.state.stop(room_id, author):
            self.store.push([r for r in recipients if r != author], "chat:typing",
                       typing_dict(room_id, actor, False), defer)
        self.store.push(recipients, "chat:message", data, defer)
        self._notify_mentions(room_name, data, mentioned)
        return data, True

    def _send_statements(self, checks: dict[str, Any], row: dict[str, Any], wanted: list[str],
                         ) -> tuple[int, str, list[str], list[str]]:
        """Store one message; raises :class:`_Refused` when a check or the insert says no.

        PostgreSQL: ONE statement in autocommit (the ``seq`` bump with every check, the
        insert, the mentions, the sender's read marker and the member ids as data-modifying
        CTEs). The room's row lock is then held inside the server for the statement and its
        commit only, never across a round trip to this (busy) process: with a transaction
        around it the lock waited for the greenlet to be scheduled again to send ``COMMIT``,
        which capped a room's rate and queued its senders. Any error aborts the whole
        statement, so a concurrent resend (a unique violation on the insert) leaves no gap.
        SQLite: the same steps as separate statements under the write lock of
        ``BEGIN IMMEDIATE`` (no network there, and SQLite has no writing CTEs).
        """
        stmts = _send_statements(self.store.db.is_postgres, checks["parent"] is not None)
        if self.store.db.is_postgres:
            params = {**checks, **{f"v_{k}": v for k, v in row.items()}, "wanted": wanted}
            with self.store.db.engine.connect() as conn:
                got = conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    stmts.combined, params).first()
            if got is None:
                raise _Refused
            present = set(got.mentioned or ())
            return (got.seq, got.name, list(got.recipients or ()),
                    [u for u in wanted if u in present])
        with self.store.db.write_transaction() as conn:
            got = conn.execute(stmts.bump, checks).first()
            if got is None:
                raise _Refused
            seq, room_name = got.seq, got.name
            if conn.execute(stmts.insert, {**row, "seq": seq}).first() is None:
                raise _Refused
            conn.execute(stmts.read_marker, {**checks, "new_seq": seq})
            recipients = list(conn.scalars(stmts.members, checks))
            mentioned: list[str] = []
            if wanted:
                present = set(conn.scalars(stmts.mentions, {
                    "mid": row["id"], "rid": row["room_id"], "new_seq": seq, "wanted": wanted}))
                mentioned = [u for u in wanted if u in present]
        return seq, room_name, recipients, mentioned

    def _send_refused(self, actor: Actor, room_id: str, client_msg_id: str,
                      reply_to: str | None) -> dict[str, Any] | None:
        """Why a send stored nothing, checked in the original order: the message already
        stored under ``client_msg_id`` (returned), or the rule that forbids it (raised).
        ``None``: nothing is wrong now, the caller tries again."""
        with self.store.db.session() as s:
            existing = s.scalars(sa.select(ChatMessage).where(
                ChatMessage.room_id == room_id, ChatMessage.author_id == actor.user_id,
                ChatMessage.client_msg_id == client_msg_id)).first()
            if existing is not None:
                return self.dicts(s, [existing])[0]
            room = self.store.room(s, room_id)
            self.access.require_speaker(s, room, actor)
            if reply_to is not None:
                parent = s.get(ChatMessage, reply_to)
                if parent is None or parent.room_id != room_id:
                    raise invalid("reply_to is not a message of this room",
                                  [{"field": "reply_to", "message": "unknown message"}])
        return None

    def _store(self, s: Session, room: ChatRoom, author: str | None, author_name: str | None,
               text: str, client_msg_id: str | None, reply_to: str | None,
               mentions: Sequence[str], kind: str = "user",
               data: Any = None) -> tuple[ChatMessage, list[str]]:
        """Allocate the next ``seq`` and insert the message and its mentions (one transaction)."""
        seq = s.execute(
            sa.update(table(ChatRoom)).where(ChatRoom.id == room.id)
            .values(last_seq=ChatRoom.last_seq + 1).returning(ChatRoom.last_seq)).scalar_one()
        room.last_seq = seq
        message = ChatMessage(id=uuid.uuid4().hex, room_id=room.id, seq=seq, kind=kind,
                              author_id=author, author_name=author_name,
                              client_msg_id=client_msg_id, text=text, data=data,
                              reply_to=reply_to, created_at=utcnow())
        s.add(message)
        s.flush()
        mentioned = self._mentionable(s, room.id, author, text, mentions)
        s.add_all(ChatMention(message_id=message.id, user_id=u, room_id=room.id, seq=seq)
                  for u in mentioned)
        return message, mentioned

    def _mentionable(self, s: Session, room_id: str, author: str | None, text: str,
                     extra: Sequence[str] = ()) -> list[str]:
        """The :func:`mention_candidates` of a message who are members of the room."""
        wanted = mention_candidates(text, extra, author)
        if not wanted:
            return []
        present = set(s.scalars(sa.select(ChatMember.user_id).where(
            ChatMember.room_id == room_id, ChatMember.user_id.in_(wanted))))
        return [u for u in wanted if u in present]

    def _notify_mentions(self, room_name: str, message: dict[str, Any],
                         user_ids: Sequence[str]) -> None:
        """Tell mentioned users through the :class:`Notifier`, when chat was given one.

        Without it mentions are still stored and counted by ``chat:rooms``. A notification
        failure never fails a send.
        """
        if self.notifier is None or not user_ids:
            return
        author = (message["author"] or {}).get("name") or "Someone"
        text = message["text"] or ""
        try:
            self.notifier.notify(user_ids=list(user_ids), category="chat.mention",
                   title=f"{author} mentioned you in {room_name}",
                   body=text[:200] + ("…" if len(text) > 200 else ""),
                   data={"room_id": message["room_id"], "message_id": message["id"],
                         "seq": message["seq"]},
                   idempotency_key=f"chat.mention:{message['id']}")
        except Exception:
            log.exception("mention notification failed for message %s", message["id"])

    def send_system_message(self, room_id: str, text: str, data: Any = None) -> dict[str, Any]:
        """Post a server message (no author) to a room and push it to the members."""
        if not isinstance(text, str) or not 1 <= len(text) <= 4000:
            raise invalid("text must be 1..4000 characters",
                          [{"field": "text", "message": "1..4000 characters"}])
        with self.store.write() as s:
            room = self.store.room(s, room_id)
            message, _ = self._store(s, room, None, None, text, None, None, (), kind="system",
                                     data=data)
            result = message_dict(message, {}, [])
            recipients = self.store.member_ids(s, room_id)
        self.store.push(recipients, "chat:message", result)
        return result

    def edit(self, actor: Actor, message_id: str, text: str,
             defer: Defer | None = None) -> dict[str, Any]:
        """Change the text of one's own message; new ``@mentions`` are recorded and notified."""
        with self.store.write() as s:
            message = self.store.message(s, message_id)
            room = self.store.room(s, message.room_id)
            self.access.require_member(s, room, actor)
            if message.author_id != actor.user_id:
                raise denied("not_the_author", "only the author edits a message")
            self.access.require_speaker(s, room, actor)
            if message.deleted_at is not None:
                raise conflict("the message was deleted", {"message_id": message_id})
            old = set(s.scalars(sa.select(ChatMention.user_id)
                                .where(ChatMention.message_id == message_id)))
            message.text = text
            message.edited_at = utcnow()
            wanted = self._mentionable(s, room.id, actor.user_id, text)
            s.execute(sa.delete(table(ChatMention)).where(
                ChatMention.message_id == message_id, ChatMention.user_id.not_in(wanted)))
            s.add_all(ChatMention(message_id=message_id, user_id=u, room_id=room.id,
                                  seq=message.seq) for u in wanted if u not in old)
            s.flush()
            data = self.dicts(s, [message])[0]
            recipients = self.store.member_ids(s, room.id)
            room_name = room.name
        self.store.push(recipients, "chat:message_edited", data, defer)
        self._notify_mentions(room_name, data, [u for u in wanted if u not in old])
        return data

    def delete(self, actor: Actor, message_id: str,
               defer: Defer | None = None) -> tuple[dict[str, Any], bool]:
        """Delete a message (author, room owner/moderator, ``chat:moderate``): a tombstone.

        Returns ``(tombstone, by_moderator)``; deleting twice returns the tombstone again.
        """
        with self.store.write() as s:
            message = self.store.message(s, message_id)
            room = self.store.room(s, message.room_id)
            own = message.author_id == actor.user_id
            if own:
                self.access.require_member(s, room, actor)
            else:
                author = self.store.member(s, room.id, message.author_id) \
                    if message.author_id else None
                self.access.require_manager(s, room, actor, author)
            if message.deleted_at is not None:
                return message_dict(message, {}, []), not own
            message.deleted_at = utcnow()
            message.deleted_by = actor.user_id
            message.text = None
            message.data = None
            s.execute(sa.delete(table(ChatReaction))
                      .where(ChatReaction.message_id == message_id))
            s.execute(sa.delete(table(ChatMention))
                      .where(ChatMention.message_id == message_id))
            data = message_dict(message, {}, [])
            recipients = self.store.member_ids(s, room.id)
        self.store.push(recipients, "chat:message_deleted", {**data, "deleted_by": actor.user_id},
                   defer)
        return data, not own

    def react(self, actor: Actor, message_id: str, emoji: str, add: bool,
              defer: Defer | None = None) -> dict[str, Any]:
        """Add or remove the actor's ``emoji`` on a message; returns the new counts."""
        with self.store.write() as s:
            message = self.store.message(s, message_id)
            room = self.store.room(s, message.room_id)
            if add:
                self.access.require_speaker(s, room, actor)
            else:  # taking a reaction back is not speaking: a muted member may
                self.access.require_member(s, room, actor)
            if message.deleted_at is not None:
                raise conflict("the message was deleted", {"message_id": message_id})
            reactions = table(ChatReaction)
            if add:
                changed = s.execute(self.store.insert()(reactions).values(
                    message_id=message_id, user_id=actor.user_id, emoji=emoji,
                    created_at=utcnow()).on_conflict_do_nothing()
                    .returning(reactions.c.emoji)).first() is not None
            else:
                changed = rowcount(s.execute(sa.delete(reactions).where(
                    reactions.c.message_id == message_id, reactions.c.user_id == actor.user_id,
                    reactions.c.emoji == emoji))) > 0
            counts = dict(s.execute(
                sa.select(ChatReaction.emoji, sa.func.count())
                .where(ChatReaction.message_id == message_id)
                .group_by(ChatReaction.emoji).order_by(ChatReaction.emoji)).all())
            data = {"room_id": room.id, "message_id": message_id, "seq": message.seq,
                    "emoji": emoji, "user_id": actor.user_id,
                    "action": "add" if add else "remove", "reactions": counts}
            recipients = self.store.member_ids(s, room.id) if changed else []
        self.store.push(recipients, "chat:reaction", data, defer)
        return {**data, "changed": bool(changed)}

    def dicts(self, s: Session, messages: Sequence[ChatMessage]) -> list[dict]:
        ids = [m.id for m in messages if m.deleted_at is None]
        reactions: dict[str, dict[str, int]] = {}
        mentions: dict[str, list[str]] = {}
        if ids:
            rows = s.execute(
                sa.select(ChatReaction.message_id, ChatReaction.emoji, sa.func.count())
                .where(ChatReaction.message_id.in_(ids))
                .group_by(ChatReaction.message_id, ChatReaction.emoji)
                .order_by(ChatReaction.message_id, ChatReaction.emoji))
            for message_id, emoji, count in rows:
                reactions.setdefault(message_id, {})[emoji] = count
            for message_id, user_id in s.execute(
                    sa.select(ChatMention.message_id, ChatMention.user_id)
                    .where(ChatMention.message_id.in_(ids))
                    .order_by(ChatMention.message_id, ChatMention.user_id)):
                mentions.setdefault(message_id, []).append(user_id)
        return [message_dict(m, reactions.get(m.id, {}), mentions.get(m.id, []))
                for m in messages]


class _Refused(Exception):  # noqa: N818 - a signal inside send(), never raised to callers
    """The send's statements stored nothing: roll back, then :meth:`Messages._send_refused`."""


@dataclass(frozen=True, slots=True)
class _SendStatements:
    """The Core statements of ``send``, built once (so SQLAlchemy compiles them once)."""

    combined: Any  # PostgreSQL: everything in one autocommit statement
    bump: Any  # SQLite: the checks and the next seq
    insert: Any
    read_marker: Any
    members: Any
    mentions: Any  # SQLite: the mentioned members, inserted and returned


@functools.cache
def _send_statements(postgres: bool, with_reply: bool) -> _SendStatements:
    rooms, members, messages, mentions = (table(ChatRoom), table(ChatMember),
                                          table(ChatMessage), table(ChatMention))

    def bp(column: sa.Column, name: str | None = None) -> sa.BindParameter:
        return sa.bindparam(name or column.name, type_=column.type)

    # parameters of the conditions are named apart from every column (``rid``, not
    # ``room_id``): an UPDATE would turn a parameter named like a column into a SET
    room_id = bp(members.c.room_id, "rid")
    author = bp(members.c.user_id, "uid")
    may_send = sa.exists().where(
        members.c.room_id == room_id, members.c.user_id == author,
        sa.or_(members.c.muted_until.is_(None), members.c.muted_until <= bp(
            members.c.muted_until, "now")))
    checks = [rooms.c.id == room_id, may_send]
    if with_reply:
        checks.append(sa.exists().where(messages.c.id == bp(messages.c.id, "parent"),
                                        messages.c.room_id == room_id))
    # the row lock that orders every sender of the room, on every process
    bump = (sa.update(rooms).where(*checks).values(last_seq=rooms.c.last_seq + 1)
            .returning(rooms.c.last_seq.label("seq"), rooms.c.name))
    columns = ["id", "room_id", "seq", "kind", "author_id", "author_name", "client_msg_id",
               "text", "reply_to", "created_at"]
    idempotency = ["room_id", "author_id", "client_msg_id"]
    recipients = sa.select(members.c.user_id).where(members.c.room_id == room_id)
    mentioned = sa.insert(mentions).from_select(
        ["message_id", "user_id", "room_id", "seq"],
        sa.select(bp(mentions.c.message_id, "mid"), members.c.user_id, room_id,
                  bp(mentions.c.seq, "new_seq")).where(
            members.c.room_id == room_id,
            members.c.user_id.in_(sa.bindparam("wanted", expanding=True)))
    ).returning(mentions.c.user_id)
    if postgres:
        # Autocommit cannot roll back: the bump must not happen for a resend. The NOT EXISTS
        # skips the common one; a concurrent one (invisible to this statement's snapshot)
        # hits the unique key in the plain INSERT below, which aborts the whole statement.
        bump = bump.where(~sa.exists().where(
            messages.c.room_id == room_id, messages.c.author_id == author,
            messages.c.client_msg_id == bp(messages.c.client_msg_id, "v_client_msg_id")))
        # values as v_<column>: the CTEs' UPDATEs must not see parameters named as columns
        bumped = bump.cte("bump")
        inserted = (sa.insert(messages).from_select(columns, sa.select(*[
            bumped.c.seq if c == "seq" else bp(messages.c[c], f"v_{c}") for c in columns]))
            .returning(messages.c.id, messages.c.seq).cte("ins"))
        read = (sa.update(members).where(
            members.c.room_id == room_id, members.c.user_id == author,
            members.c.last_read_seq < inserted.c.seq)
            .values(last_read_seq=inserted.c.seq).returning(members.c.user_id).cte("rd"))
        mention_rows = (sa.insert(mentions).from_select(
            ["message_id", "user_id", "room_id", "seq"],
            sa.select(inserted.c.id, members.c.user_id, room_id, inserted.c.seq)
            .select_from(inserted.join(members, sa.and_(
                members.c.room_id == room_id, members.c.user_id == sa.any_(
                    sa.bindparam("wanted", type_=postgresql.ARRAY(sa.String())))))))
            .returning(mentions.c.user_id).cte("men"))
        combined = sa.select(
            bumped.c.seq, bumped.c.name,
            sa.select(sa.func.array_agg(members.c.user_id)).where(
                members.c.room_id == room_id).scalar_subquery().label("recipients"),
            sa.select(sa.func.array_agg(mention_rows.c.user_id)).scalar_subquery().label(
                "mentioned"),
        ).add_cte(read)
        return _SendStatements(combined, None, None, None, None, None)
    insert = (sqlite.insert(messages).on_conflict_do_nothing(index_elements=idempotency)
              .returning(messages.c.seq))
    read_marker = sa.update(members).where(
        members.c.room_id == room_id, members.c.user_id == author,
        members.c.last_read_seq < bp(members.c.last_read_seq, "new_seq")).values(
        last_read_seq=bp(members.c.last_read_seq, "new_seq"))
    return _SendStatements(None, bump, insert, read_marker, recipients, mentioned)

