"""Prometheus metrics of one Realtime instance (its own registry, so apps and tests never clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "dihya_rt_connections", "Open Socket.IO connections", registry=self.registry
        )
        self.events = Counter(
            "dihya_rt_events_total",
            "Client events handled, by event name and outcome (ok or an error code)",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dihya_rt_event_seconds",
            "Time to handle a client event",
            ["event"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "dihya_rt_auth_failures_total",
            "Refused connections, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "dihya_rt_rate_limited_total",
            "Rate-limited events and connections, by scope",
            ["scope"],
            registry=self.registry,
        )
        self.publications = Counter(
            "dihya_rt_publications_total", "Publications made through this process",
            registry=self.registry,
        )
        # the transactional publish's outbox (kernel/outbox)
        self.outbox_rows = Gauge(
            "dihya_rt_outbox_rows", "Outbox rows by state (pending, failed), as last counted",
            ["state"], registry=self.registry,
        )
        self.outbox_published = Counter(
            "dihya_rt_outbox_published_total", "Outbox rows this process's relay published",
            registry=self.registry,
        )
        self.outbox_failed = Counter(
            "dihya_rt_outbox_failed_total",
            "Outbox rows this process's relay set aside as failed (poison rows)",
            registry=self.registry,
        )

        # webhooks (features/webhooks): by endpoint name, never its URL nor secret
        self.webhook_deliveries = Counter(
            "dihya_rt_webhook_deliveries_total",
            "Webhook delivery attempts, by endpoint and outcome (sent, retry, failed, dropped)",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.webhook_pending = Gauge(
            "dihya_rt_webhook_pending",
            "Webhook deliveries waiting in the queue (as last seen by this process), by endpoint",
            ["endpoint"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
