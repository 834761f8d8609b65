"""Chat: rooms, direct messages, persisted history, receipts and moderation.

The service behind the ``chat:*`` events, the Python API (``rt.chat``) and the HTTP API: a
facade over the feature's parts, one concept each. It reaches SQL only through ``rt.db`` and
delivers every room event to the connections of the room's members, on every process, with one
relay on the room (``rt.relay``): only the processes holding a member's connection receive it.
Each member's connection is put in its rooms' relays at connect and moved in or out on every
process when the membership changes (:mod:`.delivery`).

- :mod:`.access`: who may read, speak in and manage a room (and its ``chat:<id>`` channel);
- :mod:`.membership`: creating rooms and direct messages, joining, leaving, inviting;
- :mod:`.moderation`: removing members, roles, mutes, bans;
- :mod:`.messages`: storing (the ``seq`` ordering lives there), editing, deleting, reactions;
- :mod:`.queries`: the rooms list, a room, history, read markers and counts;
- :mod:`.typing_indicator`: ephemeral typing state and its sweeper;
- :mod:`.known_users`: the users who connected, the only ones a client may DM;
- :mod:`.base` and :mod:`.common`: the transactions, lookups, pushes and wire dicts they share;
- :mod:`.delivery`: which connections are in which room's relay, on every process;
- :mod:`.models`: the tables; :mod:`.schemas`: the wire schemas; :mod:`.ports`: what chat asks
  of other features (:class:`~.ports.Notifier`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

from sqlalchemy.orm import Session

from dihya_realtime.features.chat.access import Access
from dihya_realtime.features.chat.base import ChatStore
from dihya_realtime.features.chat.common import Actor, Defer, parse_mentions
from dihya_realtime.features.chat.known_users import KnownUsers
from dihya_realtime.features.chat.membership import Membership
from dihya_realtime.features.chat.messages import Messages
from dihya_realtime.features.chat.models import ChatMember, ChatRoom
from dihya_realtime.features.chat.moderation import Moderation
from dihya_realtime.features.chat.ports import Notifier
from dihya_realtime.features.chat.queries import Queries
from dihya_realtime.features.chat.typing_indicator import TypingIndicator, TypingTracker

if TYPE_CHECKING:
    from dihya_realtime.features.channels.service import ChannelRef
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.kernel.outbox import Queued
    from dihya_realtime.kernel.outbox.queue import HostSession
    from dihya_realtime.realtime import Realtime

__all__ = ["Actor", "ChatService", "Defer", "parse_mentions"]


class ChatService:
    """Chat rooms and messages over ``rt.db``; every public method checks its own rules.

    Methods take an :class:`Actor` (``Actor.of(conn)`` for a connection) and raise
    :class:`~dihya_realtime.kernel.errors.RealtimeError` values; they return JSON-ready dicts.
    Each delegates to the part that owns the concept.
    """

    def __init__(self, rt: Realtime, notifier: Notifier | None = None) -> None:
        """``notifier``: how mentioned users are told (``rt`` when the notifications feature
        is on); ``None``: mentions are stored and counted, not notified."""
        self.rt = rt
        self.db = rt.db
        self.store = ChatStore(rt)
        self.access = Access(self.store)
        self.typing_indicator = TypingIndicator(self.store, self.access)
        self.messages = Messages(self.store, self.access, self.typing_indicator, notifier)
        self.membership = Membership(self.store, self.access, self.typing_indicator)
        self.moderation = Moderation(self.store, self.access, self.typing_indicator)
        self.queries = Queries(self.store, self.access, self.messages)
        self.known_users = KnownUsers(self.store)

    @property
    def typing_state(self) -> TypingTracker:
        """Who is typing where, on this process."""
        return self.typing_indicator.state

    # -- rules
    def require_speaker(self, s: Session, room: ChatRoom, actor: Actor) -> ChatMember:
        """THE rule of who may speak in a room; every path that speaks asks it."""
        return self.access.require_speaker(s, room, actor)

    def check_channel(self, conn: Connection, ref: ChannelRef, action: str) -> None:
        """A ``chat:<room id>`` channel is a room's: private rooms and DMs are read by members;
        a client ``publish`` there is speaking in the room (:meth:`require_speaker`).
        """
        return self.access.check_channel(conn, ref, action)

    # -- rooms and membership
    def create_room(self, actor: Actor, name: str, topic: str | None,
                    visibility: str) -> dict[str, Any]:
        """Create a named room; the creator is its owner."""
        return self.membership.create_room(actor, name, topic, visibility)

    def join(self, actor: Actor, room_id: str, defer: Defer | None = None) -> dict[str, Any]:
        """Join a public room; a banned user is refused. Joining twice is harmless."""
        return self.membership.join(actor, room_id, defer)

    def leave(self, actor: Actor, room_id: str, defer: Defer | None = None) -> dict[str, Any]:
        """Leave a room. An owner who leaves hands the room to the longest-standing member."""
        return self.membership.leave(actor, room_id, defer)

    def invite(self, actor: Actor, room_id: str, user_id: str,
               defer: Defer | None = None) -> dict[str, Any]:
        """Add ``user_id`` to a room (owner or moderators; a banned user must be unbanned)."""
        return self.membership.invite(actor, room_id, user_id, defer)

    def dm(self, actor: Actor, user_id: str, known_only: bool = False) -> dict[str, Any]:
        """The one direct-message room of the actor and ``user_id``, created on first use.

        ``known_only`` (a client's ``chat:dm``): ``user_id`` must have connected once
        (:mod:`.known_users`), else ``not_found``.
        """
        if known_only and user_id != actor.user_id:
            with self.db.session() as s:
                self.known_users.require_known(s, user_id)
        return self.membership.dm(actor, user_id)

    # -- moderation
    def remove_member(self, actor: Actor, room_id: str, user_id: str, reason: str = "removed",
                      defer: Defer | None = None) -> dict[str, Any]:
        """Remove a member (owner or moderators); ``reason`` is ``removed`` or ``kicked``."""
        return self.moderation.remove_member(actor, room_id, user_id, reason, defer)

    def set_role(self, actor: Actor, room_id: str, user_id: str, role: str,
                 defer: Defer | None = None) -> dict[str, Any]:
        """Make a member a moderator or a plain member again (the owner only)."""
        return self.moderation.set_role(actor, room_id, user_id, role, defer)

    def mute(self, actor: Actor, room_id: str, user_id: str, until: datetime | None,
             defer: Defer | None = None) -> dict[str, Any]:
        """Mute a member until ``until`` (``None`` or a past time: unmute)."""
        return self.moderation.mute(actor, room_id, user_id, until, defer)

    def ban(self, actor: Actor, room_id: str, user_id: str, reason: str | None,
            defer: Defer | None = None) -> dict[str, Any]:
        """Ban a user (member or not): removed now, refused at join and invite until unbanned."""
        return self.moderation.ban(actor, room_id, user_id, reason, defer)

    def unban(self, actor: Actor, room_id: str, user_id: str) -> dict[str, Any]:
        """Lift a ban; the user may join (public) or be invited again."""
        return self.moderation.unban(actor, room_id, user_id)

    # -- reading
    def rooms(self, actor: Actor, limit: int | None = None,
              cursor: tuple[str, str, str] | None = None) -> dict[str, Any]:
        """Public rooms and the actor's rooms, each with unread and mention counts, a page
        at a time in ``(kind, name, id)`` order.
        """
        return self.queries.rooms(actor, limit, cursor)

    def room(self, actor: Actor, room_id: str) -> dict[str, Any]:
        """A room's details and members (private rooms and DMs: members only)."""
        return self.queries.room(actor, room_id)

    def history(self, actor: Actor | None, room_id: str, before_seq: int | None = None,
                after_seq: int | None = None, around_seq: int | None = None,
                limit: int | None = None) -> dict[str, Any]:
        """A page of messages in ``seq`` order (``actor=None``: the server, no checks)."""
        return self.queries.history(actor, room_id, before_seq, after_seq, around_seq, limit)

    def reactors(self, actor: Actor, message_id: str, emoji: str, limit: int | None = None,
                 after_user_id: str | None = None) -> dict[str, Any]:
        """Who reacted to a message with ``emoji``: a page of users and the total."""
        return self.queries.reactors(actor, message_id, emoji, limit, after_user_id)

    def mark_read(self, actor: Actor, room_id: str, seq: int,
                  defer: Defer | None = None) -> dict[str, Any]:
        """Move the actor's read marker forward to ``seq`` (clamped to the room's last seq)."""
        return self.queries.mark_read(actor, room_id, seq, defer)

    def set_notifications(self, actor: Actor, room_id: str, muted: bool) -> dict[str, Any]:
        """Mute or unmute the room's notifications for ``actor`` (a member)."""
        return self.queries.set_notifications(actor, room_id, muted)

    def counts(self, user_id: str, room_id: str) -> dict[str, int]:
        """``unread_count`` and ``mention_count`` of one member in one room."""
        return self.queries.counts(user_id, room_id)

    # -- messages
    def send(self, actor: Actor, room_id: str, text: str, client_msg_id: str,
             reply_to: str | None = None, mentions: Sequence[str] = (),
             defer: Defer | None = None) -> tuple[dict[str, Any], bool]:
        """Store a message, then push it as ``chat:message``; returns ``(message, created)``.
        A new one is told as the domain event ``chat.message_sent`` (webhooks hear it)."""
        message, created = self.messages.send(actor, room_id, text, client_msg_id, reply_to,
                                              mentions, defer)
        if created:
            self.rt.domain_events.emit("chat.message_sent", message)
        return message, created

    @overload
    def send_system_message(self, room_id: str, text: str, data: Any = None, *,
                            session: None = None) -> dict[str, Any]: ...
    @overload
    def send_system_message(self, room_id: str, text: str, data: Any = None, *,
                            session: HostSession) -> Queued: ...
    def send_system_message(self, room_id: str, text: str, data: Any = None, *,
                            session: HostSession | None = None) -> dict[str, Any] | Queued:
        """Post a server message (no author) to a room and push it to the members.

        With ``session=`` (the host's SQLAlchemy session): written as an outbox row in the
        host's transaction, posted once it commits, in commit order per room.
        """
        if session is not None:
            return self.rt.outbox.enqueue(session, "chat.system_message", f"chat:{room_id}",
                                          {"room_id": room_id, "text": text, "data": data})
        message = self.messages.send_system_message(room_id, text, data)
        self.rt.domain_events.emit("chat.message_sent", message)
        return message

    def edit(self, actor: Actor, message_id: str, text: str,
             defer: Defer | None = None) -> dict[str, Any]:
        """Change the text of one's own message; new ``@mentions`` are recorded and notified."""
        message = self.messages.edit(actor, message_id, text, defer)
        self.rt.domain_events.emit("chat.message_edited", message)
        return message

    def delete(self, actor: Actor, message_id: str,
               defer: Defer | None = None) -> tuple[dict[str, Any], bool]:
        """Delete a message (author, room owner/moderator, ``chat:moderate``): a tombstone."""
        tombstone, by_moderator = self.messages.delete(actor, message_id, defer)
        self.rt.domain_events.emit("chat.message_deleted",
                                   {**tombstone, "deleted_by": actor.user_id})
        return tombstone, by_moderator

    def react(self, actor: Actor, message_id: str, emoji: str, add: bool,
              defer: Defer | None = None) -> dict[str, Any]:
        """Add or remove the actor's ``emoji`` on a message; returns the new counts."""
        return self.messages.react(actor, message_id, emoji, add, defer)

    # -- typing
    def typing(self, actor: Actor, sid: str, room_id: str, typing: bool) -> dict[str, Any]:
        """Tell the other members that the actor is (no longer) typing; throttled, ephemeral."""
        return self.typing_indicator.typing(actor, sid, room_id, typing)

    def expire_typing(self, now: float | None = None) -> int:
        """Push ``typing: false`` for every indicator not renewed in time; returns how many."""
        return self.typing_indicator.expire_typing(now)

    def connection_closed(self, sid: str) -> None:
        """A closed connection stops typing at once rather than after the expiry."""
        return self.typing_indicator.connection_closed(sid)
