"""The chat feature's wire schemas: what clients send, what the server replies and pushes.

Declared once here, read by the event registry (validation, the AsyncAPI document, the reply
contract test) and by the HTTP routes; :mod:`.events` only names them in its ``@event``
declarations. The room-list cursor lives here because :class:`RoomsPayload` validates it.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from dihya_realtime.kernel.payloads import JsonValue

Id = Field(min_length=1, max_length=128)
RoomId = Field(min_length=1, max_length=32, description="a room id")
MessageId = Field(min_length=1, max_length=32, description="a message id")
Seq = Field(ge=0, le=2**62)
AnchorSeq = Field(None, ge=0, le=2**62, description="exclusive")


# -- schemas: what the server sends


class Author(BaseModel):
    user_id: str
    name: str


class Message(BaseModel):
    """A stored message. A deleted one is a tombstone: ``deleted: true``, ``text: null``."""

    id: str
    room_id: str
    seq: int = Field(description="per-room order: 1, 2, 3 … with no gaps")
    kind: Literal["user", "system"]
    author: Author | None = Field(description="null for a system message")
    text: str | None
    data: Any = Field(None, description="a system message's structured data")
    client_msg_id: str | None
    reply_to: str | None
    mentions: list[str] = Field(description="user ids mentioned (members only)")
    reactions: dict[str, int] = Field(description="emoji → count")
    created_at: str
    edited_at: str | None
    deleted: bool
    deleted_at: str | None


class DeletedMessage(Message):
    deleted_by: str


class Member(BaseModel):
    user_id: str
    name: str
    role: Literal["owner", "moderator", "member"]
    joined_at: str
    last_read_seq: int
    muted_until: str | None


class Room(BaseModel):
    id: str
    kind: Literal["room", "dm"]
    name: str
    topic: str | None
    visibility: Literal["public", "private"]
    created_by: str | None
    created_at: str
    last_seq: int
    peer: str | None = Field(description="a DM: the other user")
    role: Literal["owner", "moderator", "member"] | None = Field(description="mine; null: "
                                                                 "not a member")
    last_read_seq: int | None
    muted_until: str | None
    notifications_muted: bool | None = Field(
        None, description="mine (chat:set_notifications): mentions and DMs of this room are "
        "not pushed to my devices; null: not a member")
    member_count: int


class RoomSummary(Room):
    unread_count: int = Field(description="messages after my read marker, not mine")
    mention_count: int = Field(description="mentions of me after my read marker")


class RoomList(BaseModel):
    rooms: list[RoomSummary]
    more: bool = Field(description="more rooms after this page: ask again with next_cursor")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: "
                                    "this was the last page")


class RoomCreated(Room):
    member_count: int


class RoomDetails(Room):
    members: list[Member]


class ViewedMessage(Message):
    """A message as one member reads it in ``chat:history``: with their own reactions."""

    my_reactions: list[str] = Field(
        default_factory=list,
        description="the emoji the requesting user reacted with (per viewer: never pushed)")


class History(BaseModel):
    room_id: str
    messages: list[ViewedMessage]
    has_more: bool = Field(description="more messages in the paging direction")
    has_more_before: bool
    has_more_after: bool
    last_seq: int


class Reaction(BaseModel):
    room_id: str
    message_id: str
    seq: int
    emoji: str
    user_id: str
    action: Literal["add", "remove"]
    reactions: dict[str, int] = Field(description="emoji → count, after the change")


class Typing(BaseModel):
    room_id: str
    user_id: str
    name: str | None
    typing: bool
    expires_in: float | None = Field(description="seconds until it lapses without renewal")


class ReadMarker(BaseModel):
    room_id: str
    user_id: str
    seq: int


class MemberJoined(BaseModel):
    room_id: str
    user_id: str
    role: str
    name: str | None
    by: str | None = Field(description="who invited them; null: they joined")


class MemberLeft(BaseModel):
    room_id: str
    user_id: str
    reason: Literal["left", "removed", "kicked", "banned"]
    by: str | None


class MemberUpdated(BaseModel):
    room_id: str
    user_id: str
    role: str
    muted_until: str | None
    by: str | None


# -- schemas: what the client sends


class CreateRoomPayload(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    topic: str | None = Field(None, max_length=500)
    visibility: Literal["public", "private"]


class RoomsPayload(BaseModel):
    limit: int | None = Field(None, ge=1, le=1000, description="rooms per page; at most "
                              "DIHYA_RT_CHAT_ROOMS_PAGE_LIMIT (default and cap: 100)")
    cursor: str | None = Field(None, min_length=1, max_length=600,
                               description="next_cursor of the previous page")

    @model_validator(mode="before")
    @classmethod
    def _no_payload(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("cursor")
    @classmethod
    def _cursor_shape(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value


def encode_cursor(key: tuple[str, str, str]) -> str:
    """An opaque cursor: the last ``(kind, name, id)`` of a page, as base64url JSON."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[str, str, str]:
    try:
        key = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, binascii.Error):
        raise ValueError("not a cursor from chat:rooms") from None
    if not (isinstance(key, list) and len(key) == 3 and all(isinstance(k, str) for k in key)):
        raise ValueError("not a cursor from chat:rooms")
    return key[0], key[1], key[2]


