"""Chat events: rooms, direct messages, persisted history, receipts and moderation.

Every handler is thin: the rules live in
:class:`dihya_realtime.features.chat.service.ChatService` (``rt.chat``),
the pipeline does validation, permission (``chat:write``), rate limits and audit of refusals.
Room events are pushed to the members after the ack (``ctx.after_reply``). The payload, reply
and push schemas are in :mod:`.schemas`, the HTTP API in :mod:`.http`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dihya_realtime.features.chat.http import register_routes
from dihya_realtime.features.chat.schemas import (
    BanPayload,
    BanReply,
    CreateRoomPayload,
    DeletedMessage,
    DmPayload,
    EditPayload,
    History,
    HistoryPayload,
    InviteReply,
    Left,
    MemberJoined,
    MemberLeft,
    MemberPayload,
    MemberUpdated,
    Message,
    MessageRef,
    MutePayload,
    NotificationsSetting,
    Reaction,
    Reactors,
    ReactorsPayload,
    ReactPayload,
    ReactReply,
    ReadMarker,
    ReadPayload,
    ReadReply,
    Removed,
    RolePayload,
    Room,
    RoomCreated,
    RoomDetails,
    RoomList,
    RoomPayload,
    RoomsPayload,
    SendPayload,
    SendReply,
    SetNotificationsPayload,
    Typing,
    TypingPayload,
    TypingReply,
    UnbanReply,
    decode_cursor,
    encode_cursor,
)
from dihya_realtime.features.chat.service import Actor, ChatService
from dihya_realtime.kernel.pipeline import EventContext
from dihya_realtime.kernel.registry import event, server_event
from dihya_realtime.kernel.settings import RateLimit

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

    Ctx = EventContext[Realtime]  # handlers see the facade: mypy follows ctx.rt.<feature>

WRITE = "chat:write"


def _chat(ctx: Ctx) -> ChatService:
    return ctx.rt.chat


# -- rooms



def _room_and_target(p: Any, _reply: Any) -> dict[str, Any]:
    """The audit details of a moderation act on one member: which room, whom."""
    return {"room_id": p.room_id, "target": p.user_id}

@event("chat:create_room", payload=CreateRoomPayload, reply=Room, permission=WRITE,
       rate=RateLimit(rate=0.5, burst=10), audit="chat_room_created",
       emits=("chat:room_created",),
       audit_details=lambda p, room: {"room_id": room["id"], "visibility": p.visibility})
def create_room(ctx: Ctx, p: CreateRoomPayload) -> dict:
    """Create a room; you are its owner.

    Payload example: ``{"name": "release-train", "topic": "Friday deploys",
    "visibility": "public"}``. Reply: the room (``role: "owner"``). A public room is
    announced to everyone connected who may chat (``chat:room_created``).
    """
    return _chat(ctx).create_room(Actor.of(ctx.conn), p.name, p.topic, p.visibility)


@event("chat:rooms", payload=RoomsPayload, reply=RoomList, permission=WRITE)
def rooms(ctx: Ctx, p: RoomsPayload) -> dict:
    """List public rooms and my rooms, each with ``unread_count`` and ``mention_count``, a page
    at a time.

    Payload: none, or ``{"limit": 50, "cursor": "…"}``. ``limit`` defaults to and is capped
    by ``DIHYA_RT_CHAT_ROOMS_PAGE_LIMIT`` (100); rooms come in a stable order (kind, name,
    id). Reply example: ``{"rooms": [{"id": "9f…", "name": "general", "role": "member",
    "last_seq": 42, "last_read_seq": 40, "unread_count": 2, "mention_count": 1, …}],
    "more": true, "next_cursor": "WyJyb29t…"}``: while ``more`` is true, ask again with
    ``cursor`` = ``next_cursor``. A public room I have not joined has ``role: null``.
    """
    cursor = decode_cursor(p.cursor) if p.cursor else None
    page = _chat(ctx).rooms(Actor.of(ctx.conn), p.limit, cursor)
    key = page["next_cursor"]
    return {**page, "next_cursor": encode_cursor(key) if key is not None else None}


@event("chat:room", payload=RoomPayload, reply=RoomDetails, permission=WRITE)
def room(ctx: Ctx, p: RoomPayload) -> dict:
    """A room's details and members (a private room or DM: members only → else ``forbidden``).

    Payload example: ``{"room_id": "9f2c…"}``.
    """
    return _chat(ctx).room(Actor.of(ctx.conn), p.room_id)


@event("chat:join", payload=RoomPayload, reply=Room, permission=WRITE,
       emits=("chat:member_joined",))
def join(ctx: Ctx, p: RoomPayload) -> dict:
    """Join a public room. Private room or banned → ``forbidden`` (``details.reason``).

    Payload example: ``{"room_id": "9f2c…"}``. The members get ``chat:member_joined``.
    """
    return _chat(ctx).join(Actor.of(ctx.conn), p.room_id, ctx.after_reply)


@event("chat:leave", payload=RoomPayload, reply=Left, permission=WRITE,
       emits=("chat:member_left", "chat:typing", "unsubscribed"))
def leave(ctx: Ctx, p: RoomPayload) -> dict:
    """Leave a room (not a DM → ``conflict``). A leaving owner hands over to a moderator.

    Payload example: ``{"room_id": "9f2c…"}``.
    """
    return _chat(ctx).leave(Actor.of(ctx.conn), p.room_id, ctx.after_reply)


@event("chat:invite", payload=MemberPayload, reply=InviteReply, permission=WRITE,
       emits=("chat:member_joined",), audit="chat_invite",
       audit_details=_room_and_target)
def invite(ctx: Ctx, p: MemberPayload) -> dict:
    """Add a user to a room: its owner or moderators (or ``chat:moderate``).

    Payload example: ``{"room_id": "9f2c…", "user_id": "42"}``. A banned user → ``conflict``.
    """
    return _chat(ctx).invite(Actor.of(ctx.conn), p.room_id, p.user_id, ctx.after_reply)


@event("chat:remove_member", payload=MemberPayload, reply=Removed, permission=WRITE,
       emits=("chat:member_left", "chat:typing", "unsubscribed"), audit="chat_remove_member",
       audit_details=_room_and_target)
def remove_member(ctx: Ctx, p: MemberPayload) -> dict:
    """Remove a member: the room's owner or moderators (a moderator cannot remove a moderator).

    Payload example: ``{"room_id": "9f2c…", "user_id": "42"}``.
    """
    return _chat(ctx).remove_member(Actor.of(ctx.conn), p.room_id, p.user_id, "removed",
                                    ctx.after_reply)


@event("chat:set_role", payload=RolePayload, reply=MemberUpdated, permission=WRITE,
       emits=("chat:member_updated",), audit="chat_set_role",
       audit_details=lambda p, _: {"room_id": p.room_id, "target": p.user_id, "role": p.role})
def set_role(ctx: Ctx, p: RolePayload) -> dict:
    """Make a member a room moderator, or a plain member again: the owner only.

    Payload example: ``{"room_id": "9f2c…", "user_id": "42", "role": "moderator"}``.
    """
    return _chat(ctx).set_role(Actor.of(ctx.conn), p.room_id, p.user_id, p.role,
                               ctx.after_reply)


@event("chat:dm", payload=DmPayload, reply=Room, permission=WRITE)
def dm(ctx: Ctx, p: DmPayload) -> dict:
    """The direct-message room shared with another user (created once, then always the same).

    Payload example: ``{"user_id": "42"}``. Then ``chat:send`` to its ``id``. Only with a user
    who has connected at least once: anyone else → ``not_found`` (``details: {"reason":
    "unknown_user", "user_id"}``), so a typo never opens a room nobody reads.
    """
    return _chat(ctx).dm(Actor.of(ctx.conn), p.user_id, known_only=True)


# -- messages


@event("chat:send", payload=SendPayload, reply=SendReply, permission=WRITE,
       rate=RateLimit(rate=5, burst=20), emits=("chat:message",))
def send(ctx: Ctx, p: SendPayload) -> dict:
    """Send a message; the ack carries the stored message (``id``, ``seq``, ``created_at``).

    Payload example::

        {"room_id": "9f2c…", "text": "ship it @42",
         "client_msg_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "reply_to": null,
         "mentions": []}

    The ack comes only once the message is stored. Resending the same ``client_msg_id``
    returns the original (``duplicate: true``) and creates nothing. Not a member, muted
    (``details.reason: "muted"``) → ``forbidden``. Members then get ``chat:message``.
    """
    message, created = _chat(ctx).send(Actor.of(ctx.conn), p.room_id, p.text, p.client_msg_id,
                                       p.reply_to, p.mentions, ctx.after_reply)
    return {**message, "duplicate": not created}


@event("chat:history", payload=HistoryPayload, reply=History, permission=WRITE)
def history(ctx: Ctx, p: HistoryPayload) -> dict:
    """A page of messages in ``seq`` order (private rooms: members only).

    Each message carries ``my_reactions``: the emoji you reacted with (yours only; pushes
    never carry it: follow ``chat:reaction``, whose ``user_id`` says who reacted).

    Payload examples: ``{"room_id": "9f2c…"}`` (latest), ``{"room_id": "9f2c…",
    "before_seq": 120, "limit": 50}`` (older), ``{"after_seq": 120}`` (newer, to fill a gap),
    ``{"around_seq": 77}`` (a page centred on a message). At most one anchor; ``limit`` 1..100.
    """
    return _chat(ctx).history(Actor.of(ctx.conn), p.room_id, p.before_seq, p.after_seq,
                              p.around_seq, p.limit)


@event("chat:edit", payload=EditPayload, reply=Message, permission=WRITE,
       rate=RateLimit(rate=2, burst=10), emits=("chat:message_edited",))
def edit(ctx: Ctx, p: EditPayload) -> dict:
    """Edit the text of your own message (others → ``forbidden``; deleted → ``conflict``).

    Muted → ``forbidden`` (``details: {"reason": "muted", "until"}``), as for ``chat:send``.

    Payload example: ``{"message_id": "5d1e…", "text": "ship it on Friday"}``.
    """
    return _chat(ctx).edit(Actor.of(ctx.conn), p.message_id, p.text, ctx.after_reply)


@event("chat:delete", payload=MessageRef, reply=Message, permission=WRITE,
       emits=("chat:message_deleted",), audit="chat_moderate_delete",
       audit_details=lambda p, m: {"room_id": m["room_id"], "message_id": p.message_id,
                                   "target": (m["author"] or {}).get("user_id")})
def delete(ctx: Ctx, p: MessageRef) -> dict:
    """Delete a message: its author, or the room's owner/moderators, or ``chat:moderate``.

    Payload example: ``{"message_id": "5d1e…"}``. The message becomes a tombstone that keeps
    its ``seq``; a moderator's deletion is audited.
    """
    message, by_moderator = _chat(ctx).delete(Actor.of(ctx.conn), p.message_id,
                                              ctx.after_reply)
    if not by_moderator:
        ctx.skip_audit()
    return message


@event("chat:react", payload=ReactPayload, reply=ReactReply, permission=WRITE,
       emits=("chat:reaction",))
def react(ctx: Ctx, p: ReactPayload) -> dict:
    """Add your reaction to a message. Payload example: ``{"message_id": "5d1e…", "emoji": "🎉"}``.

    Reacting twice with the same emoji changes nothing (``changed: false``, no push). A message
    holds at most ``DIHYA_RT_CHAT_MAX_REACTION_KINDS`` (20) different emoji: one more →
    ``conflict`` (``details: {"reason": "too_many_reactions", "limit"}``).
    Muted → ``forbidden`` (``details.reason: "muted"``); ``chat:unreact`` stays allowed.
    """
    return _chat(ctx).react(Actor.of(ctx.conn), p.message_id, p.emoji, True, ctx.after_reply)


@event("chat:reactors", payload=ReactorsPayload, reply=Reactors, permission=WRITE)
def reactors(ctx: Ctx, p: ReactorsPayload) -> dict:
    """Who reacted to a message with one emoji: a page of users and the total ``count``.

    Payload examples: ``{"message_id": "5d1e…", "emoji": "🎉"}``, then
    ``{"message_id": "5d1e…", "emoji": "🎉", "after_user_id": "u-77"}`` while ``more``.
    Readers of the room only (private rooms and DMs: members). ``limit`` defaults to, and is
    capped by, ``DIHYA_RT_CHAT_REACTORS_PAGE_LIMIT`` (50). An emoji nobody used → ``count: 0``.
    """
    return _chat(ctx).reactors(Actor.of(ctx.conn), p.message_id, p.emoji, p.limit,
                               p.after_user_id)


@event("chat:unreact", payload=ReactPayload, reply=ReactReply, permission=WRITE,
       emits=("chat:reaction",))
def unreact(ctx: Ctx, p: ReactPayload) -> dict:
    """Remove your reaction. Payload example: ``{"message_id": "5d1e…", "emoji": "🎉"}``."""
    return _chat(ctx).react(Actor.of(ctx.conn), p.message_id, p.emoji, False, ctx.after_reply)


@event("chat:typing", payload=TypingPayload, reply=TypingReply, permission=WRITE,
       rate=RateLimit(rate=2, burst=10), emits=("chat:typing",))
def typing(ctx: Ctx, p: TypingPayload) -> dict:
    """Say you are typing (or stopped); the other members get ``chat:typing``.

    Payload example: ``{"room_id": "9f2c…", "typing": true}``. Ephemeral, never stored.
    Renew every few seconds while typing: renewals inside ``DIHYA_RT_CHAT_TYPING_THROTTLE``
    are not pushed again, and without renewal it lapses after ``DIHYA_RT_CHAT_TYPING_TTL``
    seconds (``typing: false`` is pushed). Sending a message stops it. Muted →
    ``forbidden`` for ``typing: true``.
    """
    return _chat(ctx).typing(Actor.of(ctx.conn), ctx.sid, p.room_id, p.typing)


@event("chat:read", payload=ReadPayload, reply=ReadReply, permission=WRITE,
       emits=("chat:read",))
def read(ctx: Ctx, p: ReadPayload) -> dict:
    """Mark the room read up to ``seq``; the marker never moves backwards.

    Payload example: ``{"room_id": "9f2c…", "seq": 42}``. Reply: the marker now, plus my
    ``unread_count`` and ``mention_count``. The members get ``chat:read`` when it moved.
    """
    return _chat(ctx).mark_read(Actor.of(ctx.conn), p.room_id, p.seq, ctx.after_reply)


@event("chat:set_notifications", payload=SetNotificationsPayload, reply=NotificationsSetting,
       permission=WRITE, allow_anonymous=False)
def set_notifications(ctx: Ctx, p: SetNotificationsPayload) -> dict:
    """Mute (or unmute) a room's notifications for myself: its mentions of me and, in a DM,
    its messages still create in-app notifications, but none is pushed to my devices.

    Payload example: ``{"room_id": "9f2c…", "muted": true}``. Reply: ``{"room_id", "muted"}``.
    Not a member → ``forbidden`` (``reason: "not_a_member"``). ``chat:rooms`` and ``chat:room``
    show it as ``notifications_muted``.
    """
    return _chat(ctx).set_notifications(Actor.of(ctx.conn), p.room_id, p.muted)


# -- moderation (room owner/moderators, or the global chat:moderate permission)


@event("chat:mute", payload=MutePayload, reply=MemberUpdated, permission=WRITE,
       emits=("chat:member_updated",), audit="chat_mute",
       audit_details=lambda p, r: {"room_id": p.room_id, "target": p.user_id,
                                   "until": r["muted_until"]})
def mute(ctx: Ctx, p: MutePayload) -> dict:
    """Mute a member until a time: until then they cannot speak in the room.

    ``chat:send``, ``chat:edit``, ``chat:react``, ``chat:typing`` (true) and ``publish`` on the
    room's ``chat:<room id>`` channel → ``forbidden`` with ``details: {"reason": "muted",
    "until", "room_id"}``. Taking back a reaction and deleting their own messages stay allowed.

    Payload example: ``{"room_id": "9f2c…", "user_id": "42", "until": "2026-12-01T18:00:00Z"}``.
    ``until: null`` (or a past time) unmutes. Audited.
    """
    return _chat(ctx).mute(Actor.of(ctx.conn), p.room_id, p.user_id, p.until, ctx.after_reply)


@event("chat:kick", payload=MemberPayload, reply=Removed, permission=WRITE,
       emits=("chat:member_left", "chat:typing", "unsubscribed"), audit="chat_kick",
       audit_details=_room_and_target)
def kick(ctx: Ctx, p: MemberPayload) -> dict:
    """Remove a member now (they may join a public room again). Audited.

    Payload example: ``{"room_id": "9f2c…", "user_id": "42"}``.
    """
    return _chat(ctx).remove_member(Actor.of(ctx.conn), p.room_id, p.user_id, "kicked",
                                    ctx.after_reply)


@event("chat:ban", payload=BanPayload, reply=BanReply, permission=WRITE,
       emits=("chat:member_left", "chat:typing", "unsubscribed"), audit="chat_ban",
       audit_details=_room_and_target)
def ban(ctx: Ctx, p: BanPayload) -> dict:
    """Ban a user from a room: removed, and ``chat:join`` → ``forbidden`` until unbanned.

    A banned user's ``publish`` on the room's ``chat:<room id>`` channel → ``forbidden``
    (``details.reason: "banned"``); on a room's channel only members publish.

    Payload example: ``{"room_id": "9f2c…", "user_id": "42", "reason": "spam"}``. Audited.
    """
    return _chat(ctx).ban(Actor.of(ctx.conn), p.room_id, p.user_id, p.reason, ctx.after_reply)


@event("chat:unban", payload=MemberPayload, reply=UnbanReply, permission=WRITE,
       audit="chat_unban",
       audit_details=_room_and_target)
def unban(ctx: Ctx, p: MemberPayload) -> dict:
    """Lift a ban. Payload example: ``{"room_id": "9f2c…", "user_id": "42"}``. Audited."""
    return _chat(ctx).unban(Actor.of(ctx.conn), p.room_id, p.user_id)


# -- server → client


server_event("chat:message", Message, """
    A new message in one of my rooms (only members receive it), after it was stored.

    Clients order by ``seq``; a jump in ``seq`` means something was missed: fetch it with
    ``chat:history {"room_id", "after_seq"}``. My own message arrives too (match it by
    ``client_msg_id``).
