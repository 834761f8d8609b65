"""``rt.admin``: what the console shows and the one thing it does (disconnect a user).

A facade over :mod:`.snapshot` (connections and channels, every process), :mod:`.audit_trail`
(the stored trail, ``audit verify``) and :mod:`.metrics_ring` (this process's last hour).
Who may call it is the events' business (``admin:read`` / ``admin:write``).
"""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from dihya_realtime.features.admin.audit_trail import TrailVerifier, audit_page
from dihya_realtime.features.admin.metrics_ring import MINUTE, MinuteSamples
from dihya_realtime.features.admin.snapshot import ClusterSnapshot
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.sweeper import Sweeper

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

PRESENCE_SHOWN = 20
"""Presence members listed per channel (the count is whole)."""
AUDIT_FLUSH_WAIT = 2.0
"""Seconds a read of the trail waits for this process's queued records to be written."""


class AdminService:
    def __init__(self, rt: Realtime, node: str, *, sample_interval: float = MINUTE) -> None:
        self.rt = rt
        self.node = node  # this process's id, as presence entries carry it
        self.snapshots = ClusterSnapshot(rt, self.node)
        self.minutes = MinuteSamples(rt.metrics)
        self.sample_interval = sample_interval
        self._sampler: Sweeper | None = None
        # one walk at a time; between pages the event loop serves the other connections
        self.verifier = TrailVerifier(rt.db, pause=lambda: rt.socketio.sleep(0))

    def attach(self) -> None:
        """Answer other processes' snapshot requests; sample metrics while anyone is connected
        (an idle process runs no task)."""
        self.snapshots.attach()
        self.rt.on_connect(self._wake_sampler)

    def _wake_sampler(self, conn: Connection) -> None:
        if self._sampler is None:
            server = self.rt.socketio
            self._sampler = Sweeper("admin metrics", self.sample_interval, self._sample,
                                    spawn=server.start_background_task,
                                    sleep=lambda seconds: server.sleep(seconds))
        self._sampler.wake()

    def _sample(self) -> bool:
        self.minutes.sample()
        return len(self.rt.connections) > 0

    # -- what the console reads
    def connections(self, user_id: str | None = None) -> dict[str, Any]:
        processes = self.snapshots.gather()
        users: dict[str, dict[str, Any]] = {}
        for proc in processes:
            if user_id is not None:
                proc["connections"] = [c for c in proc["connections"]
                                       if c["user_id"] == user_id]
            seen_here: set[str] = set()
            for c in proc["connections"]:
                entry = users.setdefault(c["user_id"], {
                    "user_id": c["user_id"], "name": c["name"], "connections": 0,
                    "processes": 0})
                entry["connections"] += 1
                if c["user_id"] not in seen_here:
                    seen_here.add(c["user_id"])
                    entry["processes"] += 1
        ranked = sorted(users.values(), key=lambda u: (-u["connections"], u["user_id"]))
        return {"clustered": self.snapshots.clustered, "processes": processes, "users": ranked}

    def channels(self, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        processes = self.snapshots.gather()
        subscribers: dict[str, int] = defaultdict(int)
        where: dict[str, int] = defaultdict(int)
        for proc in processes:
            for ch in proc["channels"]:
                subscribers[ch["channel"]] += int(ch["subscribers"])
                where[ch["channel"]] += 1
        ranked = sorted(subscribers, key=lambda name: (-subscribers[name], name))
        page = ranked[offset:offset + limit]
        return {"clustered": self.snapshots.clustered, "total": len(ranked),
                "truncated": any(p["truncated"] for p in processes),
                "channels": [{"channel": name, "subscribers": subscribers[name],
                              "processes": where[name], **self._presence(name)}
                             for name in page]}

    def _presence(self, channel: str) -> dict[str, Any]:
        try:
            members = self.rt.presence(channel)
        except RealtimeError as exc:
            if exc.code is ErrorCode.NOT_FOUND:  # presence is off for the namespace
                return {"presence": None, "presence_count": None}
            raise
        shown = [{"user_id": m["user_id"], "name": m.get("name")}
                 for m in members[:PRESENCE_SHOWN]]
        return {"presence": shown, "presence_count": len(members)}

    def audit(self, *, filters: dict[str, str | None], before_id: int | None,
              limit: int) -> dict[str, Any]:
        self._require_audit_db()
        self.rt.audit.flush(AUDIT_FLUSH_WAIT)  # this process's latest records are on the page
        return audit_page(self.rt.db, filters=filters, before_id=before_id, limit=limit)

    def verify(self) -> dict[str, Any]:
        self._require_audit_db()
        self.rt.audit.flush(AUDIT_FLUSH_WAIT)  # what this process recorded so far is walked
        return self.verifier.status()

    def _require_audit_db(self) -> None:
        if not self.rt.settings.audit_db:
            raise RealtimeError(ErrorCode.NOT_FOUND, "the audit trail is not stored in the "
                                "database here (DIHYA_RT_AUDIT_DB is off)")

    def metrics(self) -> dict[str, Any]:
        return {"node": self.node, "host": socket.gethostname(), "pid": os.getpid(),
                "interval": self.sample_interval, "samples": self.minutes.samples(),
                "current": self.minutes.current()}

    # -- what the console does
    def disconnect_user(self, user_id: str, reason: str) -> dict[str, Any]:
        """Every connection of ``user_id``, on every process (``rt.disconnect_user``)."""
        self.rt.disconnect_user(user_id, reason)
        return {"user_id": user_id, "requested": True}
