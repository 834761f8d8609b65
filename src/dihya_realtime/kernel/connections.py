"""The connections open on this process and what the server knows about each."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dihya_realtime.kernel.permissions import PermissionSet
from dihya_realtime.kernel.principal import Principal


@dataclass(slots=True, eq=False)
class Connection:
    """One Socket.IO connection: who it is, where from, and its per-connection state."""

    sid: str
    principal: Principal
    permissions: PermissionSet
    remote_addr: str | None
    origin: str | None
    user_agent: str | None
    connected_at: float = field(default_factory=time.time)
    strikes: int = 0
    channels: set[str] = field(default_factory=set)
    expiry_warned: bool = False
    namespace: str = "/"
    eio_sid: str | None = None  # the Engine.IO session carrying it (see transport/sessions.py)

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def can(self, permission: str | None) -> bool:
        return self.permissions.allows(permission)

    def audit_fields(self) -> dict[str, Any]:
        return {
            "user_id": self.principal.user_id,
            "sid": self.sid,
            "remote_addr": self.remote_addr,
            "origin": self.origin,
            "user_agent": self.user_agent,
        }


class ConnectionTable:
    """sid → :class:`Connection`, and user id → the sids of that user on this process."""

    def __init__(self) -> None:
        self._by_sid: dict[str, Connection] = {}
        self._by_user: dict[str, set[str]] = {}

    def add(self, conn: Connection) -> None:
        self._by_sid[conn.sid] = conn
        self._by_user.setdefault(conn.user_id, set()).add(conn.sid)

    def remove(self, sid: str) -> Connection | None:
        conn = self._by_sid.pop(sid, None)
        if conn is not None:
            sids = self._by_user.get(conn.user_id)
            if sids is not None:
                sids.discard(sid)
                if not sids:
                    del self._by_user[conn.user_id]
        return conn

    def get(self, sid: str) -> Connection | None:
        return self._by_sid.get(sid)

    def of_user(self, user_id: str) -> list[Connection]:
        return [self._by_sid[s] for s in self._by_user.get(user_id, ()) if s in self._by_sid]

    def replace_principal(self, conn: Connection, principal: Principal,
                          permissions: PermissionSet) -> None:
        conn.principal = principal
        conn.permissions = permissions
        conn.expiry_warned = False

    def __len__(self) -> int:
        return len(self._by_sid)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._by_sid.values()))
