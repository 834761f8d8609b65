"""Start-up output is ours: no Alembic INFO lines from ``serve`` or ``migrate``.

``serve`` logs at INFO; Alembic used to add a dozen lines ("setup plugin …", "Context impl
SQLiteImpl.", one "Running upgrade" per revision) to every ``make run``. It now stays at
WARNING unless ``--verbose`` asks, and ``migrate`` reports what it did in one line.
"""

from __future__ import annotations

import re

ALEMBIC_INFO = re.compile(r"INFO\s+\[?alembic")


def test_dev_serve_migrating_a_fresh_database_prints_no_alembic_info_line(start_server):
    server = start_server(args=("--dev",), migrate=False)  # serve --dev migrates in-process
    output = server.stdout() + server.stderr()
    assert server.ready_line
    assert not ALEMBIC_INFO.search(output), output
    assert "alembic" not in output, output
    # serve did migrate (quietly): the command finds nothing left to do
    again = server.cli("migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "database migrated: sqlite, already up to date"


def test_serve_verbose_shows_alembic_steps(start_server):
    server = start_server(args=("--dev", "--verbose"), migrate=False)
    output = server.stdout() + server.stderr()
    assert ALEMBIC_INFO.search(output), output
    assert "Running upgrade  -> 0001_foundation" in output


def test_migrate_reports_what_it_did_in_one_line(start_server):
    server = start_server(migrate=False, start=False)
    first = server.cli("migrate")
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(r"database migrated: sqlite, [1-9]\d* revision\(s\) applied\n",
                        first.stdout), first.stdout
    assert first.stderr == ""
    second = server.cli("migrate")
    assert second.stdout == "database migrated: sqlite, already up to date\n"
    assert second.stderr == ""
