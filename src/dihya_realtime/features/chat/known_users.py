"""Who chat has seen: a client opens a direct message only with a user who connected once.

User ids are the tokens' ``sub``: the server cannot know a user before they connect, and a DM
opened with a made-up name would be a room nobody ever reads. So each connection allowed to chat
records its user in the ``users`` table (insert if absent: an existing row is never rewritten),
and ``chat:dm`` refuses anyone else with ``not_found`` (``details.reason: "unknown_user"``).
The host's Python API (``rt.chat.dm``) is not bound by it: the host knows its users.

A process remembers the users it recorded (at most :data:`CACHE_SIZE`, then it starts over),
so a reconnect costs no write.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dihya_realtime.features.chat.base import ChatStore
from dihya_realtime.features.chat.common import table, utcnow
from dihya_realtime.kernel.errors import not_found
from dihya_realtime.store.models import User

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection

log = logging.getLogger("dihya_realtime.chat")

CACHE_SIZE = 10_000


class KnownUsers:
    """Records the users who connect to chat; tells whether a user id was ever seen."""

    def __init__(self, store: ChatStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._recorded: set[str] = set()

    def connected(self, conn: Connection) -> None:
        """Record ``conn``'s user (a connection that may chat, once per process)."""
        if not conn.can("chat:write") or conn.principal.method == "anonymous":
            return
        user_id = conn.user_id
        with self._lock:
            if user_id in self._recorded:
                return
        now = utcnow()
        try:
            with self.store.write() as s:
                s.execute(self.store.insert()(table(User)).values(
                    id=user_id, name=conn.principal.display_name[:256],
                    roles=list(conn.principal.roles), first_seen=now, last_seen=now,
                ).on_conflict_do_nothing())
        except SQLAlchemyError:
            log.exception("could not record user %s", user_id)
            return
        with self._lock:
            if len(self._recorded) >= CACHE_SIZE:
                self._recorded.clear()
            self._recorded.add(user_id)

    def require_known(self, s: Session, user_id: str) -> None:
        """Raise ``not_found`` unless ``user_id`` connected at least once."""
        with self._lock:
            if user_id in self._recorded:
                return
        if s.scalar(sa.select(User.id).where(User.id == user_id)) is None:
            raise not_found("no such user: they must have signed in once",
                            {"user_id": user_id, "reason": "unknown_user"})


__all__ = ["CACHE_SIZE", "KnownUsers"]
