"""Verifying the audit trail: walk the stored chain and say whether it is intact and complete.

Why apart from the writer: verification runs from the CLI (``dihya-realtime audit verify``)
against a database some server wrote, sharing with the writer only the chain's format
(:mod:`.chain`), never its queue or thread.

:func:`verify` detects a changed row, a row deleted from the middle (or the first row), a
forged row inserted among the others, and records lost before they reached the database:
where a writer dropped records (a full queue, a record that could not be built) it writes a
``audit_gap`` row in their place, and ``verify`` reports the trail incomplete.

:func:`verify` cannot, from the table alone, tell that the *last*
rows were deleted, nor refuse a forged row appended with a correctly computed hash: compare
``VerifyResult.rows`` / ``last_hash`` with an anchor kept elsewhere (the JSON-line log).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dihya_realtime.kernel.audit.chain import GAP_TYPE, GENESIS_HASH, chain_hash, iso_ms
from dihya_realtime.store.db import Database
from dihya_realtime.store.models import AuditEvent


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What :func:`verify` found. ``first_bad_id`` / ``reason`` are ``None`` when ``ok``.

    ``ok`` means the chain is intact *and* complete: ``dropped`` counts the records the
    writers reported lost (gap rows), and any makes the trail incomplete (``ok`` is
    ``False`` while ``intact`` stays ``True``).
    """

    ok: bool
    rows: int
    first_bad_id: int | None = None
    reason: str | None = None
    last_hash: str | None = None
    dropped: int = 0
    intact: bool = True
    """The hash chain holds (``False``: a row was changed, deleted or forged)."""


def row_fields(row: Any) -> dict[str, Any]:
    """The hashed fields of a stored row, rebuilt exactly as they were hashed."""
    return {
        "ts": iso_ms(row.ts),
        "type": row.type,
        "user_id": row.user_id,
        "sid": row.sid,
        "remote_addr": row.remote_addr,
        "origin": row.origin,
        "user_agent": row.user_agent,
        "event": row.event,
        "outcome": row.outcome,
        "details": row.details,
    }


def _gap_count(row: Any) -> int:
    details = row.details if isinstance(row.details, dict) else {}
    count = details.get("dropped")
    return count if isinstance(count, int) and count > 0 else 1


COLUMNS = [column for column in AuditEvent.__table__.columns]
"""What the walk reads of each row: every column, as plain rows."""

PAGE_ROWS = 250
"""Rows read per query: each page is its own short read, so the walk never holds one
transaction open over the whole trail, and (about 30 µs a row) a server that pauses between
pages never stalls its other connections for more than about 10 ms."""


def verify(database: Database, *, page_rows: int = PAGE_ROWS,
           pause: Callable[[], None] | None = None) -> VerifyResult:
    """Walk the audit trail in id order, recompute every hash and check every link.

    A gap row (records a writer lost: a full queue, a record that could not be built) does
    not break the chain but makes the trail incomplete: ``ok`` is ``False``, ``dropped``
    sums the lost records and ``first_bad_id`` names the first gap row.

    The trail is read ``page_rows`` at a time (by id, one query each) and ``pause()`` is
    called between pages: a server passes its event loop's yield, so a walk over a long
    trail (CPU-bound: one hash per row) lets the other connections run between pages
    instead of stalling them all for its whole length.
    """
    prev_hash = GENESIS_HASH
    prev_id: int | None = None
    rows = 0
    dropped = 0
    first_gap: int | None = None
    after = None
    while True:
        # plain rows, not ORM objects: building an AuditEvent per row cost the walk 3x
        stmt = sa.select(*COLUMNS).order_by(AuditEvent.id).limit(page_rows)
        if after is not None:
            stmt = stmt.where(AuditEvent.id > after)
        with database.session() as session:
            page = session.connection().execute(stmt).all()
        for event in page:
            rows += 1
            if event.prev_hash != prev_hash:
                if prev_id is None:
                    reason = (
                        f"row {event.id}: prev_hash is not the genesis value "
                        "(rows before it were deleted)"
                    )
                else:
                    reason = (
                        f"row {event.id}: prev_hash does not match row {prev_id} "
                        "(a row was deleted or inserted)"
                    )
                return VerifyResult(False, rows, event.id, reason, prev_hash, dropped, False)
            if chain_hash(event.prev_hash, row_fields(event)) != event.hash:
                reason = f"row {event.id}: hash mismatch (row changed)"
                return VerifyResult(False, rows, event.id, reason, prev_hash, dropped, False)
            if event.type == GAP_TYPE:
                dropped += _gap_count(event)
                first_gap = event.id if first_gap is None else first_gap
            prev_hash = event.hash
            prev_id = event.id
        if len(page) < page_rows:
            break
        after = page[-1].id
        if pause is not None:
            pause()
    last = prev_hash if rows else None
    if dropped:
        reason = (f"{dropped} records were dropped before they reached the database "
                  f"(first gap at row {first_gap})")
        return VerifyResult(False, rows, first_gap, reason, last, dropped)
    return VerifyResult(True, rows, None, None, last)
