"""The store: migrations on both databases, the users upsert, the readiness ping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from dihya_realtime.store import Base, Database
from dihya_realtime.store.db import normalize_url
from dihya_realtime.store.models import User, upsert_user, upsert_users


@pytest.fixture
def database(database_url: str):
    db = Database(database_url)
    yield db
    db.dispose()


def test_bare_postgres_urls_use_psycopg3() -> None:
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_migrate_creates_the_tables(database: Database) -> None:
    assert "users" not in sa.inspect(database.engine).get_table_names()
    database.migrate()
    tables = set(sa.inspect(database.engine).get_table_names())
    assert {"users", "audit_events", "alembic_version"} <= tables
    # The migration and the models describe the same columns.
    for table in Base.metadata.sorted_tables:
        cols = {c["name"] for c in sa.inspect(database.engine).get_columns(table.name)}
        assert cols == set(table.columns.keys()), table.name


def migration_heads() -> list[str]:
    """Every branch head (features add branches off 0001_foundation)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from dihya_realtime.store.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return list(ScriptDirectory.from_config(config).get_heads())


def test_migrate_twice_is_a_no_op(database: Database) -> None:
    database.migrate()
    now = datetime.now(UTC)
    with database.session() as session:
        upsert_user(session, "17", "Ada", ["user"], now)
    database.migrate()
    with database.engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        assert sorted(versions) == sorted(migration_heads())
    with database.session() as session:
        assert session.get(User, "17") is not None


def test_upsert_user_inserts_then_refreshes(database: Database) -> None:
    database.migrate()
    first = datetime(2026, 11, 24, 8, 0, 0, 123000, tzinfo=UTC)
    later = first + timedelta(hours=2)
    with database.session() as session:
        upsert_user(session, "17", "Ada", ["user"], first)
    with database.session() as session:
        upsert_user(session, "17", None, ["user", "moderator"], later)
    with database.session() as session:
        user = session.get(User, "17")
        assert user is not None
        assert user.name == "Ada"  # a missing name does not erase the known one
        assert user.roles == ["user", "moderator"]
        assert user.first_seen == first
        assert user.last_seen == later
        assert user.last_seen.tzinfo is not None
        assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_upsert_users_does_many_in_one_transaction_as_if_in_order(database: Database) -> None:
    database.migrate()
    first = datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)
    later = first + timedelta(minutes=5)
    with database.session() as session:
        upsert_user(session, "17", "Ada", ["user"], first)
    with database.write_transaction() as conn:
        # "17" twice in one batch: one row may not be upserted twice in one statement
        upsert_users(conn, [("17", "Ada L.", ["user"]), ("18", None, ["user"]),
                            ("17", None, ["user", "moderator"])], later)
    with database.session() as session:
        ada, bob = session.get(User, "17"), session.get(User, "18")
        assert ada is not None and bob is not None
        assert (ada.name, ada.roles, ada.first_seen, ada.last_seen) == (
            "Ada L.", ["user", "moderator"], first, later)
        assert (bob.name, bob.first_seen, bob.last_seen) == (None, later, later)


def test_session_rolls_back_on_error(database: Database) -> None:
    database.migrate()
    with pytest.raises(RuntimeError), database.session() as session:
        upsert_user(session, "17", "Ada", ["user"], datetime.now(UTC))
        raise RuntimeError("boom")
    with database.session() as session:
        assert session.get(User, "17") is None


def test_ping_succeeds_on_a_live_database(database: Database) -> None:
    database.ping()


def test_ping_fails_when_the_database_is_unreachable(tmp_path) -> None:
    for url in (
        "postgresql://postgres@127.0.0.1:1/test",
        f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}",
    ):
        db = Database(url)
        with pytest.raises(sa.exc.OperationalError):
            db.ping()
        db.dispose()


def test_sqlite_uses_wal_and_foreign_keys(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    db.dispose()


def test_json_columns_keep_what_orjson_cannot_encode(database: Database) -> None:
    """JSON columns go through orjson, with the stdlib for what orjson refuses: an integer
    beyond 64 bits must still be stored and read back exactly, on both databases."""
    database.migrate()
    now = datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)
    with database.session() as session:
        upsert_user(session, "big", None, ["user", 2**70, "é"], now)  # type: ignore[list-item]
    with database.session() as session:
        user = session.get(User, "big")
        assert user is not None
        assert user.roles == ["user", 2**70, "é"]
