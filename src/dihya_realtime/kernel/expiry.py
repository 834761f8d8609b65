"""Live token expiry: warn before ``exp``, disconnect after ``exp`` + grace unless refreshed.

One background task per process walks a heap of deadlines, so 10,000 connections cost one
sleeping task, not 10,000 timers. A refresh or a disconnect does not search the heap (that
would cost a scan of every entry): it retires the connection's current schedule, whose
entries are then skipped when they fall due. So that retired entries cannot pile up (a busy
server sees far more connections come and go than a token lives), the heap is rebuilt
without them whenever they make up more than half of it: each rebuild removes at least as
many entries as it keeps, so its cost is paid for by the watches that made them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING

from dihya_realtime.kernel.connections import Connection
from dihya_realtime.kernel.sweeper import Sweeper

if TYPE_CHECKING:
    from dihya_realtime.kernel.host import Host

log = logging.getLogger("dihya_realtime.expiry")

WARN, EXPIRE = "warn", "expire"

Deadline = tuple[float, int, str, str, int, float]
"""``(due, seq, kind, sid, schedule, exp)``: ``schedule`` names the watch that made it."""


class ExpiryWatch:
    def __init__(self, rt: Host, tick: float = 0.5) -> None:
        self.rt = rt
        self.tick = tick
        self._heap: list[Deadline] = []
        self._seq = itertools.count()
        self._schedules: dict[str, tuple[int, int]] = {}  # sid → (schedule, entries in heap)
        self._retired = 0  # heap entries whose schedule was replaced or forgotten
        self._lock = threading.Lock()
        self._sweeper: Sweeper | None = None

    def __len__(self) -> int:
        """Entries in the heap, retired ones included (at most twice the live ones)."""
        return len(self._heap)

    def watch(self, conn: Connection) -> None:
        """Schedule the warning and the deadline of ``conn``'s current token.

        Any earlier schedule of the connection (the token before a refresh) is retired.
        """
        exp = conn.principal.expires_at
        with self._lock:
            self._retire(conn.sid)
            if exp is None:
                self._compact()
                return
            settings = self.rt.settings
            schedule = next(self._seq)
            heapq.heappush(self._heap, (exp - settings.expiry_warning_seconds,
                                        next(self._seq), WARN, conn.sid, schedule, exp))
            heapq.heappush(self._heap, (exp + settings.expiry_grace_seconds,
                                        next(self._seq), EXPIRE, conn.sid, schedule, exp))
            self._schedules[conn.sid] = (schedule, 2)
            self._compact()
            sweeper = self._ensure_sweeper()
        sweeper.wake()

    def forget(self, sid: str) -> None:
        """The connection is gone: its deadlines are retired (called on disconnect)."""
        with self._lock:
            self._retire(sid)
            self._compact()

    def _retire(self, sid: str) -> None:
        current = self._schedules.pop(sid, None)
        if current is not None:
            self._retired += current[1]

    def _compact(self) -> None:
        """Rebuild the heap without retired entries once they are more than half of it."""
        if self._retired * 2 <= len(self._heap):
            return
        schedules = self._schedules
        self._heap = [d for d in self._heap
                      if schedules.get(d[3], (None,))[0] == d[4]]
        heapq.heapify(self._heap)
        self._retired = 0

    def stop(self) -> None:
        with self._lock:
            if self._sweeper is not None:
                self._sweeper.stop()

    def _ensure_sweeper(self) -> Sweeper:
        """One persistent task per process, from the first watched token on (built on first
        use, under the lock: the Socket.IO server, whose sleep it uses, is made after this
        object)."""
        if self._sweeper is None:
            server = self.rt.socketio.server
            self._sweeper = Sweeper("token expiry", self.tick, self._pass,
                                    spawn=server.start_background_task,
                                    sleep=lambda seconds: server.sleep(seconds),
                                    persistent=True)
        return self._sweeper

    def _pass(self) -> bool:
        self.run_due(time.time())
        return True

    def run_due(self, now: float) -> None:
        """Act on every deadline that has passed (public so tests can drive time)."""
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > now:
                    return
                _, _, kind, sid, schedule, exp = heapq.heappop(self._heap)
                current = self._schedules.get(sid)
                if current is None or current[0] != schedule:
                    self._retired -= 1
                    continue  # refreshed or gone since
                if current[1] == 1:
                    del self._schedules[sid]
                else:
                    self._schedules[sid] = (schedule, current[1] - 1)
            conn = self.rt.connections.get(sid)
            if conn is None:
                continue
            if kind == WARN:
                conn.expiry_warned = True
                self.rt.emit("auth:expiring", {"expires_in": max(0, round(exp - now))}, to=sid)
            else:
                self.rt.audit.record("auth_expired", outcome="disconnected",
                                     details={"expired_at": exp}, **conn.audit_fields())
                self.rt.emit("auth:expired", {"reason": "token_expired"}, to=sid)
                self.rt.disconnect_sid(sid)
