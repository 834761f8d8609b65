"""Who is connected where: this process's snapshot, and every process's over the control bus.

Each process knows only its own connections (``rt.connections``) and the channels they are
subscribed to (``Connection.channels``). With Redis, :class:`ClusterSnapshot` asks every
process through the control bus (``admin.snapshot``, :mod:`dihya_realtime.broker.control`)
and collects the answers (``admin.snapshot_reply``, tagged with the request's id) for
``DIHYA_RT_ADMIN_GATHER_TIMEOUT`` seconds: a process that does not answer in time is left
out, never waited for. Without Redis there is one process, and its snapshot is the answer.

Bounded: a process lists at most ``DIHYA_RT_ADMIN_MAX_CONNECTIONS`` connections and
``DIHYA_RT_ADMIN_MAX_CHANNELS`` channels (the busiest first) and says ``truncated``; the
counts are always whole.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from dihya_realtime.kernel.errors import RealtimeError

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.admin")

SNAPSHOT_ACTION = "admin.snapshot"
REPLY_ACTION = "admin.snapshot_reply"
MAX_PENDING = 16
"""Gathers in flight on one process at once; beyond, the oldest is forgotten."""
USER_AGENT_CHARS = 160


def local_snapshot(rt: Realtime, node: str) -> dict[str, Any]:
    """This process: its connections (oldest first) and its channels' subscriber counts."""
    settings = rt.settings
    conns = sorted(rt.connections, key=lambda c: c.connected_at)
    channels: Counter[str] = Counter()
    for conn in conns:
        channels.update(conn.channels)
    busiest = channels.most_common(settings.admin_max_channels)
    listed = conns[:settings.admin_max_connections]
    return {
        "node": node,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "at": time.time(),
        "connection_count": len(conns),
        "channel_count": len(channels),
        "truncated": len(conns) > len(listed) or len(channels) > len(busiest),
        "connections": [{
            "sid": c.sid, "user_id": c.user_id, "name": c.principal.name,
            "roles": list(c.principal.roles), "remote_addr": c.remote_addr,
            "user_agent": (c.user_agent or "")[:USER_AGENT_CHARS] or None,
            "connected_at": c.connected_at, "channels": len(c.channels),
        } for c in listed],
        "channels": [{"channel": name, "subscribers": n} for name, n in busiest],
    }


class ClusterSnapshot:
    """Every process's :func:`local_snapshot`, asked for over the control bus."""

    def __init__(self, rt: Realtime, node: str) -> None:
        self.rt = rt
        self.node = node
        self._lock = threading.Lock()
        self._pending: dict[str, list[dict[str, Any]]] = {}

    def attach(self) -> None:
        """Answer other processes' requests, and hear the answers to this one's."""
        self.rt.control.register(SNAPSHOT_ACTION, self._answer)
        self.rt.control.register(REPLY_ACTION, self._collect)

    @property
    def clustered(self) -> bool:
        return self.rt.settings.redis_url is not None

    def gather(self) -> list[dict[str, Any]]:
        """One snapshot per process that answered in time (this one's always), by node.

        With the broker unavailable, this process's alone (the caller shows it as such).
        """
        own = local_snapshot(self.rt, self.node)
        if not self.clustered:
            return [own]
        request_id = uuid.uuid4().hex
        with self._lock:
            while len(self._pending) >= MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[request_id] = []
        try:
            self.rt.control.send(SNAPSHOT_ACTION, request_id=request_id, node=self.node)
        except RealtimeError:
            log.warning("admin snapshot: the broker is unavailable; this process only")
            with self._lock:
                self._pending.pop(request_id, None)
            return [own]
        time.sleep(self.rt.settings.admin_gather_timeout)
        with self._lock:
            answers = self._pending.pop(request_id, [])
        others = {a["node"]: a for a in answers if a.get("node") != self.node}
        return [own, *sorted(others.values(), key=lambda s: (s["host"], s["pid"]))]

    def _answer(self, data: dict[str, Any]) -> None:
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or len(request_id) > 64:
            return
        if data.get("node") == self.node:
            return  # the asker adds its own snapshot
        self.rt.control.send(REPLY_ACTION, request_id=request_id,
                             snapshot=local_snapshot(self.rt, self.node))

    def _collect(self, data: dict[str, Any]) -> None:
        snapshot = data.get("snapshot")
        if not isinstance(snapshot, dict) or not isinstance(snapshot.get("node"), str):
            return
        with self._lock:
            answers = self._pending.get(str(data.get("request_id")))
            if answers is not None and len(answers) < 1000:
                answers.append(snapshot)
