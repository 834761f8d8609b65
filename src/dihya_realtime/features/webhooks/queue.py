"""The persisted queue of deliveries: enqueue an event, claim what is due, settle an attempt.

Why each step is its own short transaction: a POST may take the whole send timeout, and no
database lock may be held that long. Claiming pushes ``next_attempt_at`` past the send timeout
(a lease) in a transaction that takes the rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
(two processes never claim the same row) or under SQLite's write lock (one writer); settling
then deletes a sent row or schedules the next attempt. A process that dies between the two
leaves the lease to run out, and the row is claimed again: at-least-once.

Bounded: at most ``DIHYA_RT_WEBHOOK_MAX_PENDING`` pending rows per endpoint; an event beyond
that is dropped for that endpoint (metric ``outcome="dropped"`` and a ``webhook_dropped``
audit row at most once a minute per endpoint, with the count), so a receiver that stays down
cannot fill our disk.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dihya_realtime.features.webhooks.models import FAILED, PENDING, WebhookDelivery

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

DROP_AUDIT_WINDOW = 60.0
"""Seconds between two ``webhook_dropped`` audit rows of one endpoint."""

LEASE_MARGIN = 5.0
"""Seconds a claim holds a row beyond twice the send timeout (a slow process is not
overtaken; a killed one's rows are claimed again that soon)."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed by this process, to send now."""

    id: str
    event_id: str
    endpoint: str
    type: str
    body: bytes
    attempts: int
    created_at: datetime


def event_body(type_: str, data: dict[str, Any], event_id: str | None = None,
               created_at: datetime | None = None) -> tuple[str, bytes]:
    """``(id, body)``: the JSON body ``{id, type, created_at, data}`` of one event."""
    eid = event_id or uuid.uuid4().hex
    when = (created_at or datetime.now(UTC)).isoformat(timespec="milliseconds")
    doc = {"id": eid, "type": type_, "created_at": when, "data": data}
    return eid, json.dumps(doc, separators=(",", ":"), default=str).encode()


def backoff(attempts: int, base: float, cap: float, rand: float | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: ``base * 2**(attempts-1)``, capped, jittered
    down by up to half (so endpoints that failed together do not retry together)."""
    delay = min(cap, base * (2 ** max(0, min(attempts - 1, 40))))
    r = random.random() if rand is None else rand  # noqa: S311 - jitter, not security
    return delay * (0.5 + r / 2)


class DeliveryQueue:
    """The ``webhook_deliveries`` table of ``rt.db``, as a queue."""

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self._dropped: dict[str, int] = {}  # endpoint → drops not yet audited
        self._drop_audited: dict[str, float] = {}
        self._lock = threading.Lock()

    def enqueue(self, type_: str, data: dict[str, Any], endpoints: list[str]) -> str | None:
        """Queue one event for each of ``endpoints``; returns the event id (``None`` if every
        endpoint's queue was full)."""
        if not endpoints:
            return None
        event_id, body = event_body(type_, data)
        now = datetime.now(UTC)
        queued = False
        cap = self.settings.webhook_max_pending
        with self.rt.db.write_transaction() as conn:
            for name in endpoints:
                pending = conn.execute(
                    sa.select(sa.func.count()).select_from(WebhookDelivery).where(
                        WebhookDelivery.endpoint == name, WebhookDelivery.state == PENDING)
                ).scalar_one()
                if pending >= cap:
                    self._drop(name, type_, cap)
                    continue
                conn.execute(sa.insert(WebhookDelivery).values(
                    id=uuid.uuid4().hex, event_id=event_id, endpoint=name, type=type_,
                    body=body.decode(), attempts=0, created_at=now, next_attempt_at=now,
                    state=PENDING, last_error=None))
                queued = True
        return event_id if queued else None

    def _drop(self, endpoint: str, type_: str, cap: int) -> None:
        self.rt.metrics.webhook_deliveries.labels(endpoint, "dropped").inc()
        with self._lock:
            count = self._dropped[endpoint] = self._dropped.get(endpoint, 0) + 1
            last = self._drop_audited.get(endpoint, 0.0)
            if time.monotonic() - last < DROP_AUDIT_WINDOW and last:
                return
            self._drop_audited[endpoint] = time.monotonic()
            self._dropped[endpoint] = 0
        self.rt.audit.record("webhook_dropped", outcome="queue_full",
                             details={"endpoint": endpoint, "type": type_, "dropped": count,
                                      "max_pending": cap})

    def claim(self, limit: int) -> list[Claimed]:
        """Take up to ``limit`` due pending deliveries, oldest first, under a lease."""
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=2 * self.settings.webhook_timeout + LEASE_MARGIN)
        query = (sa.select(WebhookDelivery.__table__)
                 .where(WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= now)
                 .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.created_at)
                 .limit(limit))
        if self.rt.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        with self.rt.db.write_transaction() as conn:
            rows = conn.execute(query).mappings().all()
            if not rows:
                return []
            conn.execute(sa.update(WebhookDelivery)
                         .where(WebhookDelivery.id.in_([r["id"] for r in rows]))
                         .values(next_attempt_at=lease))
        return [Claimed(r["id"], r["event_id"], r["endpoint"], r["type"], r["body"].encode(),
                        r["attempts"], _aware(r["created_at"])) for r in rows]

    def sent(self, item: Claimed) -> None:
        """Delivered: the row is owed no more."""
        with self.rt.db.write_transaction() as conn:
            conn.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.id == item.id))

    def retry(self, item: Claimed, error: str) -> tuple[bool, datetime]:
        """A failed attempt: schedule the next one, or give up past the retry horizon
        (``failed``). Returns whether it gave up, and when the next attempt is due."""
        s = self.settings
        attempts = item.attempts + 1
        now = datetime.now(UTC)
        delay = backoff(attempts, s.webhook_backoff_base, s.webhook_backoff_max)
        next_at = now + timedelta(seconds=delay)
        horizon = item.created_at + timedelta(seconds=s.webhook_retry_horizon)
        give_up = next_at > horizon
        with self.rt.db.write_transaction() as conn:
            conn.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == item.id).values(
                attempts=attempts, last_error=error[:500],
                state=FAILED if give_up else PENDING,
                next_attempt_at=now if give_up else next_at))
        return give_up, next_at

    def release(self, item: Claimed, at: datetime) -> None:
        """Give a claimed row back unsent (its endpoint failed just before): no attempt
        counted, due again at ``at``."""
        with self.rt.db.write_transaction() as conn:
            conn.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == item.id)
                         .values(next_attempt_at=at))

    def pending_counts(self) -> dict[str, int]:
        """Pending rows per endpoint."""
        with self.rt.db.engine.connect() as conn:
            rows = conn.execute(sa.select(WebhookDelivery.endpoint, sa.func.count())
                                .where(WebhookDelivery.state == PENDING)
                                .group_by(WebhookDelivery.endpoint)).all()
        return {str(endpoint): int(count) for endpoint, count in rows}

    def prune_failed(self) -> int:
        """Delete failed rows older than one more retry horizon (kept that long to inspect)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=2 * self.settings.webhook_retry_horizon)
        with self.rt.db.write_transaction() as conn:
            result = conn.execute(sa.delete(WebhookDelivery).where(
                WebhookDelivery.state == FAILED, WebhookDelivery.created_at < cutoff))
        return int(result.rowcount or 0)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


__all__ = ["Claimed", "DeliveryQueue", "backoff", "event_body"]
