"""Key metrics of this process over the last hour: one sample a minute, 60 kept.

Prometheus keeps counters, not their history; the console wants "what happened in the last
hour" without a Prometheus server. :class:`MinuteSamples` reads this process's counters
once a minute and keeps the differences in a ring of 60 entries, so its memory is bounded
whatever the traffic. Per process: with several processes, each shows its own (the console
says which), as Prometheus would before aggregation.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from dihya_realtime.kernel.metrics import Metrics

SAMPLES = 60
"""Minutes kept: one hour."""
MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class Totals:
    """The counters' values at one moment (cumulative since the process started)."""

    events: float
    errors: float
    publications: float


@dataclass(frozen=True, slots=True)
class Sample:
    """One minute: connections open at its end, and what happened during it."""

    at: float
    """UNIX seconds at the end of the minute."""
    connections: int
    events: int
    errors: int
    publications: int
    events_per_s: float
    publications_per_s: float


def read_totals(metrics: Metrics) -> Totals:
    """The event counter (by outcome: anything but ``ok`` is an error) and publications."""
    events = errors = 0.0
    for family in metrics.events.collect():
        for s in family.samples:
            if not s.name.endswith("_total"):
                continue
            events += s.value
            if s.labels.get("outcome") != "ok":
                errors += s.value
    publications = 0.0
    for family in metrics.publications.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                publications += s.value
    return Totals(events, errors, publications)


def read_connections(metrics: Metrics) -> int:
    for family in metrics.connections.collect():
        for s in family.samples:
            return int(s.value)
    return 0


class MinuteSamples:
    """A ring of per-minute samples of one :class:`Metrics`; :meth:`sample` takes one."""

    def __init__(self, metrics: Metrics, size: int = SAMPLES) -> None:
        self.metrics = metrics
        self._ring: deque[Sample] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._last: tuple[float, Totals] = (time.time(), read_totals(metrics))

    def sample(self, now: float | None = None) -> Sample:
        """Record what happened since the previous sample (normally a minute ago)."""
        now = time.time() if now is None else now
        totals = read_totals(self.metrics)
        with self._lock:
            entry = self._since_last(now, totals)
            self._ring.append(entry)
            self._last = (now, totals)
        return entry

    def samples(self) -> list[dict[str, Any]]:
        """The kept samples, oldest first."""
        with self._lock:
            return [asdict(s) for s in self._ring]

    def current(self, now: float | None = None) -> dict[str, Any]:
        """The minute in progress, not yet sampled (the console's "now")."""
        now = time.time() if now is None else now
        totals = read_totals(self.metrics)
        with self._lock:
            return asdict(self._since_last(now, totals))

    def _since_last(self, now: float, totals: Totals) -> Sample:
        then, before = self._last
        span = max(now - then, 1e-6)
        events = max(0, round(totals.events - before.events))
        publications = max(0, round(totals.publications - before.publications))
        return Sample(at=now, connections=read_connections(self.metrics), events=events,
                      errors=max(0, round(totals.errors - before.errors)),
                      publications=publications, events_per_s=round(events / span, 3),
                      publications_per_s=round(publications / span, 3))
