"""Chat: rooms, direct messages, persisted history, receipts and moderation.

The service behind the ``chat:*`` events, the Python API (``rt.chat``) and the HTTP API. It
reaches SQL only through ``rt.db`` and delivers every room event to the connections of the
room's members, on every process, with one emit addressed to the members' personal Socket.IO
rooms (``user-sids:<id>``): a non-member never receives anything, and a membership change takes
effect on the next message without re-subscribing any connection.

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
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dihya_realtime.kernel.errors import (
    ErrorCode,
    RealtimeError,
    conflict,
    forbidden,
    invalid,
    not_found,
)
from dihya_realtime.store.chat import (
    ChatBan,
    ChatMember,
    ChatMention,
    ChatMessage,
    ChatReaction,
    ChatRoom,
)
from dihya_realtime.store.models import Base, User

if TYPE_CHECKING:
    from dihya_realtime.features.channels.service import ChannelRef
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.chat")

ROLES = ("owner", "moderator", "member")
MANAGERS = ("owner", "moderator")
MAX_MENTIONS = 50
_ROOM_ID_SHAPE = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, the only ids rooms get
MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})")

Defer = Callable[[Callable[[], None]], None]
"""Runs a push later (``ctx.after_reply``: after the ack is sent) or, when ``None``, now."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z``, the one timestamp format on the wire."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_mentions(text: str) -> list[str]:
    """The user ids written as ``@user_id`` in ``text``, in order, without repeats.

    A trailing ``.`` or ``-`` is punctuation (``thanks @bob.``), not part of the id.
    """
    seen: dict[str, None] = {}
    for match in MENTION_RE.finditer(text):
        seen[match.group(1).rstrip(".-")] = None
    return [m for m in seen if m]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a user, their display name, and whether they hold ``chat:moderate``."""

    user_id: str
    name: str | None = None
    moderator: bool = False

    @classmethod
    def of(cls, conn: Connection) -> Actor:
        p = conn.principal
        return cls(p.user_id, p.display_name, conn.can("chat:moderate"))


def _forbidden(reason: str, message: str, **details: Any) -> RealtimeError:
    return forbidden(message, {"reason": reason, **details})


class TypingTracker:
    """Who is typing where, on this process (a connection lives on one process).

    ``start`` says whether to push: a renewal inside ``throttle`` seconds only extends the
    expiry. Entries not renewed within ``ttl`` seconds are returned by :meth:`expired`.
    """

    def __init__(self, ttl: float, throttle: float) -> None:
        self.ttl = ttl
        self.throttle = throttle
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], tuple[float, float, str]] = {}

    def start(self, room_id: str, user_id: str, sid: str, now: float) -> bool:
        with self._lock:
            key = (room_id, user_id)
            current = self._active.get(key)
            if current is None or now - current[1] >= self.throttle:
                self._active[key] = (now + self.ttl, now, sid)
                return True
            self._active[key] = (now + self.ttl, current[1], sid)
            return False

    def stop(self, room_id: str, user_id: str) -> bool:
        with self._lock:
            return self._active.pop((room_id, user_id), None) is not None

    def expired(self, now: float) -> list[tuple[str, str]]:
        with self._lock:
            gone = [key for key, (expires, _, _) in self._active.items() if expires <= now]
            for key in gone:
                del self._active[key]
            return gone

    def of_sid(self, sid: str) -> list[tuple[str, str]]:
        with self._lock:
            return [key for key, (_, _, s) in self._active.items() if s == sid]

    def __len__(self) -> int:
        return len(self._active)


class ChatService:
    """Chat rooms and messages over ``rt.db``; every public method checks its own rules.

    Methods take an :class:`Actor` (``Actor.of(conn)`` for a connection) and raise
    :class:`~dihya_realtime.kernel.errors.RealtimeError` values; they return JSON-ready dicts.
    """

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.db = rt.db
        settings = rt.settings
        self.history_limit = settings.chat_history_limit
        self.typing_state = TypingTracker(settings.chat_typing_ttl, settings.chat_typing_throttle)
        self._sweeper_lock = threading.Lock()
        self._sweeping = False

    # -- transactions
    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A session in a write transaction (SQLite: ``BEGIN IMMEDIATE``), committed on exit."""
        with self.db.write_transaction() as conn:
            session = Session(bind=conn, expire_on_commit=False)
            try:
                yield session
                session.flush()
            finally:
                session.close()

    def _insert(self) -> Any:
        return postgresql.insert if self.db.is_postgres else sqlite.insert

    # -- lookups and rules
    def _room(self, s: Session, room_id: str) -> ChatRoom:
        room = s.get(ChatRoom, room_id)
        if room is None:
            raise not_found("no such room", {"room_id": room_id})
        return room

    def _member(self, s: Session, room_id: str, user_id: str) -> ChatMember | None:
        return s.get(ChatMember, (room_id, user_id))

    def _require_member(self, s: Session, room: ChatRoom, actor: Actor) -> ChatMember:
        member = self._member(s, room.id, actor.user_id)
        if member is None:
            raise _forbidden("not_a_member", "you are not a member of this room",
                             room_id=room.id)
        return member

    def require_speaker(self, s: Session, room: ChatRoom, actor: Actor) -> ChatMember:
        """THE rule of who may speak in a room; every path that speaks asks it.

        Speaking is ``chat:send``, ``chat:edit``, ``chat:react``, ``chat:typing`` (true) and a
        client ``publish`` on the room's ``chat:<room id>`` channel. The speaker must be a
        member (a banned user is never one: ``reason: "banned"``, else ``"not_a_member"``)
        and not muted (``reason: "muted"``, ``until``). Withdrawing (``chat:unreact``,
        deleting one's own message, ``typing: false``) is not speaking. ``chat:send`` checks
        the same conditions inside its one SQL statement for speed, and when that statement
        refuses, asks this method why (:meth:`_send_refused`).
        """
        member = self._member(s, room.id, actor.user_id)
        if member is None:
            if self._is_banned(s, room.id, actor.user_id):
                raise _forbidden("banned", "you are banned from this room", room_id=room.id)
            raise _forbidden("not_a_member", "you are not a member of this room",
                             room_id=room.id)
        muted = _active_mute(member)
        if muted is not None:
            raise _forbidden("muted", "you are muted in this room", until=iso(muted),
                             room_id=room.id)
        return member

    def check_channel(self, conn: Connection, ref: ChannelRef, action: str) -> None:
        """A ``chat:<room id>`` channel is a room's: private rooms and DMs are read by members;
        a client ``publish`` there is speaking in the room (:meth:`require_speaker`).

        Other ``chat:`` channels (``chat:general``) keep the namespace policy alone. Room ids
        are always ``uuid4().hex``: a name of another shape cannot be a room, and skipping the
        lookup keeps a database read off every publish to an ordinary ``chat:`` channel (it
        was a quarter of the acked ``publish`` path's profile).
        """
        if not _ROOM_ID_SHAPE.fullmatch(ref.name):
            return
        with self.rt.db.session() as s:
            room = s.get(ChatRoom, ref.name)
            if room is None:
                return
            if action == "publish":
                self.require_speaker(s, room, Actor.of(conn))
            else:
                self._require_reader(s, room, Actor.of(conn))

    def _require_reader(self, s: Session, room: ChatRoom, actor: Actor) -> None:
        """Public rooms are readable by every chat user; private rooms and DMs by members."""
        if _members_only(room):
            self._require_member(s, room, actor)

    def _revoke_channel(self, room: ChatRoom, user_id: str, reason: str) -> None:
        """Take ``user_id``'s connections off the room's ``chat:<room id>`` channel, on every
        process, once membership was what let them read it.

        :meth:`check_channel` runs when a connection subscribes (and again at
        ``auth:refresh``); without this a member who left or was removed from a private room
        would keep seeing its presence and publications until then. A public room's channel
        is open to every chat user, member or not (the same rule as :meth:`_require_reader`),
        so leaving one takes nothing back and its subscriptions stay. Called after the
        membership change is committed, so a subscribe that starts later is refused (one whose
        check ran just before the commit can still complete; the next refresh takes it back).
        With the broker down nothing is delivered on the channel either; the subscription
        then goes at the next refresh or reconnect.
        """
        if not _members_only(room):
            return
        try:
            self.rt.unsubscribe(user_id, f"chat:{room.id}", reason)
        except RealtimeError as exc:
            log.warning("could not unsubscribe %s from the channel of room %s: %s",
                        user_id, room.id, exc.message)

    def _require_manager(self, s: Session, room: ChatRoom, actor: Actor,
                         target: ChatMember | None = None) -> ChatMember | None:
        """The actor moderates the room (owner, room moderator or ``chat:moderate``).

        A room moderator cannot act on the owner or another moderator; nobody but a global
        moderator acts on the owner; nobody moderates themselves.
        """
        if room.kind == "dm":
            raise _forbidden("direct_message", "direct messages have no moderators")
        mine = self._member(s, room.id, actor.user_id)
        role = mine.role if mine else None
        if role not in MANAGERS and not actor.moderator:
            raise _forbidden("not_a_moderator", "only the room's owner or moderators may do this",
                             room_id=room.id)
        if target is not None:
            if target.user_id == actor.user_id:
                raise _forbidden("self", "you cannot do this to yourself")
            if target.role == "owner" and not actor.moderator:
                raise _forbidden("target_is_owner", "the room owner cannot be moderated")
            if target.role == "moderator" and role != "owner" and not actor.moderator:
                raise _forbidden("target_is_moderator", "only the owner moderates moderators")
        return mine

    def _managed_member(self, s: Session, room_id: str, user_id: str, actor: Actor,
                        owner_only: bool = False) -> tuple[ChatMember, ChatMember | None]:
        """The member ``actor`` is about to manage, after the manager (or owner) check;
        returns ``(target, actor's own membership)``."""
        room = self._room(s, room_id)
        target = self._member(s, room_id, user_id)
        mine = self._require_manager(s, room, actor, target)
        if owner_only and (mine is None or mine.role != "owner") and not actor.moderator:
            raise _forbidden("not_the_owner", "only the owner changes roles")
        if target is None:
            raise not_found("this user is not a member", {"user_id": user_id})
        return target, mine

    def _member_ids(self, s: Session, room_id: str) -> list[str]:
        return list(s.scalars(sa.select(ChatMember.user_id).where(ChatMember.room_id == room_id)))

    def _is_banned(self, s: Session, room_id: str, user_id: str) -> bool:
        return s.get(ChatBan, (room_id, user_id)) is not None

    def _add_member(self, s: Session, room_id: str, user_id: str, role: str,
                    last_read_seq: int) -> bool:
        """Insert a membership unless it exists (two joins at once are not an error)."""
        stmt = self._insert()(_table(ChatMember)).values(
            room_id=room_id, user_id=user_id, role=role, joined_at=utcnow(),
            last_read_seq=last_read_seq).on_conflict_do_nothing().returning(ChatMember.user_id)
        # RETURNING, not rowcount: SQLAlchemy + psycopg report -1 for this INSERT
        return s.execute(stmt).first() is not None

    # -- delivery
    def _push(self, user_ids: Iterable[str], event: str, data: Any,
              defer: Defer | None = None) -> None:
        """One emit to the personal rooms of ``user_ids``, on every process.

        python-socketio accepts a list of rooms: the payload is redacted and encoded once and,
        with a message queue, published once; each process resolves the rooms locally.
        """
        from dihya_realtime.realtime import user_room

        rooms = [user_room(u) for u in dict.fromkeys(user_ids)]
        if not rooms:
            return

        def send() -> None:
            self.rt.emit(event, data, to=rooms)  # type: ignore[arg-type]  # list of rooms

        if defer is None:
            send()
        else:
            defer(send)

    # -- serialisation
    def _message_dicts(self, s: Session, messages: Sequence[ChatMessage]) -> list[dict]:
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
        return [self._message_dict(m, reactions.get(m.id, {}), mentions.get(m.id, []))
                for m in messages]

    @staticmethod
    def _message_dict(m: ChatMessage, reactions: dict[str, int],
                      mentions: list[str]) -> dict[str, Any]:
        deleted = m.deleted_at is not None
        author = None
        if m.author_id is not None:
            author = {"user_id": m.author_id, "name": m.author_name or m.author_id}
        return {
            "id": m.id,
            "room_id": m.room_id,
            "seq": m.seq,
            "kind": m.kind,
            "author": author,
            "text": None if deleted else m.text,
            "data": None if deleted else m.data,
            "client_msg_id": m.client_msg_id,
            "reply_to": m.reply_to,
            "mentions": [] if deleted else mentions,
            "reactions": {} if deleted else reactions,
            "created_at": iso(m.created_at),
            "edited_at": iso(m.edited_at),
            "deleted": deleted,
            "deleted_at": iso(m.deleted_at),
        }

    def _message(self, s: Session, message_id: str) -> ChatMessage:
        message = s.get(ChatMessage, message_id)
        if message is None:
            raise not_found("no such message", {"message_id": message_id})
        return message

    @staticmethod
    def _room_dict(room: ChatRoom, member: ChatMember | None = None,
                   peer: str | None = None) -> dict[str, Any]:
        return {
            "id": room.id,
            "kind": room.kind,
            "name": room.name,
            "topic": room.topic,
            "visibility": room.visibility,
            "created_by": room.created_by,
            "created_at": iso(room.created_at),
            "last_seq": room.last_seq,
            "peer": peer,
            "role": member.role if member else None,
            "last_read_seq": member.last_read_seq if member else None,
            "muted_until": iso(_active_mute(member)),
        }

    @staticmethod
    def _member_dict(member: ChatMember, name: str | None = None) -> dict[str, Any]:
        return {"user_id": member.user_id, "name": name or member.user_id,
                "role": member.role, "joined_at": iso(member.joined_at),
                "last_read_seq": member.last_read_seq,
                "muted_until": iso(_active_mute(member))}

    # -- rooms
    def create_room(self, actor: Actor, name: str, topic: str | None,
                    visibility: str) -> dict[str, Any]:
        """Create a named room; the creator is its owner."""
        room = ChatRoom(id=uuid.uuid4().hex, kind="room", name=name, topic=topic,
                        visibility=visibility, created_by=actor.user_id, created_at=utcnow(),
                        last_seq=0)
        with self._write() as s:
            s.add(room)
            s.flush()
            self._add_member(s, room.id, actor.user_id, "owner", 0)
            member = self._member(s, room.id, actor.user_id)
            return {**self._room_dict(room, member), "member_count": 1}

    def rooms(self, actor: Actor, limit: int | None = None,
              cursor: tuple[str, str, str] | None = None) -> dict[str, Any]:
        """Public rooms and the actor's rooms, each with unread and mention counts, a page
        at a time in ``(kind, name, id)`` order.

        ``limit`` defaults to, and is capped by, ``DIHYA_RT_CHAT_ROOMS_PAGE_LIMIT``;
        ``cursor`` is the last ``(kind, name, id)`` of the previous page. Returns
        ``{"rooms", "more", "next_cursor"}`` (``next_cursor`` is that last key, or ``None``).
        """
        me = actor.user_id
        cap = self.rt.settings.chat_rooms_page_limit
        limit = min(limit or cap, cap)
        with self.db.session() as s:
            mine = sa.and_(ChatMember.room_id == ChatRoom.id, ChatMember.user_id == me)
            q = (sa.select(ChatRoom, ChatMember).outerjoin(ChatMember, mine)
                 .where(sa.or_(ChatMember.user_id.is_not(None),
                               sa.and_(ChatRoom.kind == "room", ChatRoom.visibility == "public"))))
            if cursor is not None:
                q = q.where(sa.tuple_(ChatRoom.kind, ChatRoom.name, ChatRoom.id)
                            > sa.tuple_(*cursor))
            rows = s.execute(q.order_by(ChatRoom.kind, ChatRoom.name, ChatRoom.id)
                             .limit(limit + 1)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            room_ids = [room.id for room, _ in rows]
            counts = dict(s.execute(
                sa.select(ChatMember.room_id, sa.func.count())
                .where(ChatMember.room_id.in_(room_ids)).group_by(ChatMember.room_id)).all()) \
                if room_ids else {}
            unread, mentions = self._counts(s, me, room_ids)
            peers = self._dm_peers(s, [room.id for room, _ in rows if room.kind == "dm"], me)
            rooms = [{**self._room_dict(room, member, peers.get(room.id)),
                      "member_count": counts.get(room.id, 0),
                      "unread_count": unread.get(room.id, 0),
                      "mention_count": mentions.get(room.id, 0)} for room, member in rows]
        last = rows[-1][0] if rows and more else None
        return {"rooms": rooms, "more": more,
                "next_cursor": (last.kind, last.name, last.id) if last is not None else None}

    @staticmethod
    def _counts(s: Session, me: str, room_ids: list[str]) -> tuple[dict[str, int],
                                                                   dict[str, int]]:
        """Unread messages (not mine, not deleted) and mentions of me past my read marker."""
        if not room_ids:
            return {}, {}
        member_of = sa.and_(ChatMember.room_id == ChatMessage.room_id, ChatMember.user_id == me)
        unread = dict(s.execute(
            sa.select(ChatMessage.room_id, sa.func.count())
            .join(ChatMember, member_of)
            .where(ChatMessage.room_id.in_(room_ids),
                   ChatMessage.seq > ChatMember.last_read_seq,
                   ChatMessage.deleted_at.is_(None),
                   sa.or_(ChatMessage.author_id.is_(None), ChatMessage.author_id != me))
            .group_by(ChatMessage.room_id)).all())
        mentions = dict(s.execute(
            sa.select(ChatMention.room_id, sa.func.count())
            .join(ChatMember, sa.and_(ChatMember.room_id == ChatMention.room_id,
                                      ChatMember.user_id == me))
            .join(ChatMessage, ChatMessage.id == ChatMention.message_id)
            .where(ChatMention.user_id == me, ChatMention.room_id.in_(room_ids),
                   ChatMention.seq > ChatMember.last_read_seq,
                   ChatMessage.deleted_at.is_(None))
            .group_by(ChatMention.room_id)).all())
        return unread, mentions

    def _dm_peers(self, s: Session, room_ids: list[str], me: str) -> dict[str, str]:
        if not room_ids:
            return {}
        return dict(s.execute(
            sa.select(ChatMember.room_id, ChatMember.user_id)
            .where(ChatMember.room_id.in_(room_ids), ChatMember.user_id != me)).all())

    def room(self, actor: Actor, room_id: str) -> dict[str, Any]:
        """A room's details and members (private rooms and DMs: members only)."""
        with self.db.session() as s:
            room = self._room(s, room_id)
            self._require_reader(s, room, actor)
            rows = s.execute(
                sa.select(ChatMember, User.name)
                .outerjoin(User, User.id == ChatMember.user_id)
                .where(ChatMember.room_id == room_id)
                .order_by(ChatMember.joined_at, ChatMember.user_id)).all()
            members = [self._member_dict(m, name) for m, name in rows]
            me = next((m for m, _ in rows if m.user_id == actor.user_id), None)
            peer = next((m["user_id"] for m in members if m["user_id"] != actor.user_id),
                        None) if room.kind == "dm" else None
            return {**self._room_dict(room, me, peer), "member_count": len(members),
                    "members": members}

    def join(self, actor: Actor, room_id: str, defer: Defer | None = None) -> dict[str, Any]:
        """Join a public room; a banned user is refused. Joining twice is harmless."""
        with self._write() as s:
            room = self._room(s, room_id)
            if room.kind != "room" or room.visibility != "public":
                raise _forbidden("invite_only", "this room is private: ask for an invitation",
                                 room_id=room_id)
            if self._is_banned(s, room_id, actor.user_id):
                raise _forbidden("banned", "you are banned from this room", room_id=room_id)
            # history stays readable, but what was said before joining is not "unread"
            joined = self._add_member(s, room_id, actor.user_id, "member", room.last_seq)
            member = self._member(s, room_id, actor.user_id)
            recipients = self._member_ids(s, room_id)
            result = {**self._room_dict(room, member), "member_count": len(recipients)}
        if joined:
            self._push(recipients, "chat:member_joined",
                       {"room_id": room_id, "user_id": actor.user_id, "role": "member",
                        "name": actor.name, "by": None}, defer)
        return result

    def leave(self, actor: Actor, room_id: str, defer: Defer | None = None) -> dict[str, Any]:
        """Leave a room. An owner who leaves hands the room to the longest-standing member."""
        promoted: ChatMember | None = None
        with self._write() as s:
            room = self._room(s, room_id)
            if room.kind == "dm":
                raise conflict("a direct message cannot be left", {"room_id": room_id})
            member = self._require_member(s, room, actor)
            s.delete(member)
            s.flush()
            if member.role == "owner":
                promoted = s.scalars(
                    sa.select(ChatMember).where(ChatMember.room_id == room_id)
                    .order_by(sa.case((ChatMember.role == "moderator", 0), else_=1),
                              ChatMember.joined_at, ChatMember.user_id).limit(1)).first()
                if promoted is not None:
                    promoted.role = "owner"
            recipients = self._member_ids(s, room_id)
        self._revoke_channel(room, actor.user_id, "left")
        self._push([*recipients, actor.user_id], "chat:member_left",
                   {"room_id": room_id, "user_id": actor.user_id, "reason": "left", "by": None},
                   defer)
        self._typing_ended(room_id, actor, recipients, defer)
        if promoted is not None:
            self._push(recipients, "chat:member_updated",
                       {"room_id": room_id, "user_id": promoted.user_id, "role": "owner",
                        "muted_until": iso(_active_mute(promoted)), "by": None}, defer)
        return {"room_id": room_id, "left": True}

    def invite(self, actor: Actor, room_id: str, user_id: str,
               defer: Defer | None = None) -> dict[str, Any]:
        """Add ``user_id`` to a room (owner or moderators; a banned user must be unbanned)."""
        with self._write() as s:
            room = self._room(s, room_id)
            self._require_manager(s, room, actor)
            if self._is_banned(s, room_id, user_id):
                raise conflict("this user is banned from the room: unban first",
                               {"room_id": room_id, "user_id": user_id})
            added = self._add_member(s, room_id, user_id, "member", room.last_seq)
            member = self._member(s, room_id, user_id)
            assert member is not None
            result = {"room_id": room_id, "member": self._member_dict(member), "added": added}
            recipients = self._member_ids(s, room_id)
        if added:
            self._push(recipients, "chat:member_joined",
                       {"room_id": room_id, "user_id": user_id, "role": "member", "name": None,
                        "by": actor.user_id}, defer)
        return result

    def remove_member(self, actor: Actor, room_id: str, user_id: str, reason: str = "removed",
                      defer: Defer | None = None) -> dict[str, Any]:
        """Remove a member (owner or moderators); ``reason`` is ``removed`` or ``kicked``."""
        with self._write() as s:
            target, _ = self._managed_member(s, room_id, user_id, actor)
            room = self._room(s, room_id)  # loaded by the check above: no query
            s.delete(target)
            recipients = self._member_ids(s, room_id)
        self._revoke_channel(room, user_id, "forbidden")
        self._push([*recipients, user_id], "chat:member_left",
                   {"room_id": room_id, "user_id": user_id, "reason": reason,
                    "by": actor.user_id}, defer)
        self._typing_ended(room_id, Actor(user_id), recipients, defer)
        return {"room_id": room_id, "user_id": user_id, "removed": True}

    def set_role(self, actor: Actor, room_id: str, user_id: str, role: str,
                 defer: Defer | None = None) -> dict[str, Any]:
        """Make a member a moderator or a plain member again (the owner only)."""
        with self._write() as s:
            target, _ = self._managed_member(s, room_id, user_id, actor, owner_only=True)
            target.role = role
            data = {"room_id": room_id, "user_id": user_id, "role": role,
                    "muted_until": iso(_active_mute(target)), "by": actor.user_id}
            recipients = self._member_ids(s, room_id)
        self._push(recipients, "chat:member_updated", data, defer)
        return data

    def dm(self, actor: Actor, user_id: str) -> dict[str, Any]:
        """The one direct-message room of the actor and ``user_id``, created on first use."""
        me = actor.user_id
        if user_id == me:
            raise invalid("you cannot open a direct message with yourself",
                          [{"field": "user_id", "message": "must be another user"}])
        a, b = sorted((me, user_id))
        key = f"{len(a)}:{a}|{b}"  # length-prefixed: no id can forge another pair's key
        for _ in range(2):
            try:
                with self._write() as s:
                    room = s.scalars(sa.select(ChatRoom).where(ChatRoom.dm_key == key)).first()
                    if room is None:
                        room = ChatRoom(id=uuid.uuid4().hex, kind="dm", name=f"{a}, {b}",
                                        visibility="private", created_by=me,
                                        created_at=utcnow(), last_seq=0, dm_key=key)
                        s.add(room)
                        s.flush()
                        self._add_member(s, room.id, a, "member", 0)
                        self._add_member(s, room.id, b, "member", 0)
                    member = self._member(s, room.id, me)
                    return {**self._room_dict(room, member, user_id), "member_count": 2}
            except IntegrityError:
                continue  # another process created it a moment ago: read it back
        raise RealtimeError(ErrorCode.CONFLICT, "could not create the direct message, retry")

    # -- messages
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
        wanted = [c for c in dict.fromkeys([*parse_mentions(text), *mentions])
                  if c != author][:MAX_MENTIONS]
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
        if self.typing_state.stop(room_id, author):
            self._push([r for r in recipients if r != author], "chat:typing",
                       self._typing_dict(room_id, actor, False), defer)
        self._push(recipients, "chat:message", data, defer)
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
        stmts = _send_statements(self.db.is_postgres, checks["parent"] is not None)
        if self.db.is_postgres:
            params = {**checks, **{f"v_{k}": v for k, v in row.items()}, "wanted": wanted}
            with self.db.engine.connect() as conn:
                got = conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    stmts.combined, params).first()
            if got is None:
                raise _Refused
            present = set(got.mentioned or ())
            return (got.seq, got.name, list(got.recipients or ()),
                    [u for u in wanted if u in present])
        with self.db.write_transaction() as conn:
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
        with self.db.session() as s:
            existing = s.scalars(sa.select(ChatMessage).where(
                ChatMessage.room_id == room_id, ChatMessage.author_id == actor.user_id,
                ChatMessage.client_msg_id == client_msg_id)).first()
            if existing is not None:
                return self._message_dicts(s, [existing])[0]
            room = self._room(s, room_id)
            self.require_speaker(s, room, actor)
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
            sa.update(_table(ChatRoom)).where(ChatRoom.id == room.id)
            .values(last_seq=ChatRoom.last_seq + 1).returning(ChatRoom.last_seq)).scalar_one()
        room.last_seq = seq
        message = ChatMessage(id=uuid.uuid4().hex, room_id=room.id, seq=seq, kind=kind,
                              author_id=author, author_name=author_name,
                              client_msg_id=client_msg_id, text=text, data=data,
                              reply_to=reply_to, created_at=utcnow())
        s.add(message)
        s.flush()
        mentioned = self._mentionable(s, room.id, author, [*parse_mentions(text), *mentions])
        s.add_all(ChatMention(message_id=message.id, user_id=u, room_id=room.id, seq=seq)
                  for u in mentioned)
        return message, mentioned

    def _mentionable(self, s: Session, room_id: str, author: str | None,
                     candidates: Sequence[str]) -> list[str]:
        """The candidates who are members of the room, except the author; at most 50."""
        wanted = [c for c in dict.fromkeys(candidates) if c != author][:MAX_MENTIONS]
        if not wanted:
            return []
        present = set(s.scalars(sa.select(ChatMember.user_id).where(
            ChatMember.room_id == room_id, ChatMember.user_id.in_(wanted))))
        return [u for u in wanted if u in present]

    def _notify_mentions(self, room_name: str, message: dict[str, Any],
                         user_ids: Sequence[str]) -> None:
        """Tell mentioned users through the notifications feature, when it is installed.

        The hook is ``rt.notify(user_ids=…, category=…, title=…, …)``; without it mentions are
        still stored and counted by ``chat:rooms``. A notification failure never fails a send.
        """
        notify = getattr(self.rt, "notify", None)
        if notify is None or not user_ids:
            return
        author = (message["author"] or {}).get("name") or "Someone"
        text = message["text"] or ""
        try:
            notify(user_ids=list(user_ids), category="chat.mention",
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
        with self._write() as s:
            room = self._room(s, room_id)
            message, _ = self._store(s, room, None, None, text, None, None, (), kind="system",
                                     data=data)
            result = self._message_dict(message, {}, [])
            recipients = self._member_ids(s, room_id)
        self._push(recipients, "chat:message", result)
        return result

    def history(self, actor: Actor | None, room_id: str, before_seq: int | None = None,
                after_seq: int | None = None, around_seq: int | None = None,
                limit: int | None = None) -> dict[str, Any]:
        """A page of messages in ``seq`` order (``actor=None``: the server, no checks).

        No anchor: the latest messages. ``before_seq`` / ``after_seq`` are exclusive;
        ``around_seq`` centres the page on that message. Because ``seq`` has no gaps (deleted
        messages stay as tombstones), ``has_more_before`` / ``has_more_after`` need no query.
        """
        limit = limit or self.history_limit
        q = sa.select(ChatMessage).where(ChatMessage.room_id == room_id)
        with self.db.session() as s:
            room = self._room(s, room_id)
            if actor is not None:
                self._require_reader(s, room, actor)
            if after_seq is not None:
                rows = list(s.scalars(q.where(ChatMessage.seq > after_seq)
                                      .order_by(ChatMessage.seq).limit(limit)))
            elif around_seq is not None:
                older = list(s.scalars(q.where(ChatMessage.seq < around_seq)
                                       .order_by(ChatMessage.seq.desc()).limit(limit // 2)))
                newer = list(s.scalars(q.where(ChatMessage.seq >= around_seq)
                                       .order_by(ChatMessage.seq).limit(limit - len(older))))
                rows = [*reversed(older), *newer]
            else:
                if before_seq is not None:
                    q = q.where(ChatMessage.seq < before_seq)
                rows = list(reversed(list(s.scalars(
                    q.order_by(ChatMessage.seq.desc()).limit(limit)))))
            messages = self._message_dicts(s, rows)
            last_seq = room.last_seq
        more_before = bool(rows) and rows[0].seq > 1
        more_after = bool(rows) and rows[-1].seq < last_seq
        if after_seq is not None:
            has_more = more_after
        elif around_seq is not None:
            has_more = more_before or more_after
        else:
            has_more = more_before
        return {"room_id": room_id, "messages": messages, "has_more": has_more,
                "has_more_before": more_before, "has_more_after": more_after,
                "last_seq": last_seq}

    def edit(self, actor: Actor, message_id: str, text: str,
             defer: Defer | None = None) -> dict[str, Any]:
        """Change the text of one's own message; new ``@mentions`` are recorded and notified."""
        with self._write() as s:
            message = self._message(s, message_id)
            room = self._room(s, message.room_id)
            self._require_member(s, room, actor)
            if message.author_id != actor.user_id:
                raise _forbidden("not_the_author", "only the author edits a message")
            self.require_speaker(s, room, actor)
            if message.deleted_at is not None:
                raise conflict("the message was deleted", {"message_id": message_id})
            old = set(s.scalars(sa.select(ChatMention.user_id)
                                .where(ChatMention.message_id == message_id)))
            message.text = text
            message.edited_at = utcnow()
            wanted = self._mentionable(s, room.id, actor.user_id, parse_mentions(text))
            s.execute(sa.delete(_table(ChatMention)).where(
                ChatMention.message_id == message_id, ChatMention.user_id.not_in(wanted)))
            s.add_all(ChatMention(message_id=message_id, user_id=u, room_id=room.id,
                                  seq=message.seq) for u in wanted if u not in old)
            s.flush()
            data = self._message_dicts(s, [message])[0]
            recipients = self._member_ids(s, room.id)
            room_name = room.name
        self._push(recipients, "chat:message_edited", data, defer)
        self._notify_mentions(room_name, data, [u for u in wanted if u not in old])
        return data

    def delete(self, actor: Actor, message_id: str,
               defer: Defer | None = None) -> tuple[dict[str, Any], bool]:
        """Delete a message (author, room owner/moderator, ``chat:moderate``): a tombstone.

        Returns ``(tombstone, by_moderator)``; deleting twice returns the tombstone again.
        """
        with self._write() as s:
            message = self._message(s, message_id)
            room = self._room(s, message.room_id)
            own = message.author_id == actor.user_id
            if own:
                self._require_member(s, room, actor)
            else:
                author = self._member(s, room.id, message.author_id) \
                    if message.author_id else None
                self._require_manager(s, room, actor, author)
            if message.deleted_at is not None:
                return self._message_dict(message, {}, []), not own
            message.deleted_at = utcnow()
            message.deleted_by = actor.user_id
            message.text = None
            message.data = None
            s.execute(sa.delete(_table(ChatReaction))
                      .where(ChatReaction.message_id == message_id))
            s.execute(sa.delete(_table(ChatMention))
                      .where(ChatMention.message_id == message_id))
            data = self._message_dict(message, {}, [])
            recipients = self._member_ids(s, room.id)
        self._push(recipients, "chat:message_deleted", {**data, "deleted_by": actor.user_id},
                   defer)
        return data, not own

    def react(self, actor: Actor, message_id: str, emoji: str, add: bool,
              defer: Defer | None = None) -> dict[str, Any]:
        """Add or remove the actor's ``emoji`` on a message; returns the new counts."""
        with self._write() as s:
            message = self._message(s, message_id)
            room = self._room(s, message.room_id)
            if add:
                self.require_speaker(s, room, actor)
            else:  # taking a reaction back is not speaking: a muted member may
                self._require_member(s, room, actor)
            if message.deleted_at is not None:
                raise conflict("the message was deleted", {"message_id": message_id})
            table = _table(ChatReaction)
            if add:
                changed = s.execute(self._insert()(table).values(
                    message_id=message_id, user_id=actor.user_id, emoji=emoji,
                    created_at=utcnow()).on_conflict_do_nothing()
                    .returning(table.c.emoji)).first() is not None
            else:
                changed = _rowcount(s.execute(sa.delete(table).where(
                    table.c.message_id == message_id, table.c.user_id == actor.user_id,
                    table.c.emoji == emoji))) > 0
            counts = dict(s.execute(
                sa.select(ChatReaction.emoji, sa.func.count())
                .where(ChatReaction.message_id == message_id)
                .group_by(ChatReaction.emoji).order_by(ChatReaction.emoji)).all())
            data = {"room_id": room.id, "message_id": message_id, "seq": message.seq,
                    "emoji": emoji, "user_id": actor.user_id,
                    "action": "add" if add else "remove", "reactions": counts}
            recipients = self._member_ids(s, room.id) if changed else []
        self._push(recipients, "chat:reaction", data, defer)
        return {**data, "changed": bool(changed)}

    def mark_read(self, actor: Actor, room_id: str, seq: int,
                  defer: Defer | None = None) -> dict[str, Any]:
        """Move the actor's read marker forward to ``seq`` (clamped to the room's last seq).

        The marker never moves backwards: an older ``seq`` changes nothing and is not pushed.
        """
        with self._write() as s:
            room = self._room(s, room_id)
            self._require_member(s, room, actor)
            target = min(seq, room.last_seq)
            moved = _rowcount(s.execute(sa.update(_table(ChatMember)).where(
                ChatMember.room_id == room_id, ChatMember.user_id == actor.user_id,
                ChatMember.last_read_seq < target).values(last_read_seq=target)))
            current = s.scalar(sa.select(ChatMember.last_read_seq).where(
                ChatMember.room_id == room_id, ChatMember.user_id == actor.user_id))
            recipients = self._member_ids(s, room_id) if moved else []
        data = {"room_id": room_id, "user_id": actor.user_id, "seq": current}
        self._push(recipients, "chat:read", data, defer)
        return {**data, "moved": bool(moved), **self.counts(actor.user_id, room_id)}

    def counts(self, user_id: str, room_id: str) -> dict[str, int]:
        """``unread_count`` and ``mention_count`` of one member in one room."""
        with self.db.session() as s:
            unread, mentions = self._counts(s, user_id, [room_id])
        return {"unread_count": unread.get(room_id, 0),
                "mention_count": mentions.get(room_id, 0)}

    # -- typing
    @staticmethod
    def _typing_dict(room_id: str, actor: Actor, typing: bool,
                     expires_in: float | None = None) -> dict[str, Any]:
        return {"room_id": room_id, "user_id": actor.user_id, "name": actor.name,
                "typing": typing, "expires_in": expires_in}

    def typing(self, actor: Actor, sid: str, room_id: str, typing: bool) -> dict[str, Any]:
        """Tell the other members that the actor is (no longer) typing; throttled, ephemeral."""
        with self.db.session() as s:
            room = self._room(s, room_id)
            if typing:
                self.require_speaker(s, room, actor)
            else:
                self._require_member(s, room, actor)
            others = [u for u in self._member_ids(s, room_id) if u != actor.user_id]
        tracker = self.typing_state
        if typing:
            push = tracker.start(room_id, actor.user_id, sid, time.monotonic())
            self._ensure_sweeper()
        else:
            push = tracker.stop(room_id, actor.user_id)
        if push:
            self._push(others, "chat:typing",
                       self._typing_dict(room_id, actor, typing,
                                         tracker.ttl if typing else None))
        return {"room_id": room_id, "typing": typing, "sent": push}

    def expire_typing(self, now: float | None = None) -> int:
        """Push ``typing: false`` for every indicator not renewed in time; returns how many."""
        gone = self.typing_state.expired(time.monotonic() if now is None else now)
        for room_id, user_id in gone:
            self._typing_stopped(room_id, user_id)
        return len(gone)

    def _typing_stopped(self, room_id: str, user_id: str) -> None:
        with self.db.session() as s:
            others = [u for u in self._member_ids(s, room_id) if u != user_id]
        self._push(others, "chat:typing", self._typing_dict(room_id, Actor(user_id), False))

    def _typing_ended(self, room_id: str, gone: Actor, recipients: list[str],
                      defer: Defer | None) -> None:
        """``gone`` left the room (left, removed, kicked, banned): the others see them stop
        typing now, not when the indicator lapses.

        The typing state lives on the process of the typist's connection. With several
        processes that may not be this one, so ``typing: false`` is pushed whether or not this
        process saw them type (the message queue takes it to every process; a stop for someone
        not shown typing changes nothing on a client). One process knows: it pushes only when
        they were typing.
        """
        was_typing = self.typing_state.stop(room_id, gone.user_id)
        if was_typing or self.rt.settings.redis_url:
            self._push(recipients, "chat:typing", self._typing_dict(room_id, gone, False), defer)

    def connection_closed(self, sid: str) -> None:
        """A closed connection stops typing at once rather than after the expiry."""
        for room_id, user_id in self.typing_state.of_sid(sid):
            if self.typing_state.stop(room_id, user_id):
                self._typing_stopped(room_id, user_id)

    def _ensure_sweeper(self) -> None:
        """One background task per process while someone types; it ends when nobody does."""
        with self._sweeper_lock:
            if self._sweeping:
                return
            self._sweeping = True
        self.rt.socketio.start_background_task(self._sweep)

    def _sweep(self) -> None:
        interval = min(1.0, self.typing_state.ttl / 4)
        try:
            while True:
                self.rt.socketio.sleep(interval)
                try:
                    self.expire_typing()
                except Exception:
                    log.exception("typing expiry failed")
                with self._sweeper_lock:
                    if not len(self.typing_state):
                        self._sweeping = False
                        return
        except BaseException:
            with self._sweeper_lock:
                self._sweeping = False
            raise

    # -- moderation
    def mute(self, actor: Actor, room_id: str, user_id: str, until: datetime | None,
             defer: Defer | None = None) -> dict[str, Any]:
        """Mute a member until ``until`` (``None`` or a past time: unmute)."""
        with self._write() as s:
            target, _ = self._managed_member(s, room_id, user_id, actor)
            target.muted_until = until
            data = {"room_id": room_id, "user_id": user_id, "role": target.role,
                    "muted_until": iso(_active_mute(target)), "by": actor.user_id}
            recipients = self._member_ids(s, room_id)
        self._push(recipients, "chat:member_updated", data, defer)
        return data

    def ban(self, actor: Actor, room_id: str, user_id: str, reason: str | None,
            defer: Defer | None = None) -> dict[str, Any]:
        """Ban a user (member or not): removed now, refused at join and invite until unbanned."""
        with self._write() as s:
            room = self._room(s, room_id)
            target = self._member(s, room_id, user_id)
            self._require_manager(s, room, actor, target)
            if user_id == actor.user_id:
                raise _forbidden("self", "you cannot do this to yourself")
            s.execute(self._insert()(_table(ChatBan)).values(
                room_id=room_id, user_id=user_id, banned_by=actor.user_id, reason=reason,
                created_at=utcnow()).on_conflict_do_nothing())
            if target is not None:
                s.delete(target)
            recipients = self._member_ids(s, room_id)
        if target is not None:
            self._revoke_channel(room, user_id, "forbidden")
            self._push([*recipients, user_id], "chat:member_left",
                       {"room_id": room_id, "user_id": user_id, "reason": "banned",
                        "by": actor.user_id}, defer)
            self._typing_ended(room_id, Actor(user_id), recipients, defer)
        return {"room_id": room_id, "user_id": user_id, "banned": True,
                "was_member": target is not None}

    def unban(self, actor: Actor, room_id: str, user_id: str) -> dict[str, Any]:
        """Lift a ban; the user may join (public) or be invited again."""
        with self._write() as s:
            room = self._room(s, room_id)
            self._require_manager(s, room, actor)
            ban = s.get(ChatBan, (room_id, user_id))
            if ban is None:
                raise not_found("this user is not banned", {"user_id": user_id})
            s.delete(ban)
        return {"room_id": room_id, "user_id": user_id, "banned": False}


def _table(model: type[Base]) -> sa.Table:
    """A model's Core table, for statements that bypass the ORM unit of work."""
    return cast(sa.Table, model.__table__)


def _rowcount(result: Any) -> int:
    return cast(CursorResult, result).rowcount


def _members_only(room: ChatRoom) -> bool:
    """Is the room (its details, history and channel) for its members only?"""
    return room.visibility != "public" or room.kind != "room"


def _active_mute(member: ChatMember | None) -> datetime | None:
    if member is None or member.muted_until is None:
        return None
    return member.muted_until if member.muted_until > utcnow() else None


class _Refused(Exception):  # noqa: N818 - a signal inside send(), never raised to callers
    """The send's statements stored nothing: roll back, then :meth:`ChatService._send_refused`."""


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
    rooms, members, messages, mentions = (_table(ChatRoom), _table(ChatMember),
                                          _table(ChatMessage), _table(ChatMention))

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
