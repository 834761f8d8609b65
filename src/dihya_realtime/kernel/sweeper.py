"""One way to run periodic work: a task that lives while there is something to do.

Typing indicators expire, idle documents get compacted, unauthenticated sessions time out,
tokens pass their deadline: each is "every ``interval`` seconds, look at what is due". Written
by hand, each copy had to get the same details right (one task per process, no task at all
when idle, a failing pass logged and not fatal, a clean stop), and they drifted.

:class:`Sweeper` holds those details once. ``wake()`` starts the task if it is not running;
``tick()`` (the feature's work) returns whether anything is left to watch, and the task ends
when nothing is, so an idle server runs no background task. ``persistent=True`` keeps it
running until :meth:`stop` (for work that has no "nothing left" moment).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dihya_realtime.sweeper")

Spawn = Callable[..., Any]
Sleep = Callable[[float], Any]


class Sweeper:
    """Run ``tick()`` every ``interval`` seconds in one background task, while it has work."""

    def __init__(self, name: str, interval: float, tick: Callable[[], bool], *,
                 spawn: Spawn, sleep: Sleep, persistent: bool = False) -> None:
        if interval <= 0:
            raise ValueError(f"sweeper {name!r}: interval must be > 0, got {interval!r}")
        self.name = name
        self.interval = interval
        self._tick = tick
        self._spawn = spawn
        self._sleep = sleep
        self._persistent = persistent
        self._lock = threading.Lock()
        self._running = False
        self._stopped = False
        self._woken = False
        self.passes = 0
        """Completed passes (tests and metrics read it)."""

    @property
    def running(self) -> bool:
        return self._running

    def wake(self) -> bool:
        """Start the task unless it runs already (or the sweeper was stopped); returns
        whether this call started it."""
        with self._lock:
            self._woken = True  # work arrived: a task about to end must do one more pass
            if self._running or self._stopped:
                return False
            self._running = True
        try:
            self._spawn(self._run)
        except BaseException:
            with self._lock:
                self._running = False
            raise
        return True

    def stop(self) -> None:
        """End the task after its current sleep; :meth:`wake` does nothing afterwards."""
        with self._lock:
            self._stopped = True

    def run_once(self) -> bool:
        """One pass now, in the caller (tests); returns what ``tick`` returned."""
        try:
            more = bool(self._tick())
        except Exception:
            log.exception("sweeper %s: a pass failed; the next one runs as planned", self.name)
            more = True
        self.passes += 1
        return more

    def _run(self) -> None:
        try:
            while True:
                self._sleep(self.interval)
                with self._lock:
                    if self._stopped:
                        return
                    self._woken = False
                more = self.run_once()
                with self._lock:
                    if self._stopped or not (more or self._persistent or self._woken):
                        return
        finally:
            with self._lock:
                self._running = False


__all__ = ["Sweeper"]
