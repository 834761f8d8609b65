"""Web Push: reach a user whose tabs are all closed (RFC 8030 / 8291 / 8292, VAPID).

The flow, end to end (docs/notifications.md, "Web Push"):

1. The page fetches the VAPID public key (``GET /api/v1/push/vapid-key``), subscribes with
   the browser's ``PushManager`` and sends the subscription (``push:subscribe``):
   :mod:`.push_subscriptions` checks and stores it, per user and device.
2. A notification is stored and delivered live (:mod:`.delivery`), which then hands it here
   (:meth:`WebPush.after_delivery`). A recipient gets a push when: push is on for the
   category (:mod:`.preferences`), they have a subscription, they hold no live connection on
   any process (:mod:`.push_presence`), and they are not in their quiet hours
   (:mod:`.push_quiet_hours`); a critical category ignores the category switch and the quiet
   hours. Chat mentions arrive the same way (chat's ``Notifier`` port is ``rt.notify``).
3. One job per subscription goes to the persisted queue (:mod:`.push_queue`); the worker of
   any server process claims it, sends it (:mod:`.push_sender`), and settles it: deleted when
   sent, rejected or gone (the subscription too, on 404/410), retried later on 429/5xx. Each
   attempt is audited (``push_sent`` / ``push_retry`` / ``push_gone`` / ``push_rejected``,
   with the endpoint's origin and the status, never the payload).

Web Push is on when ``DIHYA_RT_VAPID_PRIVATE_KEY_FILE`` is set. A worker's ``Realtime()``
(no Flask app) queues pushes; the server processes send them.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from dihya_realtime.features.notifications.push_presence import PushPresence
from dihya_realtime.features.notifications.push_queue import Job, PushQueue
from dihya_realtime.features.notifications.push_quiet_hours import QuietHours
from dihya_realtime.features.notifications.push_sender import (
    PushSender,
    endpoint_origin,
    push_payload,
)
from dihya_realtime.features.notifications.push_subscriptions import PushSubscriptions
from dihya_realtime.features.notifications.push_vapid import VapidKeys
from dihya_realtime.kernel.sweeper import Sweeper

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.notifications.push")

CLAIM_BATCH = 50


def open_url(notification: dict[str, Any]) -> str:
    """Where a click on the push leads: the notification's ``action_url``; else the chat room
    of a mention (``data.room_id``); else the inbox of the demo page."""
    if notification.get("action_url"):
        return str(notification["action_url"])
    room = (notification.get("data") or {}).get("room_id")
    if isinstance(room, str) and room:
        return "/#room=" + quote(room, safe="")
    return "/#notification=" + quote(str(notification["id"]), safe="")


class WebPush:
    """``rt.notifications.web_push``: subscriptions, the decision to push, the queue worker."""

    def __init__(self, rt: Realtime, keys: VapidKeys, critical: frozenset[str]) -> None:
        s = rt.settings
        self.rt = rt
        self.keys = keys
        self.critical = critical
        self.subscriptions = PushSubscriptions(rt.db, s.push_max_subscriptions)
        self.queue = PushQueue(rt.db, s.push_lease)
        self.quiet_hours = QuietHours(rt.db)
        self.node_id = uuid.uuid4().hex  # this process, in the broker's presence
        self.presence = PushPresence(rt.broker, self.node_id)
        self.sender = PushSender(keys, ttl=s.push_ttl, timeout=s.push_timeout,
                                 retry_base=s.push_retry_base, retry_max=s.push_retry_max)
        self.max_attempts = s.push_max_attempts
        self.worker: Sweeper | None = None
        self.heartbeat: Sweeper | None = None

    def start(self) -> None:
        """Attach the presence hooks and start the queue worker (a server process)."""
        rt = self.rt
        rt.on_connect(self.presence.on_connect)
        rt.on_disconnect(self.presence.on_disconnect)
        server = rt.socketio.server
        # this process's heartbeat, and the reaping of the presence of processes that died
        ttl = rt.settings.presence_ttl
        self.heartbeat = Sweeper("web push presence", max(1.0, ttl / 3), self.beat,
                                 spawn=server.start_background_task, sleep=server.sleep,
                                 persistent=True)
        self.beat()
        self.heartbeat.wake()
        self.worker = Sweeper("web push", rt.settings.push_poll_interval, self.tick,
                              spawn=server.start_background_task, sleep=server.sleep,
                              persistent=True)
        self.worker.wake()

    def beat(self) -> bool:
        ttl = self.rt.settings.presence_ttl
        try:
            self.rt.broker.heartbeat(self.node_id)
            self.rt.broker.reap_dead_nodes(ttl)
        except Exception:
            log.warning("Web Push presence heartbeat failed; retrying", exc_info=True)
        return True

    # -- deciding

    def after_delivery(self, notifications: list[dict[str, Any]], muted: set[str]) -> int:
        """Queue a push of each notification to each device of each recipient who should get
        one (see the module docstring); returns how many jobs were queued. Never raises."""
        try:
            return self._queue_pushes(notifications, muted)
        except Exception:
            log.exception("queueing Web Push for %d notifications failed", len(notifications))
            return 0

    def _queue_pushes(self, notifications: list[dict[str, Any]], muted: set[str]) -> int:
        wanted = [n for n in notifications if n["user_id"] not in muted]
        devices = self.subscriptions.of_users([n["user_id"] for n in wanted])
        if not devices:
            return 0
        users = [u for u in devices if not self.presence.connected(u)]
        critical = bool(wanted) and wanted[0]["category"] in self.critical
        quiet = set() if critical else self.quiet_hours.quiet_now(users)
        jobs: list[tuple[str, str, str, str]] = []
        for n in wanted:
            user = n["user_id"]
            if user not in users or user in quiet:
                continue
            payload = self.rt.redact(push_payload(n, open_url(n)), event="push")
            body = orjson.dumps(payload).decode()
            jobs.extend((sub, user, n["id"], body) for sub in devices[user])
        queued = self.queue.enqueue(jobs)
        if queued and self.worker is not None:
            self.worker.wake()
        return queued

    # -- sending

    def tick(self) -> bool:
        """One pass of the worker: claim due jobs, send each, settle it."""
        for job in self.queue.claim(CLAIM_BATCH):
            self.send(job)
        return True

    def send(self, job: Job) -> str:
        """Send one claimed job and settle it; returns the outcome."""
        try:
            result = self.sender.send(job)
        except Exception:
            log.exception("sending a push failed")
            result = None
        outcome: str = "retry" if result is None else result.outcome
        delay = self.sender.backoff(job.attempts, None) if result is None else result.delay
        if outcome == "retry" and job.attempts >= self.max_attempts:
            outcome = "failed"
        if outcome == "retry":
            self.queue.retry(job.id, delay)
        elif outcome == "gone":
            self.subscriptions.remove(job.subscription_id)
        else:
            self.queue.done(job.id)
        details: dict[str, Any] = {
            "notification_id": job.notification_id, "subscription_id": job.subscription_id,
            "push_service": endpoint_origin(job.endpoint), "attempt": job.attempts,
            "status": None if result is None else result.status}
        if outcome == "retry":
            details["retry_in"] = round(delay, 3)
        self.rt.audit.record(f"push_{outcome}", user_id=job.user_id, outcome=outcome,
                             details=details)
        return outcome





def web_push_of(rt: Realtime, critical: frozenset[str]) -> WebPush | None:
    """The :class:`WebPush` of ``rt`` when ``DIHYA_RT_VAPID_PRIVATE_KEY_FILE`` is set, else
    ``None``; a bad key file or subject is a ``SettingsError`` (at start-up)."""
    s = rt.settings
    if s.vapid_private_key_file is None:
        return None
    return WebPush(rt, VapidKeys.from_file(s.vapid_private_key_file, s.vapid_subject), critical)
__all__ = ["WebPush", "open_url", "web_push_of"]
