"""The last hour of one process's metrics: one sample a minute, 60 kept."""

from __future__ import annotations

from dihya_realtime.features.admin.metrics_ring import MinuteSamples
from dihya_realtime.kernel.metrics import Metrics


def test_a_sample_counts_what_happened_since_the_previous_one() -> None:
    metrics = Metrics()
    ring = MinuteSamples(metrics)
    ring.sample(now=1000.0)
    metrics.events.labels(event="chat:send", outcome="ok").inc(110)
    metrics.events.labels(event="chat:send", outcome="rate_limited").inc(10)
    metrics.publications.inc(30)
    metrics.connections.set(7)

    sample = ring.sample(now=1060.0)

    assert (sample.events, sample.errors, sample.publications, sample.connections) == (
        120, 10, 30, 7)
    assert sample.events_per_s == 2.0 and sample.publications_per_s == 0.5
    assert ring.sample(now=1120.0).events == 0  # nothing new in the next minute


def test_the_ring_keeps_the_last_hour_only() -> None:
    metrics = Metrics()
    ring = MinuteSamples(metrics)
    for minute in range(90):
        metrics.events.labels(event="whoami", outcome="ok").inc(minute)
        ring.sample(now=60.0 * (minute + 1))

    kept = ring.samples()

    assert len(kept) == 60
    assert [s["events"] for s in kept] == list(range(30, 90))


def test_the_minute_in_progress_is_shown_without_being_kept() -> None:
    metrics = Metrics()
    ring = MinuteSamples(metrics)
    ring.sample(now=100.0)
    metrics.events.labels(event="whoami", outcome="forbidden").inc(3)

    current = ring.current(now=130.0)

    assert (current["events"], current["errors"]) == (3, 3)
    assert current["events_per_s"] == 0.1
    assert len(ring.samples()) == 1