""")
server_event("chat:room_created", RoomCreated, """
    A new public room was created: sent to every connection allowed to chat (``chat:write``),
    on every process, so room lists grow without a reload. Private rooms and DMs are never
    announced (their members hear ``chat:member_joined``). ``role`` and ``last_read_seq`` are
    null: you are not a member until ``chat:join``. A courtesy: ``chat:rooms`` lists it anyway.
""")
server_event("chat:message_edited", Message, """
    A message was edited: the full message with its new ``text`` and ``edited_at``.
""")
server_event("chat:message_deleted", DeletedMessage, """
    A message was deleted: its tombstone (``deleted: true``, ``text: null``, same ``seq``).
""")
server_event("chat:reaction", Reaction, """
    A reaction was added or removed; ``reactions`` holds the message's counts after it.
""")
server_event("chat:typing", Typing, """
    Another member started or stopped typing (never sent to the typist).

    ``typing: true`` lapses after ``expires_in`` seconds unless renewed; the server also
    pushes ``typing: false`` when it lapses, when the typist sends or disconnects, and when
    they leave the room or are removed, kicked or banned (with several server processes that
    last one comes whether or not they were typing: a stop for someone not typing is a no-op).
""")
server_event("chat:read", ReadMarker, """
    A member's read marker moved forward (read receipts): ``{"room_id", "user_id", "seq"}``.
""")
server_event("chat:member_joined", MemberJoined, """
    Someone joined or was invited; the new member receives it too.
""")
server_event("chat:member_left", MemberLeft, """
    Someone left, was removed, kicked or banned (``reason``); the leaver receives it too.
""")
server_event("chat:member_updated", MemberUpdated, """
    A member's role or mute changed (``muted_until`` null: not muted).
""")


# -- set-up: the service, the disconnect hook, the HTTP API


def setup(rt: Realtime) -> None:
    """Attach ``rt.chat`` and the ``/api/v1/chat`` routes."""
    # mentions notify through the notifications feature, when this server runs it
    service = ChatService(rt, notifier=rt if "notifications" in rt.features else None)
    rt.chat = service
    rt.on_disconnect(lambda conn, reason: service.connection_closed(conn.sid))
    service.store.relayed.setup()  # members' connections in their rooms' relays
    rt.on_connect(service.known_users.connected)  # whom a client may open a DM with
    rt.channels.add_access_check("chat", service.check_channel)
    register_routes(rt, rt.blueprint)
