"""Reading chat: the rooms list and its pages, a room's details, history, read markers and
the unread and mention counts.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dihya_realtime.features.chat.access import Access
from dihya_realtime.features.chat.base import ChatStore
from dihya_realtime.features.chat.common import (
    Actor,
    Defer,
    member_dict,
    room_dict,
    rowcount,
    table,
)
from dihya_realtime.features.chat.messages import Messages
from dihya_realtime.features.chat.models import (
    ChatMember,
    ChatMention,
    ChatMessage,
    ChatReaction,
    ChatRoom,
)
from dihya_realtime.store.models import User


class Queries:
    """Pages of rooms and messages, and where each member has read up to."""

    def __init__(self, store: ChatStore, access: Access, messages: Messages) -> None:
        self.store = store
        self.access = access
        self.messages = messages

    def rooms(self, actor: Actor, limit: int | None = None,
              cursor: tuple[str, str, str] | None = None) -> dict[str, Any]:
        """Public rooms and the actor's rooms, each with unread and mention counts, a page
        at a time in ``(kind, name, id)`` order.

        ``limit`` defaults to, and is capped by, ``DIHYA_RT_CHAT_ROOMS_PAGE_LIMIT``;
        ``cursor`` is the last ``(kind, name, id)`` of the previous page. Returns
        ``{"rooms", "more", "next_cursor"}`` (``next_cursor`` is that last key, or ``None``).
        """
        me = actor.user_id
        cap = self.store.rt.settings.chat_rooms_page_limit
        limit = min(limit or cap, cap)
        with self.store.db.session() as s:
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
            rooms = [{**room_dict(room, member, peers.get(room.id)),
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
        with self.store.db.session() as s:
            room = self.store.room(s, room_id)
            self.access.require_reader(s, room, actor)
            rows = s.execute(
                sa.select(ChatMember, User.name)
                .outerjoin(User, User.id == ChatMember.user_id)
                .where(ChatMember.room_id == room_id)
                .order_by(ChatMember.joined_at, ChatMember.user_id)).all()
            members = [member_dict(m, name) for m, name in rows]
            me = next((m for m, _ in rows if m.user_id == actor.user_id), None)
            peer = next((m["user_id"] for m in members if m["user_id"] != actor.user_id),
                        None) if room.kind == "dm" else None
            return {**room_dict(room, me, peer), "member_count": len(members),
                    "members": members}

    def history(self, actor: Actor | None, room_id: str, before_seq: int | None = None,
                after_seq: int | None = None, around_seq: int | None = None,
                limit: int | None = None) -> dict[str, Any]:
        """A page of messages in ``seq`` order (``actor=None``: the server, no checks).

        No anchor: the latest messages. ``before_seq`` / ``after_seq`` are exclusive;
        ``around_seq`` centres the page on that message. Because ``seq`` has no gaps (deleted
        messages stay as tombstones), ``has_more_before`` / ``has_more_after`` need no query.
        """
        limit = limit or self.store.rt.settings.chat_history_limit
        q = sa.select(ChatMessage).where(ChatMessage.room_id == room_id)
        with self.store.db.session() as s:
            room = self.store.room(s, room_id)
            if actor is not None:
                self.access.require_reader(s, room, actor)
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
            messages = self.messages.dicts(s, rows)
            if actor is not None:
                self._add_my_reactions(s, messages, actor.user_id)
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

    def reactors(self, actor: Actor, message_id: str, emoji: str, limit: int | None = None,
                 after_user_id: str | None = None) -> dict[str, Any]:
        """Who reacted to a message with ``emoji``: a page of users in ``user_id`` order and
        the total, for readers of the room (one page is bounded by
        ``DIHYA_RT_CHAT_REACTORS_PAGE_LIMIT``; a message holds at most
        ``DIHYA_RT_CHAT_MAX_REACTION_KINDS`` different emoji)."""
        cap = self.store.rt.settings.chat_reactors_page_limit
        limit = min(limit or cap, cap)
        with self.store.db.session() as s:
            message = self.store.message(s, message_id)
            room = self.store.room(s, message.room_id)
            self.access.require_reader(s, room, actor)
            of_it = sa.and_(ChatReaction.message_id == message_id, ChatReaction.emoji == emoji)
            count = s.scalar(sa.select(sa.func.count()).select_from(ChatReaction)
                             .where(of_it)) or 0
            q = (sa.select(ChatReaction.user_id, User.name)
                 .outerjoin(User, User.id == ChatReaction.user_id).where(of_it))
            if after_user_id is not None:
                q = q.where(ChatReaction.user_id > after_user_id)
            rows = s.execute(q.order_by(ChatReaction.user_id).limit(limit + 1)).all()
        return {"room_id": room.id, "message_id": message_id, "emoji": emoji, "count": count,
                "users": [{"user_id": user_id, "name": name or user_id}
                          for user_id, name in rows[:limit]],
                "more": len(rows) > limit}

    @staticmethod
    def _add_my_reactions(s: Session, messages: list[dict[str, Any]], me: str) -> None:
        """Each message's ``my_reactions``: the emoji ``me`` reacted with, so a client shows
        its own reactions after a reload (one query for the page; a per-viewer field, never
        part of a push)."""
        ids = [m["id"] for m in messages if m["reactions"]]
        mine: dict[str, list[str]] = {}
        if ids:
            for message_id, emoji in s.execute(
                    sa.select(ChatReaction.message_id, ChatReaction.emoji)
                    .where(ChatReaction.message_id.in_(ids), ChatReaction.user_id == me)
                    .order_by(ChatReaction.message_id, ChatReaction.emoji)):
                mine.setdefault(message_id, []).append(emoji)
        for message in messages:
            message["my_reactions"] = mine.get(message["id"], [])

    def mark_read(self, actor: Actor, room_id: str, seq: int,
                  defer: Defer | None = None) -> dict[str, Any]:
        """Move the actor's read marker forward to ``seq`` (clamped to the room's last seq).

        The marker never moves backwards: an older ``seq`` changes nothing and is not pushed.
        """
        with self.store.write() as s:
            room = self.store.room(s, room_id)
            self.access.require_member(s, room, actor)
            target = min(seq, room.last_seq)
            moved = rowcount(s.execute(sa.update(table(ChatMember)).where(
                ChatMember.room_id == room_id, ChatMember.user_id == actor.user_id,
                ChatMember.last_read_seq < target).values(last_read_seq=target)))
            current = s.scalar(sa.select(ChatMember.last_read_seq).where(
                ChatMember.room_id == room_id, ChatMember.user_id == actor.user_id))
        data = {"room_id": room_id, "user_id": actor.user_id, "seq": current}
        if moved:
            self.store.push_room(room_id, "chat:read", data, defer)
        return {**data, "moved": bool(moved), **self.counts(actor.user_id, room_id)}

    def set_notifications(self, actor: Actor, room_id: str, muted: bool) -> dict[str, Any]:
        """Set the actor's own notifications mute of a room they are a member of."""
        with self.store.write() as s:
            room = self.store.room(s, room_id)
            self.access.require_member(s, room, actor)
            s.execute(sa.update(table(ChatMember)).where(
                ChatMember.room_id == room_id, ChatMember.user_id == actor.user_id)
                .values(notifications_muted=muted))
        return {"room_id": room_id, "muted": muted}

    def counts(self, user_id: str, room_id: str) -> dict[str, int]:
        """``unread_count`` and ``mention_count`` of one member in one room."""
        with self.store.db.session() as s:
            unread, mentions = self._counts(s, user_id, [room_id])
        return {"unread_count": unread.get(room_id, 0),
                "mention_count": mentions.get(room_id, 0)}
