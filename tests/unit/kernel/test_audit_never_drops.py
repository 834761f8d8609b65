"""Audit records never drop: client strings are escaped (not stripped, never breaking the
JSON), cut fields are marked, and a record that is lost anyway leaves a gap that
``audit verify`` reports. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from dihya_realtime.cli import main
from dihya_realtime.kernel.audit import AuditLog, verify
from dihya_realtime.store import Database
from dihya_realtime.store.models import AuditEvent


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


def _rows(database: Database) -> list[AuditEvent]:
    with database.session() as session:
        return list(session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)))


def test_a_client_string_holding_backslash_u0000_is_recorded_as_sent(
        audit: AuditLog, database: Database) -> None:
    sent = "room\\u0000x"  # the six characters \u0000, not a NUL
    audit.record("subscribe_refused", user_id="bob", details={"channel": sent, "n": 1})
    assert audit.flush(10)
    rows = _rows(database)
    assert len(rows) == 1
    assert rows[0].details["channel"] == sent
    assert verify(database).ok


def test_a_nul_in_a_user_id_is_escaped_not_stripped(audit: AuditLog, database: Database,
                                                     capsys) -> None:
    audit.record("connect", user_id="alice\x00", details={"k\x00": "v\x00\ud800"})
    assert audit.flush(10)
    row = _rows(database)[0]
    assert row.user_id != "alice"
    assert row.user_id == "alice\\x00"
    assert row.details["k\\x00"] == "v\\x00\\ud800"
    assert set(row.details["_audit"]["escaped"]) == {"user_id", "details"}
    assert verify(database).ok


def test_escaping_is_unambiguous_for_a_literal_backslash_x00(audit: AuditLog,
                                                             database: Database) -> None:
    audit.record("connect", user_id="alice\\x00")  # typed by a client: no NUL
    audit.record("connect", user_id="alice\x00")
    assert audit.flush(10)
    literal, escaped = _rows(database)
    assert literal.user_id == "alice\\x00" and not literal.details
    assert escaped.details["_audit"]["escaped"] == ["user_id"]


def test_an_over_long_field_is_cut_and_marked(audit: AuditLog, database: Database) -> None:
    audit.record("connect", user_agent="x" * 5000, details={"a": 1})
    assert audit.flush(10)
    row = _rows(database)[0]
    assert len(row.user_agent) == 512 and row.user_agent.endswith("…")
    assert row.details["_audit"]["truncated"] == {"user_agent": 5000}
    assert row.details["a"] == 1
    assert verify(database).ok


def test_the_json_line_carries_the_escaped_record(capsys) -> None:
    log = AuditLog(None, "-")
    log.record("connect", user_id="alice\x00", details={"channel": "a\\u0000"})
    line = json.loads(capsys.readouterr().out)
    assert line["user_id"] == "alice\\x00"
    assert line["details"]["channel"] == "a\\u0000"


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


def test_a_record_that_cannot_be_built_leaves_a_gap_verify_reports(
        audit: AuditLog, database: Database, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="dihya_realtime.audit")
    audit.record("connect", user_id="a")
    audit.record("connect", user_id="b", details={"x": _Unprintable()})
    audit.record("connect", user_id="c")
    assert audit.flush(10)
    result = verify(database)
    assert not result.ok
    assert result.dropped == 1
    assert "dropped" in (result.reason or "")


def test_verify_reports_records_dropped_from_a_full_queue(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    missing = tmp_path / "not-yet"
    url = f"sqlite:///{missing / 'audit.db'}"
    database = Database(url)
    log = AuditLog(database, "off", max_queue=3, batch_interval=0.01)
    for i in range(5):
        log.record("connect", user_id=str(i))
    assert log.dropped == 2
    missing.mkdir()
    database.migrate()
    assert log.flush(timeout=10)
    log.close()
    rows = _rows(database)
    assert [r.user_id for r in rows if r.type == "connect"] == ["2", "3", "4"]
    result = verify(database)
    assert not result.ok and result.dropped == 2
    database.dispose()
    monkeypatch.setenv("DIHYA_RT_DATABASE_URL", url)
    assert main(["audit", "verify"]) == 1
    assert "2 records were dropped" in capsys.readouterr().err


def test_a_lost_last_record_is_in_the_chain_once_flushed(audit: AuditLog, database: Database,
                                                         capsys) -> None:
    audit.record("connect", user_id="a")
    audit.record("connect", details={"x": _Unprintable()})  # the last one: no batch follows
    assert audit.flush(10)
    assert [r.type for r in _rows(database)] == ["connect", "audit_gap"]


def test_a_lost_record_leaves_a_gap_line_in_the_json_log(capsys) -> None:
    log = AuditLog(None, "-")
    log.record("connect", details={"x": _Unprintable()})
    line = json.loads(capsys.readouterr().out)
    assert line["type"] == "audit_gap" and line["details"] == {"dropped": 1}


def test_audit_verify_before_migrate_says_what_to_do(tmp_path, monkeypatch, capsys):
    """A database that was never migrated has no trail: a clear message and exit 2, not a
    traceback (and never "intact")."""
    from dihya_realtime.cli import main

    monkeypatch.setenv("DIHYA_RT_DATABASE_URL", f"sqlite:///{tmp_path / 'never.db'}")
    monkeypatch.setenv("DIHYA_RT_JWT_SECRET", "s" * 40)
    assert main(["audit", "verify"]) == 2
    assert "run `dihya-realtime migrate` first" in capsys.readouterr().err
