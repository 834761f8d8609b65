"""Who may read a room, speak in it, and manage it: the chat feature's rules, in one place.

Every path that reads, speaks or moderates asks these methods; they raise ``forbidden`` with a
``reason`` the client can act on. They also guard the room's ``chat:<room id>`` channel.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from dihya_realtime.features.chat.base import ChatStore
from dihya_realtime.features.chat.common import (
    MANAGERS,
    Actor,
    active_mute,
    denied,
    iso,
    members_only,
)
from dihya_realtime.features.chat.models import ChatMember, ChatRoom
from dihya_realtime.kernel.errors import RealtimeError, not_found

if TYPE_CHECKING:
    from dihya_realtime.features.channels.service import ChannelRef
    from dihya_realtime.kernel.connections import Connection

log = logging.getLogger("dihya_realtime.chat")

_ROOM_ID_SHAPE = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, the only ids rooms get


class Access:
    """The rules of a room, over the lookups of a :class:`ChatStore`."""

    def __init__(self, store: ChatStore) -> None:
        self.store = store

    def require_member(self, s: Session, room: ChatRoom, actor: Actor) -> ChatMember:
        member = self.store.member(s, room.id, actor.user_id)
        if member is None:
            raise denied("not_a_member", "you are not a member of this room",
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
        refuses, asks this method why (:meth:`.messages.Messages._send_refused`).
        """
        member = self.store.member(s, room.id, actor.user_id)
        if member is None:
            if self.store.is_banned(s, room.id, actor.user_id):
                raise denied("banned", "you are banned from this room", room_id=room.id)
            raise denied("not_a_member", "you are not a member of this room",
                             room_id=room.id)
        muted = active_mute(member)
        if muted is not None:
            raise denied("muted", "you are muted in this room", until=iso(muted),
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
        with self.store.rt.db.session() as s:
            room = s.get(ChatRoom, ref.name)
            if room is None:
                return
            if action == "publish":
                self.require_speaker(s, room, Actor.of(conn))
            else:
                self.require_reader(s, room, Actor.of(conn))

    def require_reader(self, s: Session, room: ChatRoom, actor: Actor) -> None:
        """Public rooms are readable by every chat user; private rooms and DMs by members."""
        if members_only(room):
            self.require_member(s, room, actor)

    def revoke_channel(self, room: ChatRoom, user_id: str, reason: str) -> None:
        """Take ``user_id``'s connections off the room's ``chat:<room id>`` channel, on every
        process, once membership was what let them read it.

        :meth:`check_channel` runs when a connection subscribes (and again at
        ``auth:refresh``); without this a member who left or was removed from a private room
        would keep seeing its presence and publications until then. A public room's channel
        is open to every chat user, member or not (the same rule as :meth:`require_reader`),
        so leaving one takes nothing back and its subscriptions stay. Called after the
        membership change is committed, so a subscribe that starts later is refused (one whose
        check ran just before the commit can still complete; the next refresh takes it back).
        With the broker down nothing is delivered on the channel either; the subscription
        then goes at the next refresh or reconnect.
        """
        if not members_only(room):
            return
        try:
            self.store.rt.unsubscribe(user_id, f"chat:{room.id}", reason)
        except RealtimeError as exc:
            log.warning("could not unsubscribe %s from the channel of room %s: %s",
                        user_id, room.id, exc.message)

    def require_manager(self, s: Session, room: ChatRoom, actor: Actor,
                         target: ChatMember | None = None) -> ChatMember | None:
        """The actor moderates the room (owner, room moderator or ``chat:moderate``).

        A room moderator cannot act on the owner or another moderator; nobody but a global
        moderator acts on the owner; nobody moderates themselves.
        """
        if room.kind == "dm":
            raise denied("direct_message", "direct messages have no moderators")
        mine = self.store.member(s, room.id, actor.user_id)
        role = mine.role if mine else None
        if role not in MANAGERS and not actor.moderator:
            raise denied("not_a_moderator", "only the room's owner or moderators may do this",
                             room_id=room.id)
        if target is not None:
            if target.user_id == actor.user_id:
                raise denied("self", "you cannot do this to yourself")
            if target.role == "owner" and not actor.moderator:
                raise denied("target_is_owner", "the room owner cannot be moderated")
            if target.role == "moderator" and role != "owner" and not actor.moderator:
                raise denied("target_is_moderator", "only the owner moderates moderators")
        return mine

    def managed_member(self, s: Session, room_id: str, user_id: str, actor: Actor,
                        owner_only: bool = False) -> tuple[ChatMember, ChatMember | None]:
        """The member ``actor`` is about to manage, after the manager (or owner) check;
        returns ``(target, actor's own membership)``."""
        room = self.store.room(s, room_id)
        target = self.store.member(s, room_id, user_id)
        mine = self.require_manager(s, room, actor, target)
        if owner_only and (mine is None or mine.role != "owner") and not actor.moderator:
            raise denied("not_the_owner", "only the owner changes roles")
        if target is None:
            raise not_found("this user is not a member", {"user_id": user_id})
        return target, mine
