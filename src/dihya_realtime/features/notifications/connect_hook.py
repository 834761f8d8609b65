"""The connect hook: record who connected and push their badge counts, off the connect path.

Connects are queued and one background task drains the queue in batches (group commit): a
burst of N connects costs a few transactions, not 2·N. SQLite's commit blocks the whole gevent
loop (an fsync), and one per connect was what held the connect rate at a fifth of the bare
server's. A lone connect is not delayed: the drain starts at once and takes whatever has
queued meanwhile. The ``users`` rows it keeps are what ``notify(role=…)`` resolves by default.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dihya_realtime.features.notifications.inbox import Inbox
from dihya_realtime.features.notifications.models import CHUNK
from dihya_realtime.store.models import upsert_users

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.kernel.principal import Principal
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.notifications")

CONNECT_BATCH = CHUNK  # connects handled per transaction by the connect hook


class ConnectHook:
    """Queue each signed-in connection; a background task upserts users and pushes counts."""

    def __init__(self, rt: Realtime, inbox: Inbox) -> None:
        self.rt = rt
        self.inbox = inbox
        self._lock = threading.Lock()
        self._queue: list[tuple[str, Principal]] = []
        self._draining = False

    def on_connect(self, conn: Connection) -> None:
        """Queue the connection and start the drain unless it is already running."""
        if conn.principal.anonymous:
            return
        with self._lock:
            self._queue.append((conn.sid, conn.principal))
            if self._draining:
                return
            self._draining = True
        try:
            self.rt.socketio.server.start_background_task(self._drain)
        except BaseException:
            with self._lock:
                self._draining = False
            raise

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch = self._queue[:CONNECT_BATCH]
                del self._queue[:CONNECT_BATCH]
                if not batch:
                    self._draining = False
                    return
            try:
                self.after_connect_many(batch)
            except Exception:  # after_connect_many logs its own; the drain must go on
                log.exception("connect batch failed")

    def after_connect_many(self, batch: Sequence[tuple[str, Principal]]) -> None:
        """Upsert the users of these connections in one transaction, then push each its
        notification counts (one query for all)."""
        try:
            with self.rt.db.write_transaction() as conn:
                upsert_users(conn, [(p.user_id, p.name, p.roles) for _, p in batch],
                             datetime.now(UTC))
        except Exception:
            log.exception("could not record users %r", sorted({p.user_id for _, p in batch}))
        try:
            counts = self.inbox.counts_many(list(dict.fromkeys(p.user_id for _, p in batch)))
            for sid, principal in batch:
                self.rt.emit("notifications:counts", counts[principal.user_id], to=sid)
        except Exception:
            log.exception("could not push notification counts at connect")
