"""The audit writer: one JSON line per event, now, and a hash-chained database row, soon.

Why two sinks: the JSON line is written synchronously (stdout or a file, flushed per line) so a
log shipper sees every event at once; the database row is the queryable, tamper-evident copy,
and writing it must never slow a Socket.IO handler down. So :meth:`AuditLog.record` only
enqueues, and a background thread writes batches (every 100 ms or 200 events) in one
transaction each (:mod:`.append`). When the database is unreachable the writer logs the error
and retries; nothing queued is lost meanwhile, but the queue is bounded: past 100,000 waiting
events the oldest are dropped (counted in :attr:`AuditLog.dropped`, logged as a warning, and
marked in the chain by a gap row).

**A crash can lose at most what's queued: the database rows of at most 100,000 events (in
normal operation, at most the last 100 ms or 200 events); their JSON lines are already written.**
"""

from __future__ import annotations

import atexit
import functools
import logging
import sys
import threading
import weakref
from collections import deque
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from dihya_realtime.kernel.audit.append import RowInsert, append_rows
from dihya_realtime.kernel.audit.chain import FIELDS, GAP_TYPE, iso_ms
from dihya_realtime.kernel.audit.fields import Marks, clean_details, clean_str
from dihya_realtime.store.db import Database

logger = logging.getLogger("dihya_realtime.audit")

MAX_QUEUE = 100_000
BATCH_SIZE = 200
BATCH_INTERVAL = 0.1
BACKLOG_BATCHES = 5  # a backlog is written up to 5 × BATCH_SIZE rows per transaction


