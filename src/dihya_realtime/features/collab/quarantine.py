"""Stored updates that no longer apply: found in a worker, moved out of the log, audited.

A stored update that will not apply would otherwise be retried on every load and every
compaction, forever. When loading the log merged into one update fails, or before compaction
merges it, a worker process finds the culprits (:meth:`DocWorkers.failing_parts`); they move to
``doc_quarantine`` (kept for an operator, never read again) with an audit row
``doc_quarantine``, and the document opens without them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dihya_realtime.features.collab.models import quarantine_table, updates_table
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError

if TYPE_CHECKING:
    from dihya_realtime.features.collab.worker import DocWorkers
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.collab")

_updates = updates_table
_quarantine = quarantine_table


class Quarantine:
    """Finds the stored updates of a document that do not apply and sets them aside."""

    def __init__(self, rt: Realtime, workers: Callable[[], DocWorkers]) -> None:
        self.rt = rt
        self._workers = workers

    def failing(self, doc_id: str, base: bytes | None, rows: Sequence[Any],
                reason: str) -> set[int]:
        """Find (in a worker) the rows that do not apply on top of ``base`` and move them to
        ``doc_quarantine``; returns their seqs."""
        parts = ([base] if base is not None else []) + [r.update for r in rows]
        offset = 1 if base is not None else 0
        try:
            failing = self._workers().failing_parts(parts)
        except TimeoutError:
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the document could not be checked in "
                                "time", {"doc_id": doc_id}, retry_after=5.0) from None
        bad = [rows[i - offset] for i in failing if i >= offset]
        if bad:
            self.move(doc_id, bad, reason)
        return {r.seq for r in bad}

    def move(self, doc_id: str, rows: Sequence[Any], reason: str) -> None:
        """Move stored updates (rows with ``seq``, ``update``) out of the log, audited."""
        now = datetime.now(UTC)
        seqs = [r.seq for r in rows]
        with self.rt.db.write_transaction() as c:
            found = c.execute(sa.select(_updates).where(_updates.c.doc_id == doc_id,
                                                        _updates.c.seq.in_(seqs))).all()
            for row in found:
                c.execute(sa.insert(_quarantine).values(
                    doc_id=doc_id, seq=row.seq, update=row.update, user_id=row.user_id,
                    created_at=row.created_at, quarantined_at=now, reason=reason[:200]))
            c.execute(sa.delete(_updates).where(_updates.c.doc_id == doc_id,
                                                _updates.c.seq.in_(seqs)))
        for row in found:
            log.error("document %s: update #%d quarantined (%s)", doc_id, row.seq, reason)
            self.rt.audit.record("doc_quarantine", user_id=row.user_id, outcome="error",
                                 details={"doc_id": doc_id, "seq": row.seq,
                                          "size": len(row.update), "reason": reason})
