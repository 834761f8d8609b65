"""Notification events: the in-app inbox of the connected user.

A user only ever reads or changes their own notifications; someone else's id is answered
``not_found`` and nothing changes. Creating is server-side only: :meth:`Realtime.notify`
(Python) or ``POST /api/v1/notifications`` (API key). Every change a client makes is pushed to
the user's other connections as ``notifications:updated`` and ``notifications:counts``. The
logic lives in :mod:`dihya_realtime.features.notifications.service`; see ``docs/notifications.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from dihya_realtime.features.notifications.digest_http import register_digest_routes
from dihya_realtime.features.notifications.digest_selection import Frequency
from dihya_realtime.features.notifications.http import register_routes
from dihya_realtime.features.notifications.push_quiet_hours import QuietHoursIn
from dihya_realtime.features.notifications.push_service import WebPush
from dihya_realtime.features.notifications.push_subscriptions import (
    MAX_ENDPOINT,
    SubscriptionIn,
    check_subscription,
)
from dihya_realtime.features.notifications.schemas import (
    MAX_IDS,
    Category,
    Counts,
    NotificationId,
    NotificationOut,
    Page,
    Preferences,
    State,
    StateChange,
    Status,
    Updated,
)
from dihya_realtime.features.notifications.service import NotificationService
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.pipeline import EventContext
from dihya_realtime.kernel.registry import event, server_event

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

    Ctx = EventContext[Realtime]  # handlers see the facade: mypy follows ctx.rt.<feature>


def setup(rt: Realtime) -> None:
    """Attach ``rt.notifications``, the connect hook and ``POST /api/v1/notifications``
    (:mod:`.http`)."""
    service = rt.notifications = NotificationService(rt)
    rt.on_connect(service.on_connect)
    if service.web_push is not None:
        service.web_push.start()  # presence hooks and the push queue worker
    register_routes(rt, rt.blueprint)
    register_digest_routes(rt, rt.blueprint, service.digest)
    if rt.socketio is not None:  # a server: send due digests every DIHYA_RT_DIGEST_SCHEDULE
        service.digest.schedule(rt.socketio.start_background_task, rt.socketio.sleep)


def _service(ctx: Ctx) -> NotificationService:
    return ctx.rt.notifications


def _changed(ctx: Ctx, ids: list[str], state: State) -> StateChange:
    counts = _service(ctx).changed(ctx.user_id, ids, state, skip_sid=ctx.sid)
    return StateChange(ids=ids, state=state, counts=Counts(**counts))


# -- reading


class ListPayload(BaseModel):
    status: Status = Field(default="all", description="all = read and unread, not archived")
    category: Category | None = None
    before: str | None = Field(default=None, max_length=256,
                               description="the next_cursor of the previous page")
    limit: int = Field(default=20, ge=1, le=50)


@event("notifications:list", payload=ListPayload, reply=Page, allow_anonymous=False)
def list_(ctx: Ctx, payload: ListPayload) -> dict:
    """One page of my notifications, newest first, with a cursor for the next page.

    ``status``: ``all`` (default: read and unread, not archived), ``unread``, ``read`` or
    ``archived``. Payload example::

        {"status": "unread", "category": "mention", "limit": 20}
        {"before": "MjAyNi0xMS0yNVQxMDowMDowMCswMDowMHw5ZjE…", "limit": 20}

    Reply example::

        {"ok": true, "data": {"items": [{"id": "9f1c…", "user_id": "17", "category": "mention",
          "title": "Alice mentioned you", "body": "@bob can you look?", "data": {"room_id": "r1"},
          "action_url": "/chat/r1", "severity": "info", "created_at": "2026-11-25T10:00:00Z",
          "seen_at": null, "read_at": null, "archived_at": null}],
          "next_cursor": "MjAyNi0xMS0y…"}}
    """
    return _service(ctx).page(ctx.user_id, payload.status, payload.category, payload.before,
                              payload.limit)


@event("notifications:counts", reply=Counts, allow_anonymous=False)
def counts(ctx: Ctx, payload: object) -> dict:
    """My badge counts: unseen and unread, archived notifications excluded.

    Payload: none. Reply example: ``{"ok": true, "data": {"unseen": 3, "unread": 5}}``.
    """
    return _service(ctx).counts(ctx.user_id)


# -- changing state


class IdsPayload(BaseModel):
    ids: list[NotificationId] = Field(min_length=1, max_length=MAX_IDS)


class MarkAllReadPayload(BaseModel):
    category: Category | None = Field(default=None, description="only this category")


@event("notifications:mark_read", payload=IdsPayload, reply=StateChange,
       emits=("notifications:updated", "notifications:counts"), allow_anonymous=False)
def mark_read(ctx: Ctx, payload: IdsPayload) -> StateChange:
    """Mark my notifications read (and seen).

    Any id that is not mine → ``not_found`` and nothing changes. The reply lists the ids whose
    state changed and my new counts; my other connections get ``notifications:updated`` and
    ``notifications:counts``. Payload example: ``{"ids": ["9f1c…", "a07e…"]}``. Reply example::

        {"ok": true, "data": {"ids": ["9f1c…"], "state": "read",
                              "counts": {"unseen": 0, "unread": 4}}}
    """
    ids = _service(ctx).mark(ctx.user_id, payload.ids, "read")
    return _changed(ctx, ids, "read")


@event("notifications:mark_unread", payload=IdsPayload, reply=StateChange,
       emits=("notifications:updated", "notifications:counts"), allow_anonymous=False)
def mark_unread(ctx: Ctx, payload: IdsPayload) -> StateChange:
    """Mark my notifications unread again (they stay seen).

    Payload example: ``{"ids": ["9f1c…"]}``; reply as ``notifications:mark_read`` with
    ``"state": "unread"``.
    """
    ids = _service(ctx).mark(ctx.user_id, payload.ids, "unread")
    return _changed(ctx, ids, "unread")


@event("notifications:mark_all_read", payload=MarkAllReadPayload, reply=StateChange,
       emits=("notifications:updated", "notifications:counts"), allow_anonymous=False)
def mark_all_read(ctx: Ctx, payload: MarkAllReadPayload) -> StateChange:
    """Mark all my notifications read, or all of one category.

    Payload example: ``{}`` or ``{"category": "mention"}``; reply as
    ``notifications:mark_read`` (``ids`` lists every notification that changed).
    """
    ids = _service(ctx).mark_all(ctx.user_id, "read", payload.category)
    return _changed(ctx, ids, "read")


@event("notifications:mark_seen", payload=IdsPayload, reply=StateChange,
       emits=("notifications:updated", "notifications:counts"), allow_anonymous=False)
def mark_seen(ctx: Ctx, payload: IdsPayload) -> StateChange:
    """Mark my notifications seen (the bell was opened; read state unchanged).

    Payload example: ``{"ids": ["9f1c…"]}``; reply as ``notifications:mark_read`` with
    ``"state": "seen"``.
    """
    ids = _service(ctx).mark(ctx.user_id, payload.ids, "seen")
    return _changed(ctx, ids, "seen")


@event("notifications:mark_all_seen", reply=StateChange,
       emits=("notifications:updated", "notifications:counts"), allow_anonymous=False)
def mark_all_seen(ctx: Ctx, payload: object) -> StateChange:
    """Mark all my notifications seen: the unseen badge goes to zero.

    Payload: none. Reply as ``notifications:mark_read`` with ``"state": "seen"``.
    """
    ids = _service(ctx).mark_all(ctx.user_id, "seen")
    return _changed(ctx, ids, "seen")


@event("notifications:archive", payload=IdsPayload, reply=StateChange,
       emits=("notifications:updated", "notifications:counts"), allow_anonymous=False)
def archive(ctx: Ctx, payload: IdsPayload) -> StateChange:
    """Archive my notifications: out of the inbox and the counts, listed with ``archived``.

    Payload example: ``{"ids": ["9f1c…"]}``; reply as ``notifications:mark_read`` with
    ``"state": "archived"``.
    """
    ids = _service(ctx).mark(ctx.user_id, payload.ids, "archived")
    return _changed(ctx, ids, "archived")


@event("notifications:unarchive", payload=IdsPayload, reply=StateChange,
       emits=("notifications:updated", "notifications:counts"), allow_anonymous=False)
def unarchive(ctx: Ctx, payload: IdsPayload) -> StateChange:
    """Bring archived notifications of mine back to the inbox.

    Payload example: ``{"ids": ["9f1c…"]}``; reply as ``notifications:mark_read`` with
    ``"state": "unarchived"``.
    """
    ids = _service(ctx).mark(ctx.user_id, payload.ids, "unarchived")
    return _changed(ctx, ids, "unarchived")


# -- preferences


class PushPreference(BaseModel):
    push: bool


class SetPreferencesPayload(BaseModel):
    preferences: dict[Category, PushPreference] = Field(min_length=1, max_length=50)


class PreferencesWithDigest(Preferences):
    digest: Frequency = Field(description="my email digest of unread notifications: off, "
                                          "hourly or daily (docs/notifications.md)")


def _with_digest(ctx: Ctx, prefs: dict) -> dict:
    return {**prefs, "digest": _service(ctx).digest.frequency(ctx.user_id)}


@event("notifications:preferences", reply=PreferencesWithDigest, allow_anonymous=False)
def preferences(ctx: Ctx, payload: object) -> dict:
    """My live-push setting per category (any category not listed is pushed), and my email
    digest.

    Payload: none. Reply example::

        {"ok": true, "data": {"critical": ["security"], "digest": "daily", "preferences": [
          {"category": "marketing", "push": false, "critical": false},
          {"category": "security", "push": true, "critical": true}]}}
    """
    return _with_digest(ctx, _service(ctx).preferences(ctx.user_id))


@event("notifications:set_preferences", payload=SetPreferencesPayload,
       reply=PreferencesWithDigest,
       allow_anonymous=False, audit="notification_preferences",
       audit_details=lambda p, _: {"categories": sorted(p.preferences)})
def set_preferences(ctx: Ctx, payload: SetPreferencesPayload) -> dict:
    """Turn live push on or off per category; notifications are stored and counted either way.

    Turning off a critical category (``DIHYA_RT_NOTIFICATIONS_CRITICAL_CATEGORIES``) →
    ``forbidden`` and nothing changes. Payload example::

        {"preferences": {"marketing": {"push": false}, "mention": {"push": true}}}

    Reply: as ``notifications:preferences``.
    """
    push = {category: p.push for category, p in payload.preferences.items()}
    return _with_digest(ctx, _service(ctx).set_preferences(ctx.user_id, push))


class SetDigestPayload(BaseModel):
    digest: Frequency


@event("notifications:set_digest", payload=SetDigestPayload, reply=PreferencesWithDigest,
       allow_anonymous=False, audit="notification_digest",
       audit_details=lambda p, _: {"digest": p.digest})
def set_digest(ctx: Ctx, payload: SetDigestPayload) -> dict:
    """Choose my email digest of unread notifications: ``off``, ``hourly`` or ``daily``.

    A digest gathers what stayed unread past ``DIHYA_RT_DIGEST_DELAY`` into one email, each
    notification at most once; every email has a one-click unsubscribe link. Where it goes:
    the address the host app knows (or stored with ``PUT /api/v1/users/<id>/email``).
    Payload example: ``{"digest": "daily"}``. Reply: as ``notifications:preferences``.
    """
    _service(ctx).digest.set_frequency(ctx.user_id, payload.digest)
    return _with_digest(ctx, _service(ctx).preferences(ctx.user_id))


# -- what the server sends

server_event("notifications:new", NotificationOut, """
    A new notification for me, sent to every connection of mine (unless I turned push off for
    its category), followed by ``notifications:counts``.

    Example: ``{"id": "9f1c…", "user_id": "17", "category": "builds", "title": "Build 42
    finished", "body": "", "data": {"build": 42}, "action_url": "/builds/42",
    "severity": "success", "created_at": "2026-11-25T10:00:00Z", "seen_at": null,
    "read_at": null, "archived_at": null}``.
