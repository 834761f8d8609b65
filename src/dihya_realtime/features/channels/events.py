"""Channel events: subscribe, unsubscribe, publish, presence, history — and their HTTP API.

Everything a client receives travels on a channel ``namespace:name`` (``chat:general``,
``user:#17``, ``live:project-9``); the namespace's policy comes from the configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import jsonify, request
from pydantic import BaseModel, Field

from dihya_realtime.broker import StreamPosition
from dihya_realtime.features.channels.service import ChannelService
from dihya_realtime.http.api import require_api_key
from dihya_realtime.http.bodies import body
from dihya_realtime.kernel.errors import invalid
from dihya_realtime.kernel.payloads import JsonValue
from dihya_realtime.kernel.pipeline import EventContext
from dihya_realtime.kernel.registry import event, server_event
from dihya_realtime.kernel.settings import RateLimit

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

    Ctx = EventContext[Realtime]  # handlers see the facade: mypy follows ctx.rt.<feature>

ChannelName = Field(min_length=3, max_length=161, examples=["chat:general"],
                    description="namespace:name")


class Since(BaseModel):
    offset: int = Field(ge=0, description="the last offset the client saw")
    epoch: str = Field(min_length=1, max_length=64, description="the epoch it belonged to")

    def position(self) -> StreamPosition:
        return StreamPosition(offset=self.offset, epoch=self.epoch)


class UserInfo(BaseModel):
    user_id: str
    name: str | None = None


class PublicationModel(BaseModel):
    channel: str
    offset: int
    epoch: str
    id: str
    ts: float = Field(description="UNIX seconds when the broker accepted it")
    data: Any
    from_: UserInfo | None = Field(default=None, alias="from",
                                   description="the publishing user (client publishes)")


class PresenceMember(BaseModel):
    user_id: str
    name: str | None
    connections: int = Field(description="open connections of this user in the channel")
    since: float = Field(description="UNIX seconds of the user's first connection")


class PresenceReply(BaseModel):
    members: list[PresenceMember]


class SubscribePayload(BaseModel):
    channel: str = ChannelName
    since: Since | None = Field(default=None, description="recover what was missed after it")


class SubscribeReply(BaseModel):
    channel: str
    offset: int = Field(description="the channel's top offset when the reply was made")
    epoch: str
    recovered: bool = Field(description="true when `since` was given and every missed "
                            "publication is in `publications` or follows with `history` "
                            "(see `more`)")
    publications: list[PublicationModel]
    more: bool = Field(description="true when a page cap stopped "
                       "`publications` before `offset`: continue with `history` from the last "
                       "offset received until `more` is false")
    presence: PresenceReply | None = None


@event("subscribe", payload=SubscribePayload, reply=SubscribeReply,
       emits=("publication", "presence:join", "presence:leave"), audit="subscribe",
       audit_details=lambda p, r: {"channel": r["channel"], "recovered": r["recovered"],
                                   "since": p.since.offset if p.since else None})
def subscribe(ctx: Ctx, payload: SubscribePayload) -> dict:
    """Subscribe to a channel; with ``since``, get what was missed.

    Payload example: ``{"channel": "chat:general", "since": {"offset": 41, "epoch": "f3a9"}}``.
    With ``since``, ``publications`` holds the publications after that offset, in order,
    exactly once, and ``recovered`` is true; when the epoch differs or history no longer
    reaches back that far, ``recovered`` is false and ``publications`` is empty (never a
    partial recovery). Live ``publication`` events follow the reply's ``offset`` with no gap
    or repeat.

    Paging: a reply carries at most ``DIHYA_RT_HISTORY_PAGE_MAX_COUNT`` (100) publications
    and, past the first, ``DIHYA_RT_HISTORY_PAGE_MAX_BYTES`` (1 MiB) of them. When a cap
    stopped ``publications`` before the reply's ``offset``, ``more`` is true: the client
    continues with ``history {channel, since: {offset: <last offset received>, epoch}}``
    until ``more`` is false (live publications after ``offset`` keep flowing meanwhile, and
    ``recovered`` stays true).

    Refusals: unknown namespace → ``not_found``; bad name → ``invalid_payload``; missing
    permission or another user's personal channel → ``forbidden``; more than
    ``DIHYA_RT_MAX_SUBSCRIPTIONS_PER_CONNECTION`` (200) channels on this connection →
    ``forbidden`` with details ``{"reason": "subscriptions", "limit": 200}`` (unsubscribe
    from one first).
    """
    svc: ChannelService = ctx.rt.channels
    ref = svc.resolve(payload.channel)
    svc.check_read(ctx.conn, ref)
    reply, go_live = svc.subscribe(ctx.conn, ref, payload.since.position() if payload.since
                                   else None)
    ctx.after_reply(go_live)
    return reply


class ChannelPayload(BaseModel):
    channel: str = ChannelName


class UnsubscribeReply(BaseModel):
    channel: str
    unsubscribed: bool = Field(description="false when the connection was not subscribed")


@event("unsubscribe", payload=ChannelPayload, reply=UnsubscribeReply, audit="unsubscribe",
       audit_details=lambda p, r: {"channel": p.channel} if r["unsubscribed"] else None)
def unsubscribe(ctx: Ctx, payload: ChannelPayload) -> dict:
    """Stop receiving a channel's publications (and leave its presence).

    Payload example: ``{"channel": "chat:general"}``.
    """
    done = ctx.rt.channels.unsubscribe(ctx.conn, payload.channel)
    return {"channel": payload.channel, "unsubscribed": done}


class PublishPayload(BaseModel):
    channel: str = ChannelName
    data: JsonValue = Field(description="any JSON value")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128,
                                        description="same key within 5 min → same result")


class PublishReply(BaseModel):
    offset: int
    epoch: str
    id: str


@event("publish", payload=PublishPayload, reply=PublishReply, rate=RateLimit(rate=50, burst=100))
def publish(ctx: Ctx, payload: PublishPayload) -> dict:
    """Publish on a channel whose namespace lets clients publish.

    Payload example: ``{"channel": "chat:general", "data": {"text": "hi"},
    "idempotency_key": "c1-42"}``. The same user's same ``idempotency_key`` on the channel
    within ``DIHYA_RT_IDEMPOTENCY_TTL`` (5 min) returns the first result and publishes nothing
    new (keys are per user: another user's equal key is another publication).
    Server-only namespaces (``live``) and missing permissions → ``forbidden``; the broker down
    → ``unavailable`` (never a silent loss). History keeps at most
    ``DIHYA_RT_MAX_HISTORY_BYTES_PER_CHANNEL`` (4 MiB) per channel, the oldest trimmed first,
    on at most ``DIHYA_RT_MAX_HISTORY_CHANNELS`` channels: the first publication on one more
    drops the history of the least recently published channel idle for
    ``DIHYA_RT_HISTORY_EVICT_IDLE`` (10 min); when every channel is more recent →
    ``unavailable`` with details ``{"reason": "history_channels", "limit": N}`` (nothing
    published; try later).
    """
    svc: ChannelService = ctx.rt.channels
    ref = svc.resolve(payload.channel)
    svc.check_publish(ctx.conn, ref)
    principal = ctx.conn.principal
    pub, _ = svc.publish(ref.channel, payload.data, ref=ref,
                         from_={"user_id": principal.user_id,
                                "name": principal.display_name},
                         idempotency_key=payload.idempotency_key,
                         idempotency_user=ctx.user_id, by=ctx.conn)
    return {"offset": pub.offset, "epoch": pub.epoch, "id": pub.id}


@event("presence", payload=ChannelPayload, reply=PresenceReply)
def presence(ctx: Ctx, payload: ChannelPayload) -> dict:
    """Who is in a channel: one entry per user, however many tabs.

    Payload example: ``{"channel": "chat:general"}``; reply ``{"members": [{"user_id": "17",
    "name": "Alice", "connections": 2, "since": 1795000000.5}]}``. Needs the channel's
    subscribe permission; a namespace without presence → ``not_found``.
    """
    svc: ChannelService = ctx.rt.channels
    ref = svc.resolve(payload.channel)
    svc.check_read(ctx.conn, ref)
    return {"members": svc.presence(ref)}


class HistoryPayload(BaseModel):
    channel: str = ChannelName
    limit: int | None = Field(default=None, ge=1, le=100)
    since: Since | None = None


class HistoryReply(BaseModel):
    publications: list[PublicationModel]
    offset: int
    epoch: str
    recovered: bool = Field(description="with `since`: false when history no longer reaches "
                            "back that far (then `publications` is empty)")
    more: bool = Field(description="with `since`: true when a page cap "
                       "stopped `publications` before `offset`; ask again from the last "
                       "offset received until it is false")


@event("history", payload=HistoryPayload, reply=HistoryReply)
def history(ctx: Ctx, payload: HistoryPayload) -> dict:
    """Read a channel's retained publications, oldest first.

    Payload example: ``{"channel": "chat:general", "limit": 50}`` (the latest 50) or
    ``{"channel": "chat:general", "since": {"offset": 41, "epoch": "f3a9"}}``.

    A reply is one page: at most ``DIHYA_RT_HISTORY_PAGE_MAX_COUNT`` (100) publications and,
    past the first, ``DIHYA_RT_HISTORY_PAGE_MAX_BYTES`` (1 MiB). With ``since`` the page
    starts right after ``since.offset``; ``more: true`` means the caps stopped it before the
    reply's ``offset``: ask again with ``since`` = the last offset received (same epoch)
    until ``more`` is false. With ``since`` and ``limit``, more than ``limit`` missed →
    ``recovered: false``. Without ``since``: the newest publications that fit the caps
    (``more`` is false).
    """
    svc: ChannelService = ctx.rt.channels
    ref = svc.resolve(payload.channel)
    svc.check_read(ctx.conn, ref)
    result = svc.history(ref, payload.limit, payload.since.position() if payload.since else None)
    return {"publications": [p.to_wire() for p in result.publications],
            "offset": result.position.offset, "epoch": result.position.epoch,
            "recovered": result.recovered, "more": result.more}


class PresenceEventModel(BaseModel):
    channel: str
    user: UserInfo


class UnsubscribedEvent(BaseModel):
    channel: str
    reason: str = Field(description='the reason given to `rt.unsubscribe` (default "server"), '
                        'or "forbidden" / "unavailable" after an `auth:refresh`, '
                        'or "recover" (subscribe again with `since`)')


server_event("publication", PublicationModel, """
    A publication on a channel this connection subscribed to.

    Example: ``{"channel": "chat:general", "offset": 42, "epoch": "f3a9", "id": "9c1…",
    "ts": 1795000000.25, "data": {"text": "hi"}, "from": {"user_id": "17", "name": "Alice"}}``.
    Offsets grow by one per channel; keep the last ``offset`` and ``epoch`` to resubscribe
    with ``since`` after a reconnect.
""", feature="channels")
server_event("presence:join", PresenceEventModel, """
    A user's first connection joined a channel with presence (a second tab is not a join).

    Example: ``{"channel": "chat:general", "user": {"user_id": "17", "name": "Alice"}}``.
""", feature="channels")
server_event("presence:leave", PresenceEventModel, """
    A user's last connection left the channel (or its server process died).

    Sent within ``DIHYA_RT_PRESENCE_TTL`` (30 s) when a process dies without saying goodbye.
""", feature="channels")
server_event("unsubscribed", UnsubscribedEvent, """
    The server removed this connection from a channel.

    ``rt.unsubscribe(user_id, channel, reason)`` sends its ``reason`` (default ``server``).
    After an ``auth:refresh`` every subscription is checked again with the new token's roles:
    a channel it no longer allows is removed with ``reason: "forbidden"`` (``unavailable`` when
    the check could not be made; subscribe again later). A private room's or a DM's
    ``chat:<room id>`` channel is removed from every connection of a member who leaves
    (``reason: "left"``) or is removed, kicked or banned (``reason: "forbidden"``).
    ``reason: "recover"``: the server lost its broker fan-out for a while and history could
    not cover what was published meanwhile; subscribe again with ``since`` (the last offset
    and epoch you have) and check ``recovered``.
""", feature="channels")


# -- the server-side API (Python: rt.publish … ; HTTP: /api/v1/…)

class HttpPublish(BaseModel):
    channel: str = ChannelName
    data: JsonValue
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class HttpBroadcast(BaseModel):
    channels: list[str] = Field(min_length=1, max_length=1000)
    data: JsonValue


class HttpDisconnect(BaseModel):
    reason: str = Field(default="disconnected by server", max_length=200)


def setup(rt: Realtime) -> None:
    rt.broker_handlers.append(rt.channels.on_broker_message)
    rt.on_disconnect(lambda conn, reason: rt.channels.drop_connection(conn))

    @rt.on_refresh
    def drop_unreadable_channels(ctx: Ctx) -> None:
        for channel, reason in rt.channels.drop_unreadable(ctx.conn):
            ctx.audit("unsubscribed", outcome=reason, channel=channel)

    settings = rt.settings
    interval = max(1.0, settings.presence_ttl / 3)
    rt.broker.run_maintenance(rt.channels.node_id, interval=interval, ttl=settings.presence_ttl)
    bp = rt.blueprint
    api_key = require_api_key(rt)

    @bp.post("/api/v1/publish")
    @api_key
    @body(HttpPublish)
    def http_publish(body: HttpPublish) -> Any:
        """Publish on a channel (any namespace: the server may publish everywhere).

        Body: ``{"channel": "live:project-9", "data": {...}, "idempotency_key"?: "..."}``.
        """
        pub, created = rt.publish(body.channel, body.data, idempotency_key=body.idempotency_key)
        return jsonify({"ok": True, "data": {"offset": pub.offset, "epoch": pub.epoch,
                                             "id": pub.id, "created": created}})

    @bp.post("/api/v1/broadcast")
    @api_key
    @body(HttpBroadcast)
    def http_broadcast(body: HttpBroadcast) -> Any:
        """Publish the same data on several channels (every name checked first)."""
        for channel in body.channels:
            rt.channels.resolve(channel)  # all or nothing: check every name first
        pubs = rt.broadcast(body.channels, body.data)
        return jsonify({"ok": True, "data": {"publications": [
            {"channel": p.channel, "offset": p.offset, "epoch": p.epoch, "id": p.id}
            for p in pubs]}})

    @bp.get("/api/v1/channels/<path:channel>/presence")
    @api_key
    def http_presence(channel: str) -> Any:
        """Who is in a channel: one entry per user."""
        return jsonify({"ok": True, "data": {"members": rt.presence(channel)}})

    @bp.get("/api/v1/channels/<path:channel>/history")
    @api_key
    def http_history(channel: str) -> Any:
        """A channel's retained publications.

        Query: ``?limit=1..100`` (the latest) or ``?since_offset=41&since_epoch=f3a9``.
        Paged like the ``history`` event: ``more: true`` → ask again from the last offset.
        """
        limit = request.args.get("limit", type=int)
        if limit is not None and not 1 <= limit <= 100:
            raise invalid("limit must be 1..100", [{"field": "limit",
                                                     "message": "must be 1..100"}])
        since = None
        if "since_offset" in request.args:
            since = StreamPosition(offset=request.args.get("since_offset", type=int) or 0,
                                   epoch=request.args.get("since_epoch", ""))
        result = rt.history(channel, limit=limit, since=since)
        return jsonify({"ok": True, "data": {
            "publications": [p.to_wire() for p in result.publications],
            "offset": result.position.offset, "epoch": result.position.epoch,
            "recovered": result.recovered, "more": result.more}})

    @bp.post("/api/v1/users/<user_id>/disconnect")
    @api_key
    @body(HttpDisconnect, optional=True)
    def http_disconnect(user_id: str, body: HttpDisconnect) -> Any:
        """Disconnect every connection of a user, on every process. Body: ``{"reason"?}``."""
        rt.disconnect_user(user_id, body.reason)
        return jsonify({"ok": True, "data": {"user_id": user_id}})
