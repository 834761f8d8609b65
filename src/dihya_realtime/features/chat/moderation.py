"""Moderation: removing (kicking) members, room roles, mutes and bans.

Who may do each is :meth:`.access.Access.require_manager`; a removed or banned member loses
the room's channel and stops typing for the others at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dihya_realtime.features.chat.access import Access
from dihya_realtime.features.chat.base import ChatStore
from dihya_realtime.features.chat.common import (
    Actor,
    Defer,
    active_mute,
    denied,
    iso,
    table,
    utcnow,
)
from dihya_realtime.features.chat.models import ChatBan
from dihya_realtime.features.chat.typing_indicator import TypingIndicator
from dihya_realtime.kernel.errors import not_found


class Moderation:
    """What a room's owner, its moderators and holders of ``chat:moderate`` may do."""

    def __init__(self, store: ChatStore, access: Access, typing: TypingIndicator) -> None:
        self.store = store
        self.access = access
        self.typing = typing

    def remove_member(self, actor: Actor, room_id: str, user_id: str, reason: str = "removed",
                      defer: Defer | None = None) -> dict[str, Any]:
        """Remove a member (owner or moderators); ``reason`` is ``removed`` or ``kicked``."""
        with self.store.write() as s:
            target, _ = self.access.managed_member(s, room_id, user_id, actor)
            room = self.store.room(s, room_id)  # loaded by the check above: no query
            s.delete(target)
        self.access.revoke_channel(room, user_id, "forbidden")
        self.store.members_changed(room_id, [user_id], False)
        self.store.push_room_and_user(
            room_id, user_id, "chat:member_left",
            {"room_id": room_id, "user_id": user_id, "reason": reason, "by": actor.user_id},
            defer)
        self.typing.ended(room_id, Actor(user_id), defer)
        return {"room_id": room_id, "user_id": user_id, "removed": True}

    def set_role(self, actor: Actor, room_id: str, user_id: str, role: str,
                 defer: Defer | None = None) -> dict[str, Any]:
        """Make a member a moderator or a plain member again (the owner only)."""
        with self.store.write() as s:
            target, _ = self.access.managed_member(s, room_id, user_id, actor, owner_only=True)
            target.role = role
            data = {"room_id": room_id, "user_id": user_id, "role": role,
                    "muted_until": iso(active_mute(target)), "by": actor.user_id}
        self.store.push_room(room_id, "chat:member_updated", data, defer)
        return data

    def mute(self, actor: Actor, room_id: str, user_id: str, until: datetime | None,
             defer: Defer | None = None) -> dict[str, Any]:
        """Mute a member until ``until`` (``None`` or a past time: unmute)."""
        with self.store.write() as s:
            target, _ = self.access.managed_member(s, room_id, user_id, actor)
            target.muted_until = until
            data = {"room_id": room_id, "user_id": user_id, "role": target.role,
                    "muted_until": iso(active_mute(target)), "by": actor.user_id}
        self.store.push_room(room_id, "chat:member_updated", data, defer)
        return data

    def ban(self, actor: Actor, room_id: str, user_id: str, reason: str | None,
            defer: Defer | None = None) -> dict[str, Any]:
        """Ban a user (member or not): removed now, refused at join and invite until unbanned."""
        with self.store.write() as s:
            room = self.store.room(s, room_id)
            target = self.store.member(s, room_id, user_id)
            self.access.require_manager(s, room, actor, target)
            if user_id == actor.user_id:
                raise denied("self", "you cannot do this to yourself")
            s.execute(self.store.insert()(table(ChatBan)).values(
                room_id=room_id, user_id=user_id, banned_by=actor.user_id, reason=reason,
                created_at=utcnow()).on_conflict_do_nothing())
            if target is not None:
                s.delete(target)
        if target is not None:
            self.access.revoke_channel(room, user_id, "forbidden")
            self.store.members_changed(room_id, [user_id], False)
            self.store.push_room_and_user(
                room_id, user_id, "chat:member_left",
                {"room_id": room_id, "user_id": user_id, "reason": "banned",
                 "by": actor.user_id}, defer)
            self.typing.ended(room_id, Actor(user_id), defer)
        return {"room_id": room_id, "user_id": user_id, "banned": True,
                "was_member": target is not None}

    def unban(self, actor: Actor, room_id: str, user_id: str) -> dict[str, Any]:
        """Lift a ban; the user may join (public) or be invited again."""
        with self.store.write() as s:
            room = self.store.room(s, room_id)
            self.access.require_manager(s, room, actor)
            ban = s.get(ChatBan, (room_id, user_id))
            if ban is None:
                raise not_found("this user is not banned", {"user_id": user_id})
            s.delete(ban)
        return {"room_id": room_id, "user_id": user_id, "banned": False}
