"""The audit trail as the console reads it: newest first, filtered, a page at a time.

Reads the database rows the audit writer appended (``DIHYA_RT_AUDIT_DB``); paging is by id
(``before_id``), so a page is one indexed range scan however long the trail is.
:func:`verify_status` runs the same walk as ``dihya-realtime audit verify``: it reads every
row, so the event that asks for it has a tight rate limit, and :class:`TrailVerifier` runs one
walk at a time per process, yielding between pages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from dihya_realtime.kernel.audit.verification import verify
from dihya_realtime.store.db import Database
from dihya_realtime.store.models import AuditEvent

FILTERS = ("type", "user_id", "outcome", "event")
"""Columns the console filters on, each by equality."""


def audit_page(db: Database, *, filters: dict[str, str | None], before_id: int | None,
               limit: int) -> dict[str, Any]:
    """At most ``limit`` rows matching ``filters``, newest first, with the next page's cursor."""
    stmt = sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    for name in FILTERS:
        value = filters.get(name)
        if value:
            stmt = stmt.where(getattr(AuditEvent, name) == value)
    if before_id is not None:
        stmt = stmt.where(AuditEvent.id < before_id)
    with db.session() as session:
        rows = list(session.execute(stmt).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "rows": [{"id": r.id, "ts": r.ts.timestamp(), "type": r.type, "user_id": r.user_id,
                  "sid": r.sid, "remote_addr": r.remote_addr, "event": r.event,
                  "outcome": r.outcome, "details": r.details} for r in rows],
        "next_before_id": rows[-1].id if more and rows else None,
    }


def verify_status(db: Database, pause: Callable[[], None] | None = None) -> dict[str, Any]:
    """What ``dihya-realtime audit verify`` would say, as a reply (``pause``: between pages)."""
    result = verify(db, pause=pause)
    return {"ok": result.ok, "intact": result.intact, "rows": result.rows,
            "dropped": result.dropped, "first_bad_id": result.first_bad_id,
            "reason": result.reason, "last_hash": result.last_hash}


class TrailVerifier:
    """One walk of the trail at a time on this process; who asks during a walk gets its
    result.

    A walk reads every row and hashes each (CPU, growing with the trail). The event's rate
    limit is per user, so without this several admins (or one with several accounts) would
    run as many walks at once. The walk yields to the event loop between pages (``pause``),
    so the other connections are served while it runs.
    """

    def __init__(self, db: Database, pause: Callable[[], None] | None = None) -> None:
        self.db = db
        self.pause = pause
        self._lock = threading.Lock()
        self._walk: _Walk | None = None
        self.walks = 0  # walks started (for the tests and the curious)

    def status(self) -> dict[str, Any]:
        with self._lock:
            walk = self._walk
            leading = walk is None
            if leading:
                walk = self._walk = _Walk()
                self.walks += 1
        assert walk is not None
        if not leading:
            walk.done.wait()
            if walk.error is not None:
                raise walk.error
            return dict(walk.result or {})
        try:
            walk.result = verify_status(self.db, self.pause)
            return dict(walk.result)
        except BaseException as exc:
            walk.error = exc
            raise
        finally:
            with self._lock:
                self._walk = None
            walk.done.set()


class _Walk:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
