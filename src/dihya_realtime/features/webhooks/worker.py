"""The delivery worker: claims due deliveries, POSTs them, settles each attempt.

Why one background task per process, woken on enqueue and polling otherwise: any process may
claim any row (the queue's lease keeps two from sending one row at once), so a restarted or
extra process picks up what another left; polling every ``DIHYA_RT_WEBHOOK_POLL_INTERVAL``
finds retries as they fall due. When an endpoint fails, the rest of its claimed rows are given
back unsent, due with the failed one: a dead receiver costs one timeout per pass, not one per
row. Each endpoint's health is audited when it changes (``webhook_failing`` on the first
failure, ``webhook_recovered`` on the next success); a delivery given up is audited
``webhook_failed``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from dihya_realtime.features.webhooks.queue import Claimed, DeliveryQueue
from dihya_realtime.features.webhooks.sender import Outcome, post

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.webhooks")

PRUNE_EVERY = 600.0
"""Seconds between two prunes of old failed rows."""


class DeliveryWorker:
    """Send what is due, in one background task."""

    def __init__(self, rt: Realtime, queue: DeliveryQueue) -> None:
        self.rt = rt
        self.queue = queue
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: set[str] = set()
        self._last_prune = 0.0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="dihya-webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _run(self) -> None:
        interval = self.rt.settings.webhook_poll_interval
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                while self.run_once() and not self._stopped.is_set():
                    pass
            except Exception:
                log.exception("webhooks: a delivery pass failed; the next one runs as planned")
            self._wake.wait(interval)

    def run_once(self) -> int:
        """One pass: claim a batch and send it; returns how many were claimed."""
        import time

        if time.monotonic() - self._last_prune > PRUNE_EVERY:
            self._last_prune = time.monotonic()
            self.queue.prune_failed()
            self._export_pending()
        batch = self.queue.claim(self.rt.settings.webhook_batch)
        down: dict[str, datetime] = {}
        for item in batch:
            if item.endpoint in down:
                self.queue.release(item, down[item.endpoint])
                continue
            retry_at = self._deliver(item)
            if retry_at is not None:
                down[item.endpoint] = retry_at
        if batch:
            self._export_pending()
        return len(batch)

    def _deliver(self, item: Claimed) -> datetime | None:
        """Send one; ``None`` when delivered, else when its endpoint is worth trying again."""
        endpoint = self.rt.settings.webhooks.get(item.endpoint)
        if endpoint is None:
            outcome = Outcome(False, error="endpoint no longer configured")
        else:
            outcome = post(endpoint.url, endpoint.secret.get_secret_value(), item.body,
                           event_id=item.event_id, event_type=item.type,
                           timeout=self.rt.settings.webhook_timeout,
                           max_response_bytes=self.rt.settings.webhook_max_response_bytes)
        counter = self.rt.metrics.webhook_deliveries
        if outcome.delivered:
            self.queue.sent(item)
            counter.labels(item.endpoint, "sent").inc()
            if item.endpoint in self._failing:
                self._failing.discard(item.endpoint)
                self.rt.audit.record("webhook_recovered", outcome="ok",
                                     details={"endpoint": item.endpoint})
            return None
        error = outcome.error or "failed"
        if item.endpoint not in self._failing:
            self._failing.add(item.endpoint)
            self.rt.audit.record("webhook_failing", outcome="failed",
                                 details={"endpoint": item.endpoint, "error": error,
                                          "event_id": item.event_id, "type": item.type})
        gave_up, next_at = self.queue.retry(item, error)
        if gave_up:
            counter.labels(item.endpoint, "failed").inc()
            self.rt.audit.record("webhook_failed", outcome="gave_up",
                                 details={"endpoint": item.endpoint, "event_id": item.event_id,
                                          "type": item.type, "attempts": item.attempts + 1,
                                          "error": error})
        else:
            counter.labels(item.endpoint, "retry").inc()
        return next_at

    def _export_pending(self) -> None:
        counts = self.queue.pending_counts()
        for name in self.rt.settings.webhooks:
            self.rt.metrics.webhook_pending.labels(name).set(counts.get(name, 0))


__all__ = ["DeliveryWorker"]
