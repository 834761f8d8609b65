"""Messages: sending, editing, deleting, reacting, and their wire form.

How a message is stored (the ``seq`` ordering, one statement on PostgreSQL) is
:mod:`.message_store`, the one path for a member's message and the server's. Delivery order
between two concurrent senders is not guaranteed; clients order by ``seq`` and fill a gap with
``chat:history {"after_seq"}``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
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
from dihya_realtime.features.chat.message_store import Refused, store_message
from dihya_realtime.features.chat.models import (
    ChatMember,
    ChatMention,
    ChatMessage,
    ChatReaction,
)
from dihya_realtime.features.chat.ports import Notifier
from dihya_realtime.features.chat.typing_indicator import TypingIndicator
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError, conflict, invalid, not_found

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
        When :func:`store_message` stores nothing, :meth:`_send_refused` finds out why: the
        duplicate to return, or the error to raise.
        """
        author = actor.user_id
        wanted = mention_candidates(text, mentions, author)
        for _ in range(3):
            row = _row(room_id, "user", text, author=author, author_name=actor.name,
                       client_msg_id=client_msg_id, reply_to=reply_to)
            try:
                stored = store_message(self.store.db, row, wanted)
                break
            except Refused:
                pass
            except IntegrityError:
                pass  # the same client_msg_id stored by a concurrent resend: that is the message
            existing = self._send_refused(actor, room_id, client_msg_id, reply_to)
            if existing is not None:
                return existing, False
            # nothing was wrong any more (a mute ran out, a concurrent resend rolled back)
        else:
            raise RealtimeError(ErrorCode.CONFLICT, "could not store the message, retry")
        data = _new_message_dict(row, stored.seq, stored.mentioned)
        if self.typing.state.stop(room_id, author):
            self.store.push_room(room_id, "chat:typing", typing_dict(room_id, actor, False),
                                 defer, skip_user=author)
        self.store.push_room(room_id, "chat:message", data, defer)
        self._notify_mentions(stored.room_name, data, stored.mentioned)
        self._notify_dm(data, stored.dm_peers)
        return data, True

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
        author = (message["author"] or {}).get("name") or "Someone"
        self._notify(message, user_ids, "chat.mention",
                     f"{author} mentioned you in {room_name}")

    def _notify_dm(self, message: dict[str, Any], user_ids: Sequence[str]) -> None:
        """A DM's message notifies its peer (``chat.dm``): pushed to their devices when they
        have no live connection, like a mention."""
        author = (message["author"] or {}).get("name") or "Someone"
        self._notify(message, user_ids, "chat.dm", f"{author} sent you a message")

    def _notify(self, message: dict[str, Any], user_ids: Sequence[str], category: str,
                title: str) -> None:
        """One notification per user of ``user_ids`` about ``message``; those who muted the
        room's notifications (``chat:set_notifications``) get it in-app only, never pushed."""
        if self.notifier is None or not user_ids:
            return
        text = message["text"] or ""
        try:
            with self.store.db.session() as s:
                silent = list(s.scalars(sa.select(ChatMember.user_id).where(
                    ChatMember.room_id == message["room_id"],
                    ChatMember.user_id.in_(list(user_ids)),
                    ChatMember.notifications_muted.is_(True))))
            self.notifier.notify(user_ids=list(user_ids), category=category, title=title,
                                 body=text[:200] + ("…" if len(text) > 200 else ""),
                                 data={"room_id": message["room_id"],
                                       "message_id": message["id"], "seq": message["seq"]},
                                 idempotency_key=f"{category}:{message['id']}",
                                 silent_user_ids=silent)
        except Exception:
            log.exception("%s notification failed for message %s", category, message["id"])

    def send_system_message(self, room_id: str, text: str, data: Any = None) -> dict[str, Any]:
        """Post a server message (no author) to a room and push it to the members.

        Its ``@mentions`` of members are stored (``chat:history`` shows them); the reply and
        the push list none, and nobody is notified.
        """
        if not isinstance(text, str) or not 1 <= len(text) <= 4000:
            raise invalid("text must be 1..4000 characters",
                          [{"field": "text", "message": "1..4000 characters"}])
        row = _row(room_id, "system", text, data=data)
        try:
            stored = store_message(self.store.db, row, mention_candidates(text, (), None))
        except Refused:
            raise not_found("no such room", {"room_id": room_id}) from None
        result = _new_message_dict(row, stored.seq, [])
        self.store.push_room(room_id, "chat:message", result)
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
            room_name = room.name
        self.store.push_room(room.id, "chat:message_edited", data, defer)
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
        self.store.push_room(room.id, "chat:message_deleted",
                             {**data, "deleted_by": actor.user_id}, defer)
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
                self._check_reaction_kinds(s, message_id, emoji)
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
        if changed:
            self.store.push_room(room.id, "chat:reaction", data, defer)
        return {**data, "changed": bool(changed)}

    def _check_reaction_kinds(self, s: Session, message_id: str, emoji: str) -> None:
        """A new emoji on a message is refused past ``DIHYA_RT_CHAT_MAX_REACTION_KINDS``:
        every push and history page carries the message's counts, so a client must not be
        able to grow them without bound. One more of an emoji already there always fits."""
        limit = self.store.rt.settings.chat_max_reaction_kinds
        kinds = set(s.scalars(sa.select(ChatReaction.emoji).distinct()
                              .where(ChatReaction.message_id == message_id)
                              .limit(limit + 1)))
        if emoji not in kinds and len(kinds) >= limit:
            raise conflict("this message has as many different reactions as it may hold",
                           {"reason": "too_many_reactions", "limit": limit,
                            "message_id": message_id})

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


def _row(room_id: str, kind: str, text: str, *, author: str | None = None,
         author_name: str | None = None, client_msg_id: str | None = None,
         reply_to: str | None = None, **extra: Any) -> dict[str, Any]:
    """A new message's row for :func:`store_message`, with a fresh id and time."""
    return {"id": uuid.uuid4().hex, "room_id": room_id, "kind": kind, "author_id": author,
            "author_name": author_name, "client_msg_id": client_msg_id, "text": text,
            "reply_to": reply_to, "created_at": utcnow(), **extra}


def _new_message_dict(row: dict[str, Any], seq: int, mentions: list[str]) -> dict[str, Any]:
    """:func:`~.common.message_dict` of a message just stored, from its row (no query)."""
    author = row["author_id"]
    return {
        "id": row["id"], "room_id": row["room_id"], "seq": seq, "kind": row["kind"],
        "author": None if author is None else {"user_id": author,
                                               "name": row["author_name"] or author},
        "text": row["text"], "data": row.get("data"), "client_msg_id": row["client_msg_id"],
        "reply_to": row["reply_to"], "mentions": mentions, "reactions": {},
        "created_at": iso(row["created_at"]), "edited_at": None, "deleted": False,
        "deleted_at": None,
    }
