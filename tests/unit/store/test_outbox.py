"""The outbox tables: created by their own migration branch, as declared; ids never reused;
one lease holder at a time."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dihya_realtime.features import migration_branches
from dihya_realtime.store import Base, Database
from dihya_realtime.store.outbox import (
    OUTBOX,
    delete_row,
    insert_row,
    pending_rows,
    release_lease,
    take_lease,
)


def test_the_outbox_migration_matches_the_tables(database_url):
    db = Database(database_url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.dispose()
    assert [d for d in diff if "dihya_rt_outbox" in repr(d)] == []


def test_the_outbox_branch_runs_whatever_features_are_on(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        db.migrate(migration_branches(["session"]))
        assert db.has_table("dihya_rt_outbox") and db.has_table("dihya_rt_outbox_relay")
        assert not db.has_table("chat_rooms")
    finally:
        db.dispose()


def test_a_deleted_rows_seq_is_never_given_again(database_url):
    db = Database(database_url)
    try:
        db.migrate(["foundation", "outbox"])
        with db.write_transaction() as conn:
            insert_row(conn, "publish", "live:a", {"n": 1})
            insert_row(conn, "publish", "live:a", {"n": 2})
        with db.write_transaction() as conn:
            first, second = pending_rows(conn, 10)
            delete_row(conn, second.seq)
            insert_row(conn, "publish", "live:a", {"n": 3})
        with db.engine.connect() as conn:
            rows = pending_rows(conn, 10)
            ids = set(conn.execute(sa.select(OUTBOX.c.id)).scalars())
        assert [r.payload for r in rows] == [{"n": 1}, {"n": 3}]
        assert rows[1].seq > second.seq
        assert len(ids) == 2 and second.id not in ids
    finally:
        db.dispose()


def test_one_lease_holder_until_it_releases_or_its_lease_ends(database_url):
    db = Database(database_url)
    try:
        db.migrate(["foundation", "outbox"])
        with db.write_transaction() as conn:
            assert take_lease(conn, "a", 10, now=1000)
            assert not take_lease(conn, "b", 10, now=1005)
            assert take_lease(conn, "a", 10, now=1005)  # renewed: until 1015
            assert not take_lease(conn, "b", 10, now=1014)
            assert take_lease(conn, "b", 10, now=1016)  # a's lease ended (a was killed)
            release_lease(conn, "b")
            assert take_lease(conn, "a", 10, now=1017)
    finally:
        db.dispose()