""")
server_event("notifications:counts", Counts, """
    My badge counts changed (or I just connected): ``{"unseen": 3, "unread": 5}``.

    Sent after every connect, after each new notification, and to my other connections after
    every state change.
""")
server_event("notifications:updated", Updated, """
    Another connection of mine changed these notifications' state.

    ``state`` is ``read``, ``unread``, ``seen``, ``archived`` or ``unarchived``. Example:
    ``{"ids": ["9f1c…"], "state": "read"}``; ``notifications:counts`` follows.
""")


# -- Web Push (push_service.py; docs/notifications.md "Web Push")


def _web_push(ctx: Ctx) -> WebPush:
    web_push = _service(ctx).web_push
    if web_push is None:
        raise RealtimeError(ErrorCode.UNAVAILABLE, "Web Push is not configured on this server")
    return web_push


class SubscribePayload(BaseModel):
    subscription: SubscriptionIn = Field(description="the browser's PushSubscription.toJSON()")


class Subscribed(BaseModel):
    id: str = Field(description="the stored subscription")
    created: bool = Field(description="false when this endpoint was known (taken over)")


class UnsubscribePayload(BaseModel):
    endpoint: str = Field(min_length=1, max_length=MAX_ENDPOINT)


class Unsubscribed(BaseModel):
    removed: bool


class QuietHoursPayload(BaseModel):
    quiet_hours: QuietHoursIn | None = Field(description="null turns quiet hours off")


class QuietHoursReply(BaseModel):
    quiet_hours: QuietHoursIn | None


@event("push:subscribe", payload=SubscribePayload, reply=Subscribed, allow_anonymous=False,
       audit="push_subscribed", audit_details=lambda p, r: {"subscription_id": r["id"]})
def push_subscribe(ctx: Ctx, payload: SubscribePayload) -> dict:
    """Receive Web Push on this browser when I have no tab open.

    The subscription is what ``registration.pushManager.subscribe({userVisibleOnly: true,
    applicationServerKey})`` returned (key from ``GET /api/v1/push/vapid-key``). The endpoint
    must be https on an allowed push service (``DIHYA_RT_PUSH_ALLOWED_HOSTS``), the keys a
    P-256 point and 16 bytes: ``invalid_payload`` otherwise. At most
    ``DIHYA_RT_PUSH_MAX_SUBSCRIPTIONS`` browsers per user: the next → ``conflict`` with
    ``details.reason = "too_many_push_subscriptions"``. ``unavailable`` when Web Push is off.
    Payload example::

        {"subscription": {"endpoint": "<the push service's URL for this browser>",
          "expirationTime": null, "keys": {"p256dh": "BNcR…", "auth": "tBHI…"}}}

    Reply example: ``{"ok": true, "data": {"id": "5b0e…", "created": true}}``.
    """
    web_push = _web_push(ctx)
    settings = ctx.rt.settings
    sub = check_subscription(payload.subscription, settings.push_allowed_hosts,
                             settings.push_allow_http)
    return web_push.subscriptions.subscribe(ctx.user_id, sub)


@event("push:unsubscribe", payload=UnsubscribePayload, reply=Unsubscribed,
       allow_anonymous=False, audit="push_unsubscribed")
def push_unsubscribe(ctx: Ctx, payload: UnsubscribePayload) -> dict:
    """Stop Web Push to this browser (call it before ``subscription.unsubscribe()``).

    Only my own subscriptions; an unknown endpoint replies ``removed: false``. Payload
    example: ``{"endpoint": "<the push service's URL for this browser>"}``; reply:
    ``{"ok": true, "data": {"removed": true}}``.
    """
    return {"removed": _web_push(ctx).subscriptions.unsubscribe(ctx.user_id, payload.endpoint)}


@event("push:quiet_hours", payload=QuietHoursPayload, reply=QuietHoursReply,
       allow_anonymous=False, audit="push_quiet_hours")
def push_quiet_hours(ctx: Ctx, payload: QuietHoursPayload) -> dict:
    """Set (or, with ``null``, clear) my daily quiet hours: no Web Push in that window.

    Times are local to ``timezone`` and may wrap midnight; critical categories are pushed
    anyway; notifications are stored and delivered live as always. Payload example::

        {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"}}

    Reply: the stored window, ``{"ok": true, "data": {"quiet_hours": {…}}}``.
    """
    return {"quiet_hours": _web_push(ctx).quiet_hours.set_window(ctx.user_id, payload.quiet_hours)}