class RoomPayload(BaseModel):
    room_id: str = RoomId


class MemberPayload(BaseModel):
    room_id: str = RoomId
    user_id: str = Id


class RolePayload(MemberPayload):
    role: Literal["moderator", "member"]


class DmPayload(BaseModel):
    user_id: str = Id


class SendPayload(BaseModel):
    room_id: str = RoomId
    text: str = Field(min_length=1, max_length=4000)
    client_msg_id: str = Field(description="a UUID the client makes; a resend is idempotent")
    reply_to: str | None = Field(None, min_length=1, max_length=32)
    mentions: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("client_msg_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(uuid.UUID(value))  # canonical form, so "ABC…" and "abc…" are one message

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class HistoryPayload(BaseModel):
    room_id: str = RoomId
    before_seq: int | None = AnchorSeq
    after_seq: int | None = AnchorSeq
    around_seq: int | None = Field(None, ge=0, le=2**62, description="a page centred here")
    limit: int | None = Field(None, ge=1, le=100)

    @model_validator(mode="after")
    def _one_anchor(self) -> HistoryPayload:
        anchors = ("before_seq", "after_seq", "around_seq")
        given = [n for n in anchors if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of {', '.join(anchors)} (got {given})")
        return self


class EditPayload(BaseModel):
    message_id: str = MessageId
    text: str = Field(min_length=1, max_length=4000)


class MessageRef(BaseModel):
    message_id: str = MessageId


class ReactPayload(BaseModel):
    message_id: str = MessageId
    emoji: str = Field(min_length=1, max_length=64, pattern=r"^\S+$",
                       description="an emoji or a :shortcode:")


class ReactorsPayload(BaseModel):
    message_id: str = MessageId
    emoji: str = Field(min_length=1, max_length=64, pattern=r"^\S+$",
                       description="the reaction whose users to list")
    limit: int | None = Field(None, ge=1, le=1000, description="users per page; at most "
                              "DIHYA_RT_CHAT_REACTORS_PAGE_LIMIT (default and cap: 50)")
    after_user_id: str | None = Field(None, min_length=1, max_length=128,
                                      description="the last user_id of the previous page")


class Reactor(BaseModel):
    user_id: str
    name: str = Field(description="the user's display name (their id when unknown)")


class Reactors(BaseModel):
    room_id: str
    message_id: str
    emoji: str
    count: int = Field(description="how many users reacted with this emoji")
    users: list[Reactor] = Field(description="a page of them, in user_id order")
    more: bool = Field(description="more users after this page: ask again with "
                       "after_user_id set to the last user_id")


class TypingPayload(BaseModel):
    room_id: str = RoomId
    typing: bool


class ReadPayload(BaseModel):
    room_id: str = RoomId
    seq: int = Seq


class MutePayload(MemberPayload):
    until: AwareDatetime | None = Field(description="ISO 8601 with a time zone; null or a past "
                                        "time unmutes")


class BanPayload(MemberPayload):
    reason: str | None = Field(None, max_length=500)


# -- replies


class SendReply(Message):
    duplicate: bool = Field(description="true: this client_msg_id was already stored")


class Left(BaseModel):
    room_id: str
    left: bool


class InviteReply(BaseModel):
    room_id: str
    member: Member
    added: bool = Field(description="false: already a member")


class Removed(BaseModel):
    room_id: str
    user_id: str
    removed: bool


class ReactReply(Reaction):
    changed: bool


class TypingReply(BaseModel):
    room_id: str
    typing: bool
    sent: bool = Field(description="false: throttled, the expiry was renewed")


class ReadReply(ReadMarker):
    moved: bool = Field(description="false: the marker was already at or past seq")
    unread_count: int
    mention_count: int


class BanReply(BaseModel):
    room_id: str
    user_id: str
    banned: bool
    was_member: bool = Field(description="the user was a member and was removed")


class UnbanReply(BaseModel):
    room_id: str
    user_id: str
    banned: bool


# -- the HTTP API


class HttpMessage(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    data: JsonValue = None


class SetNotificationsPayload(BaseModel):
    room_id: str = RoomId
    muted: bool = Field(description="true: this room's mentions and DMs are not pushed to me")


class NotificationsSetting(BaseModel):
    room_id: str
    muted: bool
