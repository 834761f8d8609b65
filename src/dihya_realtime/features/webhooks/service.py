"""The webhooks feature's facade: hears the domain events, queues them, sends a test event.

What an endpoint gets is decided here: the event types it asked for (``events`` in
``DIHYA_RT_WEBHOOKS``). ``channel.occupied`` / ``channel.vacated`` are derived from the
per-connection ``channel.subscribed`` / ``channel.unsubscribed`` through :mod:`.occupancy`
(cluster-wide, one event per transition); the other types are queued as they are told. Queuing
happens in the thread that emitted (a database insert), so an event told is an event owed;
sending is the worker's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dihya_realtime.features.webhooks.occupancy import (
    LocalOccupancy,
    Occupancy,
    RedisOccupancy,
    redis_client,
)
from dihya_realtime.features.webhooks.queue import DeliveryQueue, event_body
from dihya_realtime.features.webhooks.sender import post
from dihya_realtime.features.webhooks.worker import DeliveryWorker
from dihya_realtime.kernel.domain_events import CHANNEL_SUBSCRIBED, CHANNEL_UNSUBSCRIBED

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.webhooks")

TEST_EVENT = "webhook.test"
OCCUPANCY_EVENTS = ("channel.occupied", "channel.vacated")


class WebhookService:
    """``rt.webhooks``: the endpoints of ``DIHYA_RT_WEBHOOKS`` and their delivery queue."""

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.endpoints = rt.settings.webhooks
        self.queue = DeliveryQueue(rt)
        self.worker = DeliveryWorker(rt, self.queue)
        self._occupancy: Occupancy | None = None

    def wanting(self, type_: str) -> list[str]:
        """The endpoints that asked for ``type_``."""
        return [name for name, ep in self.endpoints.items() if type_ in ep.events]

    @property
    def occupancy(self) -> Occupancy:
        if self._occupancy is None:
            s = self.rt.settings
            if s.redis_url:
                cluster = bool(getattr(self.rt.broker, "cluster", False))
                self._occupancy = RedisOccupancy(redis_client(s.redis_url, cluster),
                                                 s.redis_prefix)
            else:
                self._occupancy = LocalOccupancy()
        return self._occupancy

    def start(self) -> None:
        """Listen to the domain events and start the worker (only with endpoints)."""
        if not self.endpoints:
            return
        self.rt.domain_events.listen(self.on_domain_event)
        self.rt.broker.add_node_reaped_hook(self.node_reaped)
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def on_domain_event(self, type_: str, data: dict[str, Any]) -> None:
        """A domain event (``rt.domain_events``): queue it for the endpoints that want it."""
        if type_ in (CHANNEL_SUBSCRIBED, CHANNEL_UNSUBSCRIBED):
            self._occupancy_event(type_, data)
            return
        self.publish(type_, data)

    def _occupancy_event(self, type_: str, data: dict[str, Any]) -> None:
        # counted when either transition is wanted: a vacated needs the adds before it
        if not any(self.wanting(kind) for kind in OCCUPANCY_EVENTS):
            return
        subscribed = type_ == CHANNEL_SUBSCRIBED
        channel = str(data["channel"])
        member = f"{data.get('node_id', '')}|{data['sid']}"
        if subscribed:
            changed = self.occupancy.add(channel, member)
        else:
            changed = self.occupancy.remove(channel, member)
        kind = "channel.occupied" if subscribed else "channel.vacated"
        wanted = self.wanting(kind)
        if changed and wanted:
            self.queue.enqueue(kind, {"channel": channel}, wanted)
            self.worker.wake()

    def node_reaped(self, node_id: str) -> None:
        """A dead process's subscriptions are gone (this process reaped it, the only one):
        each channel it leaves empty gets its ``channel.vacated``."""
        wanted = self.wanting("channel.vacated")
        if not wanted:
            return
        vacated = self.occupancy.reap(node_id)
        for channel in vacated:
            self.queue.enqueue("channel.vacated", {"channel": channel}, wanted)
        if vacated:
            log.info("node %s reaped: %d channels vacated", node_id, len(vacated))
            self.worker.wake()

    def publish(self, type_: str, data: dict[str, Any]) -> str | None:
        """Queue one event for every endpoint that wants it; returns its id (or ``None``)."""
        wanted = self.wanting(type_)
        if not wanted:
            return None
        event_id = self.queue.enqueue(type_, data, wanted)
        self.worker.wake()
        return event_id

    def send_test(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """POST a ``webhook.test`` event now to ``endpoint`` (every endpoint by default),
        outside the queue; returns each endpoint's outcome."""
        names = [endpoint] if endpoint is not None else list(self.endpoints)
        results = []
        for name in names:
            ep = self.endpoints[name]
            event_id, body = event_body(TEST_EVENT, {"endpoint": name})
            outcome = post(ep.url, ep.secret.get_secret_value(), body, event_id=event_id,
                           event_type=TEST_EVENT, timeout=self.rt.settings.webhook_timeout,
                           max_response_bytes=self.rt.settings.webhook_max_response_bytes)
            self.rt.metrics.webhook_deliveries.labels(
                name, "sent" if outcome.delivered else "test_failed").inc()
            results.append({"endpoint": name, "id": event_id, "delivered": outcome.delivered,
                            "status": outcome.status, "error": outcome.error})
        return results


__all__ = ["OCCUPANCY_EVENTS", "TEST_EVENT", "WebhookService"]
