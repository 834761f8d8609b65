"""The audit trail: one JSON line per event, now, and a hash-chained database row, soon.

Why two sinks: the JSON line is written synchronously (stdout or a file, flushed per line) so a
log shipper sees every event at once; the database row is the queryable, tamper-evident copy,
and writing it must never slow a Socket.IO handler down. So :meth:`AuditLog.record` only
enqueues, and a background thread writes batches (every 100 ms or 200 events) in one
transaction each. When the database is unreachable the writer logs the error and retries;
nothing queued is lost meanwhile, but the queue is bounded: past 100,000 waiting events the
oldest are dropped (counted in :attr:`AuditLog.dropped`, logged as a warning, and marked in
the chain by a gap row).

**A crash can lose at most what's queued: the database rows of at most 100,000 events (in
normal operation, at most the last 100 ms or 200 events); their JSON lines are already written.**

Hash chain: ``hash = sha256(prev_hash + canonical_json(row))`` in hex, where canonical_json is
the row's ``ts`` (the ISO string of the JSON line), ``type``, ``user_id``, ``sid``,
``remote_addr``, ``origin``, ``user_agent``, ``event``, ``outcome`` and ``details``, with
sorted keys and no whitespace; the first row's ``prev_hash`` is 64 zeros. Several processes may
share one database, so each batch reads the last hash and appends inside one serialized
transaction (``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite).

:func:`verify` detects a changed row, a row deleted from the middle (or the first row), a
forged row inserted among the others, and records lost before they reached the database:
where a writer dropped records (a full queue, a record that could not be built) it writes a
``audit_gap`` row in their place, and ``verify`` reports the trail incomplete.

Client strings are stored as received, except that a string holding NUL (PostgreSQL refuses
it) or a lone surrogate (no UTF-8 form) is escaped (:func:`escape_text`), and a value longer
than its column is cut and ends with ``…``; both are named in the row's
``details._audit`` (``escaped``: field names; ``truncated``: field → original length).

:func:`verify` cannot, from the table alone, tell that the *last*
rows were deleted, nor refuse a forged row appended with a correctly computed hash: compare
``VerifyResult.rows`` / ``last_hash`` with an anchor kept elsewhere (the JSON-line log).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import logging
import re
import sys
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, cast

import orjson
import sqlalchemy as sa

from dihya_realtime.kernel.redaction import Redactor
from dihya_realtime.kernel.settings import DEFAULT_REDACT_KEYS
from dihya_realtime.store.db import Database
from dihya_realtime.store.models import AuditEvent

logger = logging.getLogger("dihya_realtime.audit")

GENESIS_HASH = "0" * 64
# Serializes chain appends across processes on PostgreSQL ("dihyaaud").
AUDIT_LOCK_KEY = 0x6469687961617564
# Never in the audit trail: secrets (the outbound list) and message bodies.
REDACT_KEYS = frozenset({*DEFAULT_REDACT_KEYS, "data", "text", "body"})
_REDACTOR = Redactor(REDACT_KEYS)
MAX_QUEUE = 100_000
BATCH_SIZE = 200
BATCH_INTERVAL = 0.1
BACKLOG_BATCHES = 5  # a backlog is written up to 5 × BATCH_SIZE rows per transaction

FIELDS = (
    "ts",
    "type",
    "user_id",
    "sid",
    "remote_addr",
    "origin",
    "user_agent",
    "event",
    "outcome",
    "details",
)
# Column widths: longer values are cut at record time so that one odd User-Agent can never
# make a whole batch fail on PostgreSQL (and the hash covers exactly what is stored).
_LIMITS = {
    "type": 64,
    "user_id": 128,
    "sid": 64,
    "remote_addr": 64,
    "origin": 512,
    "user_agent": 512,
    "event": 128,
    "outcome": 64,
}


_COLUMNS = (*FIELDS, "prev_hash", "hash")


@dataclass(frozen=True, slots=True)
class _RowInsert:
    """The audit row INSERT compiled once for a dialect, run as one DBAPI ``executemany``.

    Why not ``conn.execute(insert(table), rows)``: SQLAlchemy rebuilds and type-processes
    every row's parameters in Python, half of a row's cost in a writer that shares the event
    loop's core. The columns' own bind processors are applied here instead, so what is
    stored is byte for byte what SQLAlchemy would store (``verify`` reads it back through
    the ORM).
    """

    sql: str
    positional: bool
    processors: tuple[tuple[int, Any], ...]  # (column index, the type's bind processor)

    @classmethod
    def compile(cls, dialect: sa.Dialect) -> _RowInsert:
        table = cast(sa.Table, AuditEvent.__table__)
        compiled = sa.insert(table).compile(dialect=dialect, column_keys=list(_COLUMNS))
        if compiled.positional and list(compiled.positiontup or ()) != list(_COLUMNS):
            raise RuntimeError(f"unexpected audit INSERT parameters: {compiled.positiontup}")
        processors = tuple(
            (i, proc)
            for i, name in enumerate(_COLUMNS)
            if (proc := table.c[name].type.bind_processor(dialect)) is not None
        )
        return cls(str(compiled), bool(compiled.positional), processors)

    def params(self, values: list[Any]) -> tuple[Any, ...] | dict[str, Any]:
        for i, proc in self.processors:
            values[i] = proc(values[i])
        return tuple(values) if self.positional else dict(zip(_COLUMNS, values, strict=True))


def iso_ms(ts: datetime) -> str:
    """``2026-11-24T08:00:00.123Z``: the one textual form of an audit timestamp."""
    # isoformat is C; strftime + an f-string cost three times as much on every event
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def canonical_json(fields: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes the chain hashes."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(fields)).hexdigest()


def _redact(value: Any) -> Any:
    return _REDACTOR.redact(value)[0]


_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DETAILS_DEPTH = 32
"""Details nested deeper are kept as one (escaped, cut) string: a record is never refused."""
MAX_DEEP_TEXT = 512


def _needs_escape(text: str) -> bool:
    """NUL (PostgreSQL refuses it in text and JSON) or a lone surrogate (no UTF-8 form)."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def escape_text(text: str) -> str:
    """``text`` with backslashes doubled, NUL as ``\\x00`` and lone surrogates as ``\\udXXX``.

    Only strings that need it are escaped, and the record names them in
    ``details._audit.escaped``: there, undoing the escapes gives the exact string received,
    and an unescaped string is stored as received (so ``alice\\x00`` typed by a client and
    ``alice`` + NUL stay two different, recognisable values). Nothing is stripped.
    """
    out = text.replace("\\", "\\\\").replace("\x00", "\\x00")
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)


