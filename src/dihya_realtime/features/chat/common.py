"""The chat feature's shared vocabulary: who acts, time on the wire, mentions, the wire dicts.

Every chat module speaks these; none of them touches the database or a connection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from dihya_realtime.features.chat.models import ChatMember, ChatMessage, ChatRoom
from dihya_realtime.kernel.errors import RealtimeError, forbidden
from dihya_realtime.store.models import Base

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection

ROLES = ("owner", "moderator", "member")
MANAGERS = ("owner", "moderator")
MAX_MENTIONS = 50
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



def mention_candidates(text: str, extra: Sequence[str], author: str | None) -> list[str]:
    """Who a message asks to mention: ``@ids`` in ``text`` then ``extra``, without repeats,
    never the author, at most :data:`MAX_MENTIONS`; the room decides who of them are members."""
    return [c for c in dict.fromkeys([*parse_mentions(text), *extra])
            if c != author][:MAX_MENTIONS]


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


def denied(reason: str, message: str, **details: Any) -> RealtimeError:
    """A ``forbidden`` error carrying the ``reason`` a client can act on."""
    return forbidden(message, {"reason": reason, **details})


def table(model: type[Base]) -> sa.Table:
    """A model's Core table, for statements that bypass the ORM unit of work."""
    return cast(sa.Table, model.__table__)


def rowcount(result: Any) -> int:
    return cast(CursorResult, result).rowcount


def members_only(room: ChatRoom) -> bool:
    """Is the room (its details, history and channel) for its members only?"""
    return room.visibility != "public" or room.kind != "room"


def active_mute(member: ChatMember | None) -> datetime | None:
    if member is None or member.muted_until is None:
        return None
    return member.muted_until if member.muted_until > utcnow() else None



# -- the wire dicts
def message_dict(m: ChatMessage, reactions: dict[str, int],
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


def room_dict(room: ChatRoom, member: ChatMember | None = None,
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
        "muted_until": iso(active_mute(member)),
        "notifications_muted": bool(member.notifications_muted) if member else None,
    }


def member_dict(member: ChatMember, name: str | None = None) -> dict[str, Any]:
    return {"user_id": member.user_id, "name": name or member.user_id,
            "role": member.role, "joined_at": iso(member.joined_at),
            "last_read_seq": member.last_read_seq,
            "muted_until": iso(active_mute(member))}


def typing_dict(room_id: str, actor: Actor, typing: bool,
                 expires_in: float | None = None) -> dict[str, Any]:
    return {"room_id": room_id, "user_id": actor.user_id, "name": actor.name,
            "typing": typing, "expires_in": expires_in}
