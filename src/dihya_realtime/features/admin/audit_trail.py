"""The audit trail as the console reads it: newest first, filtered, a page at a time.

Reads the database rows the audit writer appended (``DIHYA_RT_AUDIT_DB``); paging is by id
(``before_id``), so a page is one indexed range scan however long the trail is.
:func:`verify_status` runs the same walk as ``dihya-realtime audit verify``: it reads every
row, so the event that asks for it has a tight rate limit.
"""

from __future__ import annotations

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


def verify_status(db: Database) -> dict[str, Any]:
    """What ``dihya-realtime audit verify`` would say, as a reply."""
    result = verify(db)
    return {"ok": result.ok, "intact": result.intact, "rows": result.rows,
            "dropped": result.dropped, "first_bad_id": result.first_bad_id,
            "reason": result.reason, "last_hash": result.last_hash}