class _Marks:
    """What cleaning did to a record: escaped fields and cut fields (original lengths)."""

    __slots__ = ("escaped", "truncated")

    def __init__(self) -> None:
        self.escaped: list[str] = []
        self.truncated: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.escaped or self.truncated)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.escaped:
            out["escaped"] = self.escaped
        if self.truncated:
            out["truncated"] = self.truncated
        return out


def _plain(value: Any, marks: _Marks, depth: int = 0) -> Any:
    """``value`` as plain JSON values whose strings are all storable (see :func:`escape_text`)."""
    if value is None or value is True or value is False:
        return value
    if type(value) is str:
        if _needs_escape(value):
            if "details" not in marks.escaped:
                marks.escaped.append("details")
            return escape_text(value)
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value
    if depth >= MAX_DETAILS_DEPTH:
        text = _plain(orjson.dumps(value, default=repr).decode()
                      if isinstance(value, dict | list | tuple) else str(value), marks)
        if len(text) > MAX_DEEP_TEXT:
            marks.truncated.setdefault("details", len(text))
            text = text[: MAX_DEEP_TEXT - 1] + "…"
        return text
    if isinstance(value, dict):
        return {_plain(k if isinstance(k, str) else str(k), marks): _plain(v, marks, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, marks, depth + 1) for v in value]
    return _plain(str(value), marks)


