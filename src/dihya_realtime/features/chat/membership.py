"""Rooms and membership: creating a room or a direct message, joining, leaving, inviting.

Moderation (removing, roles, mutes, bans) is :mod:`.moderation`; listing rooms is
:mod:`.queries`.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from dihya_realtime.features.chat.access import Access
from dihya_realtime.features.chat.base import ChatStore
from dihya_realtime.features.chat.common import (
    Actor,
    Defer,
    active_mute,
    denied,
    iso,
    member_dict,
    room_dict,
    utcnow,
)
from dihya_realtime.features.chat.models import ChatMember, ChatRoom
from dihya_realtime.features.chat.typing_indicator import TypingIndicator
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError, conflict, invalid


class Membership:
    """Who is in which room, and how they got there or left."""

    def __init__(self, store: ChatStore, access: Access, typing: TypingIndicator) -> None:
        self.store = store
        self.access = access
        self.typing = typing

    def create_room(self, actor: Actor, name: str, topic: str | None,
                    visibility: str) -> dict[str, Any]:
        """Create a named room; the creator is its owner."""
        room = ChatRoom(id=uuid.uuid4().hex, kind="room", name=name, topic=topic,
                        visibility=visibility, created_by=actor.user_id, created_at=utcnow(),
                        last_seq=0)
        with self.store.write() as s:
            s.add(room)
            s.flush()
            self.store.add_member(s, room.id, actor.user_id, "owner", 0)
            member = self.store.member(s, room.id, actor.user_id)
            result = {**room_dict(room, member), "member_count": 1}
            announced = {**room_dict(room), "member_count": 1}
        self.store.members_changed(room.id, [actor.user_id], True)
        if visibility == "public":
            self.store.relayed.announce_public_room(announced)
        return result

    def join(self, actor: Actor, room_id: str, defer: Defer | None = None) -> dict[str, Any]:
        """Join a public room; a banned user is refused. Joining twice is harmless."""
        with self.store.write() as s:
            room = self.store.room(s, room_id)
            if room.kind != "room" or room.visibility != "public":
                raise denied("invite_only", "this room is private: ask for an invitation",
                                 room_id=room_id)
            if self.store.is_banned(s, room_id, actor.user_id):
                raise denied("banned", "you are banned from this room", room_id=room_id)
            # history stays readable, but what was said before joining is not "unread"
            joined = self.store.add_member(s, room_id, actor.user_id, "member", room.last_seq)
            member = self.store.member(s, room_id, actor.user_id)
            count = len(self.store.member_ids(s, room_id))
            result = {**room_dict(room, member), "member_count": count}
        # the joiner's connections here are in the room before the reply (a join twice too:
        # a connection opened meanwhile)
        self.store.members_changed(room_id, [actor.user_id], True)
        if joined:
            self.store.push_room_and_user(
                room_id, actor.user_id, "chat:member_joined",
                {"room_id": room_id, "user_id": actor.user_id, "role": "member",
                 "name": actor.name, "by": None}, defer)
        return result

    def leave(self, actor: Actor, room_id: str, defer: Defer | None = None) -> dict[str, Any]:
        """Leave a room. An owner who leaves hands the room to the longest-standing member."""
        promoted: ChatMember | None = None
        with self.store.write() as s:
            room = self.store.room(s, room_id)
            if room.kind == "dm":
                raise conflict("a direct message cannot be left", {"room_id": room_id})
            member = self.access.require_member(s, room, actor)
            s.delete(member)
            s.flush()
            if member.role == "owner":
                promoted = s.scalars(
                    sa.select(ChatMember).where(ChatMember.room_id == room_id)
                    .order_by(sa.case((ChatMember.role == "moderator", 0), else_=1),
                              ChatMember.joined_at, ChatMember.user_id).limit(1)).first()
                if promoted is not None:
                    promoted.role = "owner"
        self.access.revoke_channel(room, actor.user_id, "left")
        self.store.members_changed(room_id, [actor.user_id], False)
        self.store.push_room_and_user(
            room_id, actor.user_id, "chat:member_left",
            {"room_id": room_id, "user_id": actor.user_id, "reason": "left", "by": None}, defer)
        self.typing.ended(room_id, actor, defer)
        if promoted is not None:
            self.store.push_room(room_id, "chat:member_updated",
                       {"room_id": room_id, "user_id": promoted.user_id, "role": "owner",
                        "muted_until": iso(active_mute(promoted)), "by": None}, defer)
        return {"room_id": room_id, "left": True}

    def invite(self, actor: Actor, room_id: str, user_id: str,
               defer: Defer | None = None) -> dict[str, Any]:
        """Add ``user_id`` to a room (owner or moderators; a banned user must be unbanned)."""
        with self.store.write() as s:
            room = self.store.room(s, room_id)
            self.access.require_manager(s, room, actor)
            if self.store.is_banned(s, room_id, user_id):
                raise conflict("this user is banned from the room: unban first",
                               {"room_id": room_id, "user_id": user_id})
            added = self.store.add_member(s, room_id, user_id, "member", room.last_seq)
            member = self.store.member(s, room_id, user_id)
            assert member is not None
            result = {"room_id": room_id, "member": member_dict(member), "added": added}
        if added:
            self.store.members_changed(room_id, [user_id], True)
            self.store.push_room_and_user(
                room_id, user_id, "chat:member_joined",
                {"room_id": room_id, "user_id": user_id, "role": "member", "name": None,
                 "by": actor.user_id}, defer)
        return result

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
                with self.store.write() as s:
                    room = s.scalars(sa.select(ChatRoom).where(ChatRoom.dm_key == key)).first()
                    created = room is None
                    if room is None:
                        room = ChatRoom(id=uuid.uuid4().hex, kind="dm", name=f"{a}, {b}",
                                        visibility="private", created_by=me,
                                        created_at=utcnow(), last_seq=0, dm_key=key)
                        s.add(room)
                        s.flush()
                        self.store.add_member(s, room.id, a, "member", 0)
                        self.store.add_member(s, room.id, b, "member", 0)
                    member = self.store.member(s, room.id, me)
                    result = {**room_dict(room, member, user_id), "member_count": 2}
                if created:
                    self.store.members_changed(room.id, [a, b], True)
                return result
            except IntegrityError:
                continue  # another process created it a moment ago: read it back
        raise RealtimeError(ErrorCode.CONFLICT, "could not create the direct message, retry")
