"""Writing outbox rows in the host's session, and the handlers that give each kind its effect."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, scoped_session

from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.store.outbox import OUTBOX_TABLE, insert_row

if TYPE_CHECKING:
    from dihya_realtime.kernel.audit import AuditLog
    from dihya_realtime.kernel.metrics import Metrics
    from dihya_realtime.kernel.outbox.relay import Relay
    from dihya_realtime.kernel.settings import Settings
    from dihya_realtime.store import Database

log = logging.getLogger("dihya_realtime.outbox")

OutboxHandler = Callable[[str, Any], None]
"""``handler(outbox_id, payload)``: publish what the row says, with ``outbox_id`` as the
idempotency key. Raise ``RealtimeError(unavailable)`` to retry later (the row stays), another
``RealtimeError`` for a row that can never succeed (it is set aside as failed)."""

HostSession = Session | scoped_session[Any]
_LISTENING = "dihya_rt_outbox_wakes_relay"


@dataclass(frozen=True)
class Queued:
    """What a call with ``session=`` returns: the row is written, not yet published.

    ``id`` is the row's id: the idempotency key of the publication it becomes.
    """

    id: str
    kind: str
    stream: str | None


class Outbox:
    """``rt.outbox``: queue work in a host transaction; the relay runs it after commit."""

    def __init__(self, db: Database, settings: Settings, metrics: Metrics,
                 audit: AuditLog) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self.audit = audit
        self.handlers: dict[str, OutboxHandler] = {}
        self._relay: Relay | None = None
        self._same_database: dict[str, bool] = {}

    # -- the write side (in the host's transaction)
    def enqueue(self, session: HostSession, kind: str, stream: str | None,
                payload: Any) -> Queued:
        """Write one row through ``session`` (joining its transaction; nothing is committed).

        Raises ``payload_too_large`` past ``DIHYA_RT_OUTBOX_MAX_PAYLOAD_BYTES`` (JSON), and
        :class:`ValueError` when the session is bound to another database than
        ``DIHYA_RT_DATABASE_URL``, where no relay would ever see the row.
        """
        if kind not in self.handlers:
            raise ValueError(f"outbox: no handler for kind {kind!r}")
        size = len(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS))
        limit = self.settings.outbox_max_payload_bytes
        if size > limit:
            raise RealtimeError(ErrorCode.PAYLOAD_TOO_LARGE,
                                f"an outbox row is at most {limit} bytes of JSON",
                                {"max_bytes": limit, "bytes": size})
        conn = session.connection()
        self._check_database(conn)
        outbox_id = insert_row(conn, kind, stream, payload)
        self._wake_on_commit(session)
        return Queued(outbox_id, kind, stream)

    def _check_database(self, conn: Connection) -> None:
        engine = conn.engine
        if engine is self.db.engine:
            return
        key = engine.url.render_as_string(hide_password=True)
        same = self._same_database.get(key)
        if same is None:
            same = self._same_database[key] = _database_identity(engine) == _database_identity(
                self.db.engine)
        if not same:
            raise ValueError(
                f"outbox: the session writes to {key}, but the relay reads "
                f"{OUTBOX_TABLE} from DIHYA_RT_DATABASE_URL ({self.db!r}): give both the same "
                "database (docs/host-integration.md)")

    def _wake_on_commit(self, session: HostSession) -> None:
        """This process's relay runs as soon as the host commits (other processes: NOTIFY on
        PostgreSQL, else their next poll)."""
        real = session() if isinstance(session, scoped_session) else session
        if real.info.get(_LISTENING):
            return
        real.info[_LISTENING] = True
        event.listen(real, "after_commit", lambda _s: self.wake())

    # -- the effect of each kind
    def handle(self, kind: str, handler: OutboxHandler) -> None:
        """Register what rows of ``kind`` do (one handler per kind)."""
        if kind in self.handlers:
            raise ValueError(f"outbox: kind {kind!r} has a handler already")
        self.handlers[kind] = handler

    # -- the relay
    @property
    def relay(self) -> Relay:
        if self._relay is None:
            from dihya_realtime.kernel.outbox.relay import Relay

            self._relay = Relay(self.db, self.settings, self.metrics, self.audit, self.handlers)
        return self._relay

    def start(self) -> None:
        """Run the relay in this process (``init_app`` does when ``DIHYA_RT_OUTBOX_ENABLED``)."""
        self.relay.start()

    def wake(self) -> None:
        if self._relay is not None:
            self._relay.wake()

    def stop(self) -> None:
        if self._relay is not None:
            self._relay.stop()


def _database_identity(engine: Engine) -> tuple[str, str]:
    """The backend and the database (SQLite: the file's absolute path). Hosts are not compared:
    ``localhost`` and ``127.0.0.1`` name one server."""
    url = engine.url
    name = url.database or ""
    if url.get_backend_name() == "sqlite" and name not in ("", ":memory:"):
        name = os.path.realpath(name)
    return url.get_backend_name(), name


__all__ = ["Outbox", "OutboxHandler", "Queued"]
