"""One rule for every broker topic a process watches: from first local use to a linger after
the last.

Interest routing (issue 14) means a process receives a channel, a user's topic or a room's
relays only while it watches them. Each owner of such a topic (channels, users, relayed rooms)
must tell the broker when the first local use starts, and stop watching once the last one is
gone, after ``DIHYA_RT_INTEREST_LINGER`` seconds, so that a page reload does not cost a round
of SUNSUBSCRIBE / SSUBSCRIBE. :class:`Interest` holds that rule once; the owner says how to
name the topic and how to tell whether a key is still in use, and calls :meth:`acquire`
*after* registering the use (so an unwatch decided under ``lock`` either saw it, or came
first and the watch subscribes again) and :meth:`release` after ending it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from dihya_realtime.kernel.sweeper import Sweeper


class Interest:
    """Watch ``topic_of(key)`` on first use, unwatch it a linger after ``in_use(key)`` ends."""

    def __init__(self, name: str, broker: Any, linger: float, *,
                 in_use: Callable[[str], bool], topic_of: Callable[[str], str] = str,
                 server: Callable[[], Any], lock: Any = None,
                 on_idle: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.broker = broker
        self.linger = linger
        self.lock = lock if lock is not None else threading.RLock()
        self._in_use = in_use
        self._topic_of = topic_of
        self._server = server  # the Socket.IO server (its tasks and sleep), made after us
        self._on_idle = on_idle
        self._idle: dict[str, float] = {}  # key → when it may be unwatched (monotonic)
        self._sweeper: Sweeper | None = None
        self._sweeper_lock = threading.Lock()

    def acquire(self, keys: str | Iterable[str]) -> None:
        """A use of each of ``keys`` (one or several) was registered: returns once the broker
        delivers their topics here (several: one wait for all). Raises what ``broker.watch``
        raises (``BrokerUnavailable``); the topics stay watched until :meth:`release`."""
        names = [keys] if isinstance(keys, str) else list(keys)
        with self.lock:
            for key in names:
                self._idle.pop(key, None)
        self.broker.watch(self._topic_of(keys) if isinstance(keys, str)
                          else [self._topic_of(key) for key in names])

    def release(self, key: str) -> None:
        """A use of ``key`` ended (or was never completed)."""
        with self.lock:
            if self._in_use(key):
                return
            if self._on_idle is not None:
                self._on_idle(key)
            if self.linger <= 0:
                self.broker.unwatch(self._topic_of(key))
                return
            self._idle[key] = time.monotonic() + self.linger
        self._ensure_sweeper().wake()

    def tick(self, now: float | None = None) -> bool:
        """Unwatch what has been unused for the linger and still is; returns whether any
        remain to look at (the sweeper's contract). Public so tests can drive time."""
        now = time.monotonic() if now is None else now
        with self.lock:
            for key, due in list(self._idle.items()):
                if due > now:
                    continue
                del self._idle[key]
                if not self._in_use(key):
                    self.broker.unwatch(self._topic_of(key))
            return bool(self._idle)

    def lingering(self, key: str) -> bool:
        with self.lock:
            return key in self._idle

    def _ensure_sweeper(self) -> Sweeper:
        with self._sweeper_lock:
            if self._sweeper is None:
                server = self._server()
                self._sweeper = Sweeper(self.name, min(1.0, max(self.linger / 4, 0.05)),
                                        self.tick, spawn=server.start_background_task,
                                        sleep=lambda seconds: server.sleep(seconds))
            return self._sweeper


__all__ = ["Interest"]
