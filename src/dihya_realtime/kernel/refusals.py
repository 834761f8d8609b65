"""Connect refusals in the audit trail as counted summaries, never one row per attempt.

A client refused at connect can retry as fast as the network allows: one hash-chained audit
row per attempt let one attacker write thousands of rows a second (issue 12: 4,095
``connect_refused`` rows in 10 s), growing the table and drowning real events. Here the
first refusal per (client address, reason) in a window gets its row (``connect_refused``,
with the request's fields, so the trail still says who and why at once); the others are only
counted, and when the window closes one ``connect_refused_summary`` row says how many there
were (``details.count``, including the first). Keys are bounded: past ``max_keys`` the
address is folded into ``"*"`` so a spread of addresses cannot grow memory either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Recorder = Callable[..., None]
"""``AuditLog.record``: ``record(type, *, outcome, details, **fields)``."""


@dataclass(slots=True)
class _Window:
    opened: float
    last: float
    outcome: str
    count: int = 1
    fields: dict[str, Any] = field(default_factory=dict)


class RefusalAudit:
    """Counts refusals per (address, reason) and window; see the module docstring."""

    def __init__(self, record: Recorder, window: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._record = record
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], _Window] = {}
        self._flushed = clock()

    def refused(self, reason: str, *, remote_addr: str | None, outcome: str | None = None,
                details: dict[str, Any] | None = None, **fields: Any) -> None:
        """Count one refusal; write its row if it opens a window for its (address, reason).

        ``outcome`` (default ``reason``) is the error code the client was given;
        ``details.reason`` is always ``reason``."""
        now = self._clock()
        key = (remote_addr or "?", reason)
        current = self._open.get(key)
        if (now - self._flushed >= min(1.0, self.window)  # not a scan per refusal in a storm
                or (current is not None and now - current.opened >= self.window)):
            self.flush(now)
        with self._lock:
            current = self._open.get(key)
            if current is None and len(self._open) >= self.max_keys:
                key = ("*", reason)
                current = self._open.get(key)
            if current is not None:
                current.count += 1
                current.last = now
                return
            kept = {k: v for k, v in fields.items() if k in ("origin", "user_agent", "user_id")}
            kept["remote_addr"] = None if key[0] == "*" else remote_addr
            self._open[key] = _Window(opened=now, last=now, outcome=outcome or reason,
                                      fields=kept)
        self._record("connect_refused", outcome=outcome or reason,
                      details={**(details or {}), "reason": reason},
                      remote_addr=remote_addr, **fields)

    def flush(self, now: float | None = None, *, everything: bool = False) -> int:
        """Close the windows that are over (all with ``everything``); returns rows written."""
        now = self._clock() if now is None else now
        with self._lock:
            self._flushed = now
            done = [(k, w) for k, w in self._open.items()
                    if everything or now - w.opened >= self.window]
            for key, _ in done:
                del self._open[key]
        written = 0
        for (address, reason), win in done:
            if win.count > 1:
                self._record("connect_refused_summary", outcome=win.outcome,
                             details={"reason": reason, "count": win.count,
                                      "window_seconds": self.window,
                                      "seconds": round(win.last - win.opened, 3),
                                      **({"addresses": "many"} if address == "*" else {})},
                             **win.fields)
                written += 1
        return written

    def __len__(self) -> int:
        return len(self._open)