def _clean_details(details: dict[str, Any] | None, marks: _Marks) -> Any:
    """Redacted, and reduced to plain JSON values so that what is stored, re-read and hashed
    is the same on both databases. Strings PostgreSQL or UTF-8 cannot hold are escaped, never
    stripped (:func:`escape_text`)."""
    if details is None:
        return None
    try:
        plain = _plain(_redact(details), marks)
    except RecursionError:  # a self-referencing structure
        plain = {"unserializable": "recursive structure"}
    return orjson.loads(orjson.dumps(plain))


def _clean_str(name: str, value: Any, marks: _Marks) -> str | None:
    if value is None:
        return None
    limit = _LIMITS[name]
    if type(value) is str and value.isascii() and "\x00" not in value and len(value) <= limit:
        return value  # the usual case
    text = value if type(value) is str else str(value)
    if _needs_escape(text):
        marks.escaped.append(name)
        text = escape_text(text)
    if len(text) > limit:
        marks.truncated[name] = len(value) if type(value) is str else len(text)
        text = text[: limit - 1] + "…"
    return text


GAP_TYPE = "audit_gap"
"""The type of the row the writer adds where records were lost (see :func:`verify`)."""


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
        self._insert: _RowInsert | None = None
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
            marks = _Marks()
            fields = {
                "ts": iso_ms(now),
                "type": _clean_str("type", type, marks),
                "user_id": _clean_str("user_id", user_id, marks),
                "sid": _clean_str("sid", sid, marks),
                "remote_addr": _clean_str("remote_addr", remote_addr, marks),
                "origin": _clean_str("origin", origin, marks),
                "user_agent": _clean_str("user_agent", user_agent, marks),
                "event": _clean_str("event", event, marks),
                "outcome": _clean_str("outcome", outcome, marks),
                "details": _clean_details(details, marks),
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
            if len(self._pending) >= self._batch_size:
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
        table = cast(sa.Table, AuditEvent.__table__)
        with self.database.write_transaction() as conn:
            if self._insert is None:
                self._insert = _RowInsert.compile(conn.dialect)
            insert = self._insert
            if self.database.is_postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(AUDIT_LOCK_KEY)))
            prev = conn.execute(
                sa.select(table.c.hash).order_by(table.c.id.desc()).limit(1)
            ).scalar()
            prev = prev or GENESIS_HASH
            rows = []
            for fields, ts in batch:
                digest = chain_hash(prev, fields)
                values = [fields[name] for name in FIELDS]
                values[0] = ts
                values += (prev, digest)
                rows.append(insert.params(values))
                prev = digest
            # One executemany: the driver runs the rows one after another, in chain order.
            conn.exec_driver_sql(insert.sql, rows)


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


def verify(database: Database) -> VerifyResult:
    """Walk the audit trail in id order, recompute every hash and check every link.

    A gap row (records a writer lost: a full queue, a record that could not be built) does
    not break the chain but makes the trail incomplete: ``ok`` is ``False``, ``dropped``
    sums the lost records and ``first_bad_id`` names the first gap row.
    """
    prev_hash = GENESIS_HASH
    prev_id: int | None = None
    rows = 0
    dropped = 0
    first_gap: int | None = None
    stmt = sa.select(AuditEvent).order_by(AuditEvent.id)
    with database.session() as session:
        for event in session.execute(stmt.execution_options(yield_per=1000)).scalars():
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
    last = prev_hash if rows else None
    if dropped:
        reason = (f"{dropped} records were dropped before they reached the database "
                  f"(first gap at row {first_gap})")
        return VerifyResult(False, rows, first_gap, reason, last, dropped)
    return VerifyResult(True, rows, None, None, last)
