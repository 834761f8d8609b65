"""The audit trail: JSON lines, database rows off the hot path, and tamper detection."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from dihya_realtime.kernel.audit import GENESIS_HASH, AuditLog, verify
from dihya_realtime.store import Database
from dihya_realtime.store.models import AuditEvent

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
KEYS = [
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
]


@pytest.fixture
def database(database_url: str):
    db = Database(database_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def audit(database: Database):
    log = AuditLog(database, "off")
    yield log
    log.close()


def _record_some(audit: AuditLog, count: int = 5) -> None:
    for i in range(count):
        audit.record(
            "connect",
            user_id=f"user-{i}",
            sid=f"sid-{i}",
            remote_addr="10.0.0.1",
            origin="https://app.example",
            user_agent="pytest",
            outcome="ok",
            details={"i": i, "ratio": 0.1 * i, "nested": {"b": [1, "é"], "a": None}},
        )
    assert audit.flush(10)


def _rows(database: Database) -> list[AuditEvent]:
    with database.session() as session:
        return list(session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)))


def _sql(database: Database, statement: str, **params) -> None:
    with database.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_json_line_has_exactly_the_contract_keys(capsys) -> None:
    log = AuditLog(None, "-")
    log.record("auth_failure", remote_addr="10.0.0.9", outcome="denied", details={"why": "exp"})
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    line = json.loads(out[0])
    assert list(line) == KEYS
    assert TS.match(line["ts"]), line["ts"]
    assert line["type"] == "auth_failure"
    assert line["remote_addr"] == "10.0.0.9"
    assert line["user_id"] is None
    assert line["details"] == {"why": "exp"}


def test_off_target_writes_nothing(capsys) -> None:
    AuditLog(None, "off").record("connect")
    assert capsys.readouterr().out == ""


def test_file_target_gets_one_line_per_event_at_once(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(None, str(path))
    log.record("connect", user_id="17")
    assert json.loads(path.read_text())["user_id"] == "17"  # readable before close
    log.record("disconnect", user_id="17")
    log.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["type"] for x in lines] == ["connect", "disconnect"]


def test_sensitive_detail_keys_are_redacted(capsys, database: Database) -> None:
    log = AuditLog(database, "-")
    details = {
        "token": "eyJ.secret",
        "Password": "hunter2",
        "data": {"msg": "hi"},
        "nested": [{"text": "body of a message", "body": "x"}],
        "channel": "chat:general",
    }
    log.record("publish", details=details)
    assert log.flush()
    log.close()
    expected = {
        "token": "[redacted]",
        "Password": "[redacted]",
        "data": "[redacted]",
        "nested": [{"text": "[redacted]", "body": "[redacted]"}],
        "channel": "chat:general",
    }
    out = capsys.readouterr().out
    assert "hunter2" not in out and "eyJ.secret" not in out
    assert json.loads(out)["details"] == expected
    assert _rows(database)[0].details == expected
    assert details["token"] == "eyJ.secret"  # the caller's dict is left alone


def test_records_land_in_the_database_after_flush(audit: AuditLog, database: Database) -> None:
    _record_some(audit, 5)
    rows = _rows(database)
    assert [r.user_id for r in rows] == [f"user-{i}" for i in range(5)]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, 5))
    assert rows[0].ts.tzinfo is not None
    assert rows[2].details["nested"] == {"b": [1, "é"], "a": None}


def test_untouched_chain_verifies(audit: AuditLog, database: Database) -> None:
    _record_some(audit, 7)
    result = verify(database)
    assert result.ok, result.reason
    assert result.rows == 7
    assert result.first_bad_id is None
    assert result.last_hash == _rows(database)[-1].hash


def test_the_walk_reads_a_page_at_a_time_and_pauses_between_pages(audit, database) -> None:
    """A server passes its event loop's yield as ``pause``: a long trail must not be walked
    in one stretch (nor in one open transaction)."""
    _record_some(audit, 7)
    walked_at_pause: list[int] = []
    queries: list[str] = []
    sa.event.listen(database.engine, "before_cursor_execute",
                    lambda *a: queries.append(a[2]) if "audit_events" in a[2] else None)
    result = verify(database, page_rows=3, pause=lambda: walked_at_pause.append(len(queries)))
    assert len(queries) == 3  # 3 + 3 + 1 rows
    assert result.ok and result.rows == 7
    assert result.last_hash == _rows(database)[-1].hash
    assert walked_at_pause == [1, 2]  # after each full page, before the next query


@pytest.mark.parametrize("page_rows", [1, 2, 3, 1000])
def test_a_change_is_found_whatever_the_page_size(audit, database, page_rows: int) -> None:
    _record_some(audit, 6)
    ids = [r.id for r in _rows(database)]
    _sql(database, "DELETE FROM audit_events WHERE id = :id", id=ids[3])  # a page boundary
    result = verify(database, page_rows=page_rows)
    assert (result.ok, result.first_bad_id, result.rows) == (False, ids[4], 4)
    assert f"does not match row {ids[2]}" in result.reason


def test_chain_continues_across_audit_log_instances(database: Database) -> None:
    for _ in range(2):
        log = AuditLog(database, "off")
        _record_some(log, 3)
        log.close()
    result = verify(database)
    assert result.ok and result.rows == 6


@pytest.mark.parametrize(
    ("column", "value"),
    [("details", '{"i": 99}'), ("user_id", "mallory"), ("outcome", "denied")],
)
def test_a_changed_row_is_named(audit, database: Database, column: str, value: str) -> None:
    _record_some(audit, 5)
    target = _rows(database)[2].id
    _sql(database, f"UPDATE audit_events SET {column} = :v WHERE id = :id", v=value, id=target)
    result = verify(database)
    assert not result.ok
    assert result.first_bad_id == target
    assert "hash mismatch" in result.reason


def test_a_changed_timestamp_is_detected(audit: AuditLog, database: Database) -> None:
    _record_some(audit, 3)
    target = _rows(database)[1].id
    with database.session() as session:
        row = session.get(AuditEvent, target)
        row.ts = row.ts.replace(year=2020)
    assert verify(database).first_bad_id == target


def test_a_deleted_middle_row_is_detected_at_the_next_row(audit, database: Database) -> None:
    _record_some(audit, 5)
    ids = [r.id for r in _rows(database)]
    _sql(database, "DELETE FROM audit_events WHERE id = :id", id=ids[2])
    result = verify(database)
    assert not result.ok
    assert result.first_bad_id == ids[3]
    assert f"does not match row {ids[1]}" in result.reason


def test_a_deleted_first_row_is_detected(audit: AuditLog, database: Database) -> None:
    _record_some(audit, 3)
    ids = [r.id for r in _rows(database)]
    _sql(database, "DELETE FROM audit_events WHERE id = :id", id=ids[0])
    result = verify(database)
    assert result.first_bad_id == ids[1]
    assert "genesis" in result.reason


def test_a_forged_row_is_detected(audit: AuditLog, database: Database) -> None:
    _record_some(audit, 3)
    last = _rows(database)[-1]
    _sql(
        database,
        "INSERT INTO audit_events (id, ts, type, user_id, details, prev_hash, hash) "
        "VALUES (:id, :ts, 'admin_action', 'mallory', NULL, :prev, :hash)",
        id=last.id + 1,
        ts=last.ts.replace(tzinfo=None) if database.is_sqlite else last.ts,
        prev=last.hash,
        hash="f" * 64,
    )
    result = verify(database)
    assert result.first_bad_id == last.id + 1
    assert "hash mismatch" in result.reason


def test_a_row_forged_with_a_valid_hash_breaks_the_next_link(audit, database) -> None:
    """A forger who recomputes the hash of a row slipped in between still breaks the chain."""
    from dihya_realtime.kernel.audit import chain_hash, row_fields

    _record_some(audit, 3)
    rows = _rows(database)
    # Make room in the middle by moving the last row further up.
    _sql(
        database,
        "UPDATE audit_events SET id = :new WHERE id = :old",
        new=rows[2].id + 10,
        old=rows[2].id,
    )
    forged = AuditEvent(
        id=rows[2].id, ts=rows[1].ts, type="admin_action", user_id="mallory", details={"i": 1}
    )
    forged.prev_hash = rows[1].hash
    forged.hash = chain_hash(forged.prev_hash, row_fields(forged))
    with database.session() as session:
        session.add(forged)
    result = verify(database)
    assert result.first_bad_id == rows[2].id + 10
    assert "deleted or inserted" in result.reason


def test_concurrent_writers_keep_one_valid_chain(database: Database) -> None:
    """Two AuditLogs on one database stand in for two server processes."""
    logs = [AuditLog(database, "off", batch_size=7, batch_interval=0.005) for _ in range(2)]

    def produce(log: AuditLog, who: str) -> None:
        for i in range(150):
            log.record("publish", user_id=who, details={"i": i})
            if i % 10 == 0:
                time.sleep(0.001)

    threads = [threading.Thread(target=produce, args=(log, f"w{n}")) for n, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        assert log.flush(20)
        log.close()
    result = verify(database)
    assert result.ok, result.reason
    assert result.rows == 300
    rows = _rows(database)
    for who in ("w0", "w1"):  # each writer's own events keep their order
        assert [r.details["i"] for r in rows if r.user_id == who] == list(range(150))


def test_record_never_blocks_and_events_wait_for_the_database(tmp_path: Path, caplog) -> None:
    missing = tmp_path / "not-yet"  # SQLite cannot create a file in a missing directory
    database = Database(f"sqlite:///{missing / 'audit.db'}")
    log = AuditLog(database, "off", batch_interval=0.01)
    caplog.set_level(logging.WARNING, logger="dihya_realtime.audit")
    started = time.monotonic()
    for i in range(50):
        log.record("connect", user_id=str(i))
    assert time.monotonic() - started < 0.5
    assert not log.flush(timeout=0.3)
    assert log.pending == 50
    assert any("database write failed" in r.getMessage() for r in caplog.records)

    missing.mkdir()
    database.migrate()
    assert log.flush(timeout=10)
    log.close()
    assert log.pending == 0 and log.dropped == 0
    assert [r.user_id for r in _rows(database)] == [str(i) for i in range(50)]
    assert verify(database).ok
    database.dispose()


def test_a_full_queue_drops_the_oldest_and_says_so(tmp_path: Path, caplog) -> None:
    missing = tmp_path / "not-yet"
    database = Database(f"sqlite:///{missing / 'audit.db'}")
    log = AuditLog(database, "off", max_queue=3, batch_interval=0.01)
    caplog.set_level(logging.WARNING, logger="dihya_realtime.audit")
    for i in range(5):
        log.record("connect", user_id=str(i))
    assert log.dropped == 2
    assert any("queue full" in r.getMessage() for r in caplog.records)
    missing.mkdir()
    database.migrate()
    assert log.flush(timeout=10)
    log.close()
    # the dropped records leave a gap row ahead of the rest (see test_audit_never_drops.py)
    assert [(r.type, r.user_id) for r in _rows(database)] == [
        ("audit_gap", None), ("connect", "2"), ("connect", "3"), ("connect", "4")]
    database.dispose()


def test_record_does_not_raise_on_odd_input(audit: AuditLog, database: Database) -> None:
    audit.record(
        "connect",
        user_agent="x" * 5000 + "\x00",
        details={"when": object(), 1: "int key", "big": 2**80},
    )
    assert audit.flush()
    row = _rows(database)[0]
    assert len(row.user_agent) == 512
    assert verify(database).ok


def test_a_backlog_is_written_in_large_batches_in_chain_order(database: Database, caplog) -> None:
    """A writer that fell behind takes up to 5 × batch_size rows per transaction (one
    executemany); ids must still follow the chain on both databases."""
    log = AuditLog(database, "off", batch_size=40, batch_interval=0.005)
    caplog.set_level(logging.WARNING, logger="dihya_realtime.audit")
    with log._cond:  # hold the writer back so that a backlog builds up
        for i in range(1000):
            log.record("publish", user_id=f"u{i % 7}", details={"i": i, "ratio": i / 3})
    assert log.flush(20)
    log.close()
    rows = _rows(database)
    assert [r.details["i"] for r in rows] == list(range(1000))
    assert rows[1].details["ratio"] == pytest.approx(1 / 3)
    assert rows[0].ts.tzinfo is not None
    result = verify(database)
    assert result.ok, result.reason
    assert result.rows == 1000


def test_the_audit_log_opens_nothing_until_started(tmp_path):
    """Flask manners: the constructor opens no file and starts no thread; init_app (or, in
    a worker, the first record) does."""
    from dihya_realtime.kernel.audit import AuditLog

    target = tmp_path / "audit.log"
    log = AuditLog(None, str(target))
    assert not target.exists() and not log.started
    log.record("connect", outcome="ok")
    assert log.started and target.read_text().count('"connect"') == 1
    log.close()


def test_a_lone_record_reaches_the_database_within_the_batch_interval(tmp_path: Path) -> None:
    """Nobody flushes: one record (far below a batch) must still be written after the batch
    interval. The writer slept until a full batch before, so a quiet server's audit rows
    never reached the database until shutdown."""
    database = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    database.migrate()
    log = AuditLog(database, "off", batch_interval=0.05)
    log.record("connect", user_id="alone")
    deadline = time.monotonic() + 5
    while not _rows(database) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.user_id for r in _rows(database)] == ["alone"]
    log.record("connect", user_id="second")  # and again, once the writer slept once more
    deadline = time.monotonic() + 5
    while len(_rows(database)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.user_id for r in _rows(database)] == ["alone", "second"]
    log.close()
    database.dispose()
