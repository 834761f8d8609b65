"""The relay: publishes committed outbox rows, in order, once each, and never loses one.

One pass (:meth:`Relay.run_once`):

1. **Lead.** Take or renew the lease (``dihya_rt_outbox_relay``): one relay publishes at a time
   across every process on the database, so rows go out in ``seq`` order, which is commit order
   per channel (``store/outbox.py``). The others poll the lease; a relay killed while leading is
   replaced when its lease (``DIHYA_RT_OUTBOX_LEASE``) ends. Why not ``FOR UPDATE SKIP
   LOCKED``: relays that skip each other's rows publish one channel's rows in parallel, out of
   order; and handlers that write (``notify``, chat) would wait on SQLite's single writer
   held by the claim.
2. **Publish.** The oldest ``DIHYA_RT_OUTBOX_BATCH_SIZE`` pending rows, in ``seq`` order, each
   through its kind's handler with the row's id as the idempotency key, then the row is
   deleted. A relay that dies after publishing and before deleting leaves the row; whoever
   takes it again publishes with the same key and the broker returns the first publication
   (``DIHYA_RT_IDEMPOTENCY_TTL`` must outlast the lease; Redis keeps keys across processes).
3. **Fail safe.** ``unavailable`` (the broker or the database is down): the pass stops, rows
   stay, the next pass comes after a backoff doubling up to ``DIHYA_RT_OUTBOX_RETRY_MAX``.
   A row its channel refuses (an unknown namespace, a bad name, too large) is a *poison* row:
   set aside as ``failed`` with the error, logged, audited (``outbox_failed``) and counted,
   and the channel goes on. Any other error counts an attempt; after
   ``DIHYA_RT_OUTBOX_MAX_ATTEMPTS`` the row is set aside the same way.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from typing import TYPE_CHECKING

from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.store.outbox import (
    FAILED,
    OUTBOX_TABLE,
    PENDING,
    OutboxRow,
    count_attempt,
    count_state,
    delete_row,
    mark_failed,
    pending_rows,
    release_lease,
    take_lease,
)

if TYPE_CHECKING:
    from dihya_realtime.kernel.audit import AuditLog
    from dihya_realtime.kernel.metrics import Metrics
    from dihya_realtime.kernel.outbox.queue import OutboxHandler
    from dihya_realtime.kernel.settings import Settings
    from dihya_realtime.store import Database

log = logging.getLogger("dihya_realtime.outbox")


class Retry(Exception):
    """The pass stops here; the rows stay for the next one (after a backoff)."""


class Relay:
    """Publishes this database's outbox rows while this process holds the lease."""

    def __init__(self, db: Database, settings: Settings, metrics: Metrics, audit: AuditLog,
                 handlers: dict[str, OutboxHandler]) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self.audit = audit
        self.handlers = handlers
        self.holder = f"{uuid.uuid4().hex[:16]}"
        self.leading = False
        self._lease_until = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._failures = 0

    # -- one pass
    def run_once(self) -> int:
        """Publish what is pending if this relay leads; returns how many rows it handled.

        An idle pass is one read: the lease is only taken when a row waits. Raises
        :class:`Retry` when it had to stop early (the rows stay).
        """
        try:
            with self.db.engine.connect() as conn:
                waiting = bool(pending_rows(conn, 1))
        except Exception as exc:
            raise Retry(f"cannot read the outbox: {exc}") from exc
        if not waiting:
            self.metrics.outbox_rows.labels(PENDING).set(0)
            return 0
        lease = self.settings.outbox_lease
        if not self._lead(lease):
            return 0
        with self.db.engine.connect() as conn:  # read again: the last leader may have gone on
            rows = pending_rows(conn, self.settings.outbox_batch_size)
        handled = 0
        try:
            for row in rows:
                if self._stop.is_set():
                    break
                if time.time() > self._lease_until - lease / 2 and not self._lead(lease):
                    break  # lost the lease (a long stall): the new leader goes on from here
                self._relay_row(row)
                handled += 1
        finally:
            self._count_rows()
        return handled

    def _lead(self, lease: float) -> bool:
        now = time.time()
        try:
            with self.db.write_transaction() as conn:
                leading = take_lease(conn, self.holder, lease, now)
        except Exception as exc:
            raise Retry(f"cannot take the outbox lease: {exc}") from exc
        if leading and not self.leading:
            log.info("outbox relay %s leads", self.holder)
        self.leading = leading
        self._lease_until = now + lease if leading else 0.0
        return leading

    def _relay_row(self, row: OutboxRow) -> None:
        handler = self.handlers.get(row.kind)
        try:
            if handler is None:
                raise RealtimeError(ErrorCode.NOT_FOUND, f"no handler for kind {row.kind!r}")
            handler(row.id, row.payload)
        except RealtimeError as exc:
            if exc.code is ErrorCode.UNAVAILABLE:
                raise Retry(exc.message) from exc
            self._set_aside(row, f"{exc.code.value}: {exc.message}", exc.code.value)
            return
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if row.attempts + 1 >= self.settings.outbox_max_attempts:
                self._set_aside(row, error, "internal")
                return
            with self.db.write_transaction() as conn:
                count_attempt(conn, row.seq, error)
            raise Retry(error) from exc
        with self.db.write_transaction() as conn:
            delete_row(conn, row.seq)
        self.metrics.outbox_published.inc()

    def _set_aside(self, row: OutboxRow, error: str, code: str) -> None:
        with self.db.write_transaction() as conn:
            mark_failed(conn, row.seq, error)
        self.metrics.outbox_failed.inc()
        log.warning("outbox row %s (%s on %s) set aside as failed: %s", row.id, row.kind,
                    row.stream, error)
        self.audit.record("outbox_failed", outcome=code,
                          details={"outbox_id": row.id, "kind": row.kind, "stream": row.stream,
                                   "error": error})

    def _count_rows(self) -> None:
        try:
            with self.db.engine.connect() as conn:
                self.metrics.outbox_rows.labels(PENDING).set(count_state(conn, PENDING))
                self.metrics.outbox_rows.labels(FAILED).set(count_state(conn, FAILED))
        except Exception:
            log.debug("outbox: rows not counted", exc_info=True)

    # -- the background task
    def start(self) -> None:
        """Run passes in a background task (and LISTEN on PostgreSQL) until :meth:`stop`.

        Not on an in-memory SQLite database: its one shared connection cannot be used by a
        second thread in the middle of the host's transaction (call :meth:`run_once` there).
        """
        if self._thread is not None:
            return
        if self.db.is_sqlite and self.db.engine.url.database in (None, "", ":memory:"):
            log.info("outbox relay off: an in-memory SQLite database has no second connection")
            return
        self._thread = threading.Thread(target=self._run, name="dihya-rt-outbox-relay",
                                        daemon=True)
        self._thread.start()
        if self.db.is_postgres:
            from dihya_realtime.kernel.outbox.wakeup import listen

            self._listener = threading.Thread(
                target=listen, args=(self.db.url, self.wake, self._stop,
                                     self.settings.outbox_retry_max),
                name="dihya-rt-outbox-listen", daemon=True)
            self._listener.start()

    def _tables_missing(self) -> bool:
        try:
            return not self.db.has_table(OUTBOX_TABLE)
        except Exception:
            return False

    def wake(self) -> None:
        """Run a pass now (a commit here, a NOTIFY): skipped while backing off."""
        self._wake.set()

    def _run(self) -> None:
        poll = self.settings.outbox_poll_interval
        while not self._stop.is_set():
            self._wake.clear()
            try:
                handled = self.run_once()
            except Exception as exc:
                self._failures += 1
                delay = min(self.settings.outbox_retry_max, poll * 2 ** min(self._failures, 16))
                delay *= random.uniform(0.5, 1.0)  # relays of many processes do not align
                if self._failures == 1 and self._tables_missing():
                    log.info("outbox relay: no outbox tables here yet (dihya-realtime migrate); "
                             "looking again every %.0f s at most", self.settings.outbox_retry_max)
                else:
                    level = logging.WARNING if self._failures == 1 else logging.DEBUG
                    log.log(level, "outbox relay: %s; rows stay, retrying in %.1f s", exc, delay)
                self._stop.wait(delay)  # a backoff is not cut short by a NOTIFY
                continue
            if self._failures:
                log.info("outbox relay: going again after %d failed passes", self._failures)
                self._failures = 0
            if handled >= self.settings.outbox_batch_size:
                continue  # a full batch: more may wait
            self._wake.wait(poll)

    def stop(self, timeout: float = 5.0) -> None:
        """End the background task and give the lease up, so another relay leads at once."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self.leading:
            try:
                with self.db.write_transaction() as conn:
                    release_lease(conn, self.holder)
            except Exception:
                log.debug("outbox: lease not released (it ends by itself)", exc_info=True)
            self.leading = False
