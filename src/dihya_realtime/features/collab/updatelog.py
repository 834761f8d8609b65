"""A document's update log in SQL: append, catch a cache up, compact into the snapshot.

SQL is the source of truth. Every accepted update is appended to ``doc_updates`` with the next
``seq`` of its document before the client's ack, so no acknowledged edit is lost when every
process restarts. Because ``seq`` is handed out under the document's row lock, a reader that
sees ``seq`` n has seen every smaller one, so a cache that applies "every seq greater than the
last one I applied" has no gaps.

Compaction folds the updates into ``doc_snapshots`` with :func:`pycrdt.merge_updates`
(lossless: it keeps updates whose dependencies have not arrived yet, which ``Doc.get_update``
would drop): every ``DIHYA_RT_DOCS_COMPACT_EVERY`` updates, and for a document left idle for
``DIHYA_RT_DOCS_COMPACT_IDLE`` seconds (a :class:`~dihya_realtime.kernel.sweeper.Sweeper`
that runs only while some document waits). What will not apply is quarantined first
(:mod:`.quarantine`), never merged.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pycrdt import merge_updates
from sqlalchemy.exc import IntegrityError

from dihya_realtime.features.collab import worker as doc_worker
from dihya_realtime.features.collab.models import docs_table, snapshots_table, updates_table
from dihya_realtime.features.collab.quarantine import Quarantine
from dihya_realtime.features.collab.rooms import DocRoom
from dihya_realtime.features.collab.yjs import apply_update, merged
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError, not_found
from dihya_realtime.kernel.sweeper import Sweeper

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.collab")

_docs = docs_table
_updates = updates_table
_snapshots = snapshots_table
_NOT_APPLYING = "does not apply to the document"


def _now() -> datetime:
    return datetime.now(UTC)


class UpdateLog:
    """The documents' rows, update log and snapshots, and their compaction."""

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.quarantine = Quarantine(rt, self.workers)
        self._lock = threading.Lock()
        self._dirty: dict[str, float] = {}  # doc id → monotonic time of its last local update
        idle = self.settings.docs_compact_idle
        self._idle = Sweeper("doc-compaction", min(idle, 1.0) if idle > 0 else 1.0,
                             self._compact_idle, spawn=rt.socketio.start_background_task,
                             sleep=rt.socketio.sleep)

    def workers(self) -> doc_worker.DocWorkers:
        """The pool of worker processes that check updates (``DIHYA_RT_DOC_WORKER*``)."""
        s = self.settings
        return doc_worker.pool(s.doc_workers, s.doc_worker_timeout,
                               s.doc_worker_memory_mb * 1024 * 1024)

    # -- documents and appends

    def exists(self, doc_id: str) -> bool:
        with self.rt.db.session() as s:
            return s.execute(sa.select(_docs.c.id).where(_docs.c.id == doc_id)).first() \
                is not None

    def insert(self, doc_id: str, created_by: str | None) -> bool:
        """Create the document's row; ``False`` if it exists."""
        now = _now()
        try:
            with self.rt.db.write_transaction() as c:
                c.execute(sa.insert(_docs).values(id=doc_id, created_at=now, updated_at=now,
                                                  last_seq=0, created_by=created_by))
        except IntegrityError:
            return False
        return True

    def append(self, doc_id: str, update: bytes, user_id: str | None) -> int:
        """Store ``update`` with the next seq of its document. The row lock taken by the
        ``UPDATE`` makes appends to one document commit in seq order."""
        now = _now()
        with self.rt.db.write_transaction() as c:
            seq = c.execute(
                sa.update(_docs).where(_docs.c.id == doc_id)
                .values(last_seq=_docs.c.last_seq + 1, updated_at=now)
                .returning(_docs.c.last_seq)).scalar_one_or_none()
            if seq is None:
                raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
            c.execute(sa.insert(_updates).values(doc_id=doc_id, seq=seq, update=update,
                                                 user_id=user_id, created_at=now))
        return int(seq)

    def catch_up(self, room: DocRoom) -> None:
        """Apply what SQL holds beyond ``room.seq`` (the caller holds ``room.lock``).

        Updates are read *before* the snapshot: a compaction committed in between deleted
        only updates that the snapshot read afterwards contains, so nothing falls between.
        """
        with self.rt.db.session() as s:
            rows = s.execute(
                sa.select(_updates.c.seq, _updates.c.update)
                .where(_updates.c.doc_id == room.doc_id, _updates.c.seq > room.seq)
                .order_by(_updates.c.seq)).all()
            snap = s.execute(
                sa.select(_snapshots.c.upto_seq, _snapshots.c.state)
                .where(_snapshots.c.doc_id == room.doc_id,
                       _snapshots.c.upto_seq > room.seq)).first()
        seq = room.seq
        if snap is not None:
            room.doc.apply_update(snap.state)  # checked by the compaction that wrote it
            seq = max(seq, snap.upto_seq)
        if rows:
            # merged first: one update loads in milliseconds where applying the log one
            # update at a time can take seconds (each merge rescans concurrent inserts)
            parts = [r.update for r in rows]
            if not apply_update(room.doc, merged(parts)):
                bad = self.quarantine.failing(room.doc_id, room.doc.get_update(), rows,
                                              _NOT_APPLYING)
                good = [r.update for r in rows if r.seq not in bad]
                if good and not apply_update(room.doc, merged(good)):
                    raise RealtimeError(ErrorCode.INTERNAL, "the document does not load")
            seq = max(seq, rows[-1].seq)
        room.seq = seq

    # -- compaction

    def compact(self, doc_id: str) -> int:
        """Merge a document's updates into its snapshot, in one transaction; returns how many.

        Runs every ``DIHYA_RT_DOCS_COMPACT_EVERY`` updates and after
        ``DIHYA_RT_DOCS_COMPACT_IDLE`` seconds without one. Safe on any process at any time.
        """
        # Check first, outside the transaction (in a worker): what will not apply is
        # quarantined, never merged into the snapshot.
        with self.rt.db.session() as s:
            pending = s.execute(sa.select(_updates.c.seq, _updates.c.update)
                                .where(_updates.c.doc_id == doc_id)
                                .order_by(_updates.c.seq)).all()
            base = s.execute(sa.select(_snapshots.c.state)
                             .where(_snapshots.c.doc_id == doc_id)).scalar_one_or_none()
        if not pending:
            return 0
        self.quarantine.failing(doc_id, base, pending, _NOT_APPLYING)
        checked_upto = pending[-1].seq
        with self.rt.db.write_transaction() as c:
            locked = c.execute(sa.select(_docs.c.last_seq).where(_docs.c.id == doc_id)
                               .with_for_update()).scalar_one_or_none()
            if locked is None:
                return 0
            rows = c.execute(sa.select(_updates.c.seq, _updates.c.update)
                             .where(_updates.c.doc_id == doc_id,
                                    _updates.c.seq <= checked_upto)
                             .order_by(_updates.c.seq)).all()
            if not rows:
                return 0
            snap = c.execute(sa.select(_snapshots.c.state)
                             .where(_snapshots.c.doc_id == doc_id)).scalar_one_or_none()
            parts = ([snap] if snap is not None else []) + [r.update for r in rows]
            state = merge_updates(*parts)
            upto = rows[-1].seq
            values = {"state": state, "upto_seq": upto, "created_at": _now()}
            if snap is None:
                c.execute(sa.insert(_snapshots).values(doc_id=doc_id, **values))
            else:
                c.execute(sa.update(_snapshots).where(_snapshots.c.doc_id == doc_id)
                          .values(**values))
            c.execute(sa.delete(_updates).where(_updates.c.doc_id == doc_id,
                                                _updates.c.seq <= upto))
        self.rt.audit.record("doc_compact", outcome="ok",
                             details={"doc_id": doc_id, "updates": len(rows), "upto_seq": upto,
                                      "size": len(state)})
        return len(rows)

    def after_append(self, doc_id: str, seq: int) -> None:
        """Plan the compactions an append calls for: every Nth update, and when idle."""
        if seq % self.settings.docs_compact_every == 0:
            self.rt.socketio.start_background_task(self._compact_quietly, doc_id)
        if self.settings.docs_compact_idle > 0:
            with self._lock:
                self._dirty[doc_id] = time.monotonic()
            self._idle.wake()

    def _compact_quietly(self, doc_id: str) -> None:
        try:
            self.compact(doc_id)
        except Exception:
            log.exception("compaction of %s failed; its updates stay in the log", doc_id)

    def _compact_idle(self) -> bool:
        """One pass of the idle sweeper: compact the documents idle for ``docs_compact_idle``
        seconds; returns whether any is left to watch (else the sweeper's task ends)."""
        idle = self.settings.docs_compact_idle
        now = time.monotonic()
        with self._lock:
            due = [d for d, t in self._dirty.items() if now - t >= idle]
            for doc_id in due:
                del self._dirty[doc_id]
        for doc_id in due:
            self._compact_quietly(doc_id)
        with self._lock:
            return bool(self._dirty or due)