class AuditLog:
    """Records audit events to a JSON-line target and, off the hot path, to the database.

    ``log_target`` is ``"-"`` (stdout), ``"off"`` or a file path (appended to). With
    ``database=None`` only the JSON lines are written.
    """

    def __init__(
        self,
        database: Database | None,
        log_target: str = "-",
        *,
        max_queue: int = MAX_QUEUE,
        batch_size: int = BATCH_SIZE,
        batch_interval: float = BATCH_INTERVAL,
    ) -> None:
        self.database = database
        self._target = log_target
        self._file: IO[bytes] | None = None
        self._line_lock = threading.Lock()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._batch_interval = batch_interval
        self._cond = threading.Condition()
        # (the hashed fields, their timestamp as a datetime: parsed back, it cost 9 µs a row)
        self._pending: deque[tuple[dict[str, Any], datetime]] = deque()
        self._enqueued = 0  # events ever enqueued
        self._settled = 0  # events written to the database or dropped
        self._dropped = 0
        self._gap = 0  # records lost since the last gap row was written
        self._gap_in_flight = 0  # ... and those of the gap row being written
        self._urgent = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._insert: RowInsert | None = None
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        self._start_lock = threading.Lock()
        self._started = False  # the file and the writer open in start(), not here

    def start(self) -> None:
        """Open the JSON-line file and start the database writer (idempotent).

        ``Realtime.init_app`` calls it; a worker's ``Realtime()`` that never attaches to an
        app starts it with its first record. After :meth:`close` it does nothing.
        """
        with self._start_lock:
            if self._started:
                return
            self._started = True
            if self._target not in ("-", "off"):
                # Unbuffered append: each line is one write(2), whole even with several
                # processes.
                self._file = open(self._target, "ab", buffering=0)  # noqa: SIM115
            if self.database is not None:
                self._thread = threading.Thread(
                    target=self._run, name="dihya-audit-writer", daemon=True
                )
                self._thread.start()
                atexit.register(self._atexit)

    @property
    def started(self) -> bool:
        return self._started

    @property
    def dropped(self) -> int:
        """Events dropped because the queue was full while the database was unreachable."""
        return self._dropped

    def _record_gap(self) -> None:
        """A record was lost: a gap row takes its place, in order, in both sinks."""
        fields, ts = _gap_row(1)
        with self._cond:
            self._dropped += 1
        try:
            self._write_line(fields)
            if self._thread is not None:
                self._enqueue(fields, ts)
        except Exception:
            logger.exception("audit: could not record a gap either")

    @property
    def pending(self) -> int:
        """Events waiting for the database."""
        with self._cond:
            return self._enqueued - self._settled

    def record(
        self,
        type: str,
        *,
        user_id: str | None = None,
        sid: str | None = None,
        remote_addr: str | None = None,
        origin: str | None = None,
        user_agent: str | None = None,
        event: str | None = None,
        outcome: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record one event. Never raises and never waits for the database.

        A record that cannot be built (never seen: every value is escaped or stringified) is
        counted as dropped and leaves a gap row in the chain, which :func:`verify` reports.
        """
        if not self._started:
            self.start()
        try:
            now = datetime.now(UTC)
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            marks = Marks()
            fields = {
                "ts": iso_ms(now),
                "type": clean_str("type", type, marks),
                "user_id": clean_str("user_id", user_id, marks),
                "sid": clean_str("sid", sid, marks),
                "remote_addr": clean_str("remote_addr", remote_addr, marks),
                "origin": clean_str("origin", origin, marks),
                "user_agent": clean_str("user_agent", user_agent, marks),
                "event": clean_str("event", event, marks),
                "outcome": clean_str("outcome", outcome, marks),
                "details": clean_details(details, marks),
            }
            if marks:
                fields["details"] = {**(fields["details"] or {}), "_audit": marks.as_dict()}
        except Exception:
            logger.exception("audit: could not record a %r event; a gap is left", type)
            self._record_gap()
            return
        if self._thread is not None:
            self._enqueue(fields, now)
        try:
            self._write_line(fields)
        except Exception:
            logger.exception("audit: could not write the JSON line of a %r event", type)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event recorded so far is in the database (or dropped).

        Returns ``False`` if that did not happen within ``timeout`` seconds.
        """
        if self._thread is None:
            return True
        with self._cond:
            target = self._enqueued
            self._urgent = True
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._settled >= target and not self._gap and not self._gap_in_flight,
                timeout=timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed within ``timeout``, stop the writer, close the file."""
        with self._start_lock:
            self._started = True  # a record after close writes no file and starts nothing
        if self._thread is not None:
            self.flush(timeout)
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join(timeout)
            self._thread = None
            atexit.unregister(self._atexit)
            if self.pending:
                logger.error(
                    "audit: closed with %d events not written to the database", self.pending
                )
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- JSON lines

    def _write_line(self, fields: dict[str, Any]) -> None:
        if self._target == "off":
            return
        line = orjson.dumps(fields) + b"\n"
        with self._line_lock:
            if self._file is not None:
                self._file.write(line)
            else:
                stream = sys.stdout  # looked up each time: it may have been replaced
                stream.write(line.decode("utf-8"))
                stream.flush()

    # -- database writer

    def _enqueue(self, fields: dict[str, Any], ts: datetime) -> None:
        with self._cond:
            if len(self._pending) >= self._max_queue:
                self._pending.popleft()
                self._dropped += 1
                self._gap += 1
                self._settled += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    logger.warning(
                        "audit: queue full (%d), dropped %d oldest events so far",
                        self._max_queue,
                        self._dropped,
                    )
            self._pending.append((fields, ts))
            self._enqueued += 1
            # the writer sleeps until there is something: wake it for the first record (it
            # then waits up to the batch interval for more) and for a full batch
            if len(self._pending) in (1, self._batch_size):
                self._cond.notify_all()

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._gap or self._closing)
                if not self._pending and not self._gap:
                    return  # closing, nothing left
                if backoff:
                    self._cond.wait_for(lambda: self._urgent or self._closing, timeout=backoff)
                elif len(self._pending) < self._batch_size and not self._urgent:
                    self._cond.wait_for(
                        lambda: (
                            len(self._pending) >= self._batch_size or self._urgent or self._closing
                        ),
                        timeout=self._batch_interval,
                    )
                self._urgent = False
                # A backlog goes in bigger transactions: one commit (an fsync on SQLite) and
                # one read of the chain's tip per batch are most of a small batch's cost.
                count = min(len(self._pending), self._batch_size * BACKLOG_BATCHES)
                batch = [self._pending.popleft() for _ in range(count)]
                gap, self._gap = self._gap, 0
                self._gap_in_flight = gap
            try:
                self._write_batch([_gap_row(gap), *batch] if gap else batch)
            except Exception as exc:
                with self._cond:
                    self._pending.extendleft(reversed(batch))
                    self._gap += gap
                    self._gap_in_flight = 0
                    while len(self._pending) > self._max_queue:
                        self._pending.popleft()
                        self._dropped += 1
                        self._gap += 1
                        self._settled += 1
                    waiting = len(self._pending)
                if not backoff:
                    logger.error(
                        "audit: database write failed, %d events kept for retry: %s",
                        waiting,
                        exc,
                        exc_info=True,
                    )
                else:
                    logger.warning(
                        "audit: database still failing (%d events waiting): %s", waiting, exc
                    )
                backoff = min(max(backoff * 2, 0.25), 5.0)
                if self._closing:
                    return
                continue
            if backoff:
                logger.warning("audit: database writes resumed")
                backoff = 0.0
            with self._cond:
                self._settled += len(batch)
                self._gap_in_flight = 0
                self._cond.notify_all()

    def _write_batch(self, batch: list[tuple[dict[str, Any], datetime]]) -> None:
        assert self.database is not None
        with self.database.write_transaction() as conn:
            if self._insert is None:
                self._insert = RowInsert.compile(conn.dialect)
            append_rows(conn, self._insert, batch, postgres=self.database.is_postgres)


def _gap_row(count: int) -> tuple[dict[str, Any], datetime]:
    """The row standing, in the chain, for ``count`` records that were lost before it."""
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    fields = dict.fromkeys(FIELDS)
    fields.update(ts=iso_ms(now), type=GAP_TYPE, outcome="dropped", details={"dropped": count})
    return fields, now


def _close_at_exit(ref: weakref.ref[AuditLog]) -> None:
    audit = ref()
    if audit is not None:
        audit.close()
