"""Live token expiry: warn before ``exp``, disconnect after ``exp`` + grace unless refreshed.

One background task per process walks a heap of deadlines, so 10,000 connections cost one
sleeping task, not 10,000 timers. A refresh changes ``principal.expires_at``; the stale heap
entries of the old token are then skipped.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING

from dihya_realtime.connections import Connection

if TYPE_CHECKING:
    from dihya_realtime.server import Realtime

log = logging.getLogger("dihya_realtime.expiry")

WARN, EXPIRE = "warn", "expire"


class ExpiryWatch:
    def __init__(self, rt: Realtime, tick: float = 0.5) -> None:
        self.rt = rt
        self.tick = tick
        self._heap: list[tuple[float, int, str, str, float]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False

    def watch(self, conn: Connection) -> None:
        """Schedule the warning and the deadline of ``conn``'s current token."""
        exp = conn.principal.expires_at
        if exp is None:
            return
        settings = self.rt.settings
        with self._lock:
            heapq.heappush(self._heap, (exp - settings.expiry_warning_seconds,
                                        next(self._seq), WARN, conn.sid, exp))
            heapq.heappush(self._heap, (exp + settings.expiry_grace_seconds,
                                        next(self._seq), EXPIRE, conn.sid, exp))
            start = not self._started
            self._started = True
        if start:
            self.rt.socketio.server.start_background_task(self._run)

    def stop(self) -> None:
        self._stopped = True

    def _run(self) -> None:
        sleep = self.rt.socketio.server.sleep
        while not self._stopped:
            try:
                self.run_due(time.time())
            except Exception:
                log.exception("expiry watch failed")
            sleep(self.tick)

    def run_due(self, now: float) -> None:
        """Act on every deadline that has passed (public so tests can drive time)."""
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > now:
                    return
                _, _, kind, sid, exp = heapq.heappop(self._heap)
            conn = self.rt.connections.get(sid)
            if conn is None or conn.principal.expires_at != exp:
                continue  # gone, or refreshed since
            if kind == WARN:
                conn.expiry_warned = True
                self.rt.emit("auth:expiring", {"expires_in": max(0, round(exp - now))}, to=sid)
            else:
                self.rt.audit.record("auth_expired", outcome="disconnected",
                                     details={"expired_at": exp}, **conn.audit_fields())
                self.rt.emit("auth:expired", {"reason": "token_expired"}, to=sid)
                self.rt.disconnect_sid(sid)
