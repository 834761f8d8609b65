"""Channel events: subscribe, unsubscribe, publish, presence, history.

Everything a client receives travels on a channel ``namespace:name`` (``chat:general``,
``user:#17``, ``live:project-9``); the namespace's policy comes from the configuration.
The payload, reply and push schemas are in :mod:`.schemas`, the HTTP API in :mod:`.http`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dihya_realtime.features.channels.http import register_routes
from dihya_realtime.features.channels.schemas import (
    ChannelPayload,
    HistoryPayload,
    HistoryReply,
    PresenceEventModel,
    PresenceReply,
    PublicationModel,
    PublishPayload,
    PublishReply,
    SubscribePayload,
    SubscribeReply,
    UnsubscribedEvent,
    UnsubscribeReply,
)
from dihya_realtime.features.channels.service import ChannelService
from dihya_realtime.kernel.pipeline import EventContext
from dihya_realtime.kernel.registry import event, server_event
from dihya_realtime.kernel.settings import RateLimit

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

    Ctx = EventContext[Realtime]  # handlers see the facade: mypy follows ctx.rt.<feature>


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


@event("unsubscribe", payload=ChannelPayload, reply=UnsubscribeReply, audit="unsubscribe",
       audit_details=lambda p, r: {"channel": p.channel} if r["unsubscribed"] else None)
def unsubscribe(ctx: Ctx, payload: ChannelPayload) -> dict:
    """Stop receiving a channel's publications (and leave its presence).

    Payload example: ``{"channel": "chat:general"}``.
    """
    done = ctx.rt.channels.unsubscribe(ctx.conn, payload.channel)
    return {"channel": payload.channel, "unsubscribed": done}


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


# -- set-up: broker fan-out, hooks, presence upkeep, the HTTP API


def setup(rt: Realtime) -> None:
    """Wire ``rt.channels`` to the broker, the disconnect and refresh hooks, presence
    upkeep and the HTTP API (:mod:`.http`)."""
    rt.broker_handlers.append(rt.channels.on_broker_message)
    rt.on_disconnect(lambda conn, reason: rt.channels.drop_connection(conn))

    @rt.on_refresh
    def drop_unreadable_channels(ctx: Ctx) -> None:
        for channel, reason in rt.channels.drop_unreadable(ctx.conn):
            ctx.audit("unsubscribed", outcome=reason, channel=channel)

    settings = rt.settings
    interval = max(1.0, settings.presence_ttl / 3)
    rt.broker.run_maintenance(rt.channels.node_id, interval=interval, ttl=settings.presence_ttl)
    register_routes(rt, rt.blueprint)
