"""The :class:`Database`: one engine per process, sessions, migrations and a readiness ping.

Why the SQLite set-up looks the way it does: the service runs many greenlets/threads in one
process (``check_same_thread=False``), and several processes may share one file, so WAL lets
readers and a writer proceed together and ``busy_timeout`` makes a writer wait for the lock
instead of failing at once. pysqlite's own transaction handling never issues ``BEGIN`` before a
``SELECT``, which would make read-then-write sequences racy, so we switch it off and emit
``BEGIN`` ourselves; a connection with the execution option ``sqlite_begin="IMMEDIATE"`` takes
the write lock up front, which is how the audit writer serializes its hash chain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_SQLITE_BEGIN_MODES = {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}
# Connections per process kept open / opened beyond that under a burst (PostgreSQL).
POSTGRES_POOL_SIZE = 20
POSTGRES_POOL_OVERFLOW = 10
# A fixed key for pg_advisory_xact_lock so concurrent `migrate()` calls run one at a time.
MIGRATE_LOCK_KEY = 0x6469687961_6D6967  # "dihyamig"


def normalize_url(url: str) -> str:
    """Point bare PostgreSQL URLs at psycopg 3, the driver we ship with."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """An engine plus a session factory for one database URL.

    >>> db = Database("sqlite:///dihya_realtime.db")
    >>> db.migrate()
    >>> with db.session() as session:
    ...     session.add(...)          # committed on leaving the block, rolled back on error
    """

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        parsed = sa.engine.make_url(self.url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False}
            if parsed.database in (None, "", ":memory:"):
                # An in-memory database exists once per connection: share a single one.
                kwargs["poolclass"] = StaticPool
        elif self.dialect == "postgresql":
            kwargs["pool_pre_ping"] = True
            # SQLAlchemy's default (5 kept + 10 overflow) suits threads, not hundreds of
            # greenlets: under load every checkout past the fifth opened a new PostgreSQL
            # connection and closed it on return (7.5% of the loop in the chat bench, plus
            # the waits). Keep enough open; several processes share max_connections (100).
            kwargs["pool_size"] = POSTGRES_POOL_SIZE
            kwargs["max_overflow"] = POSTGRES_POOL_OVERFLOW
            kwargs["connect_args"] = {"connect_timeout": 5}
        self._engine = sa.create_engine(
            self.url, json_serializer=_json_dumps, json_deserializer=_json_loads, **kwargs
        )
        if self.dialect == "sqlite":
            event.listen(self._engine, "connect", _sqlite_on_connect)
            event.listen(self._engine, "begin", _sqlite_on_begin)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        """A Core connection in a transaction that holds the write lock from its first statement
        on SQLite (``BEGIN IMMEDIATE``); on PostgreSQL an ordinary transaction."""
        with self._engine.connect() as conn:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def migrate(self, branches: list[str] | None = None) -> None:
        """Apply every pending migration of ``branches`` (Alembic branch labels; ``None``: every
        branch, ``alembic upgrade heads``). Each feature with tables has its own branch, so a
        server without a feature (``DIHYA_RT_FEATURES``) never creates that feature's tables.

        Uses the scripts shipped in ``store/migrations``; no ``alembic.ini`` is needed. Safe to
        run from several processes at once: PostgreSQL takes an advisory lock, SQLite the
        write lock, and the loser then finds nothing left to do.
        """
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.write_transaction() as conn:
            if self.is_postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATE_LOCK_KEY)))
            config.attributes["connection"] = conn
            if branches is None:
                command.upgrade(config, "heads")
                return
            labels = _branch_labels(config)
            for branch in branches:
                if branch in labels:
                    command.upgrade(config, labels[branch])

    def has_table(self, name: str) -> bool:
        """Does the table exist (a command run before ``migrate`` says so, not a traceback)?"""
        return sa.inspect(self._engine).has_table(name)

    def ping(self) -> None:
        """Raise if the database cannot be reached (``/readyz`` turns that into 503)."""
        with self._engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection (shutdown, or after a fork)."""
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"Database({sa.engine.make_url(self.url).render_as_string(hide_password=True)!r})"


def _json_dumps(value: Any) -> str:
    """JSON columns through orjson (the stdlib encoder was a quarter of an audit row's cost);
    what orjson refuses (an integer beyond 64 bits, NaN kept as such) goes to the stdlib."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def _json_loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN / Infinity written by the stdlib fallback
        return json.loads(text)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see module docstring
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = str(conn.get_execution_options().get("sqlite_begin", "DEFERRED")).upper()
    if mode not in _SQLITE_BEGIN_MODES:
        raise ValueError(f"sqlite_begin must be one of {sorted(_SQLITE_BEGIN_MODES)}")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _branch_labels(config: Any) -> dict[str, str]:
    """Every branch label the shipped migrations declare → the revision to upgrade to.

    A feature's branch goes to its head (``chat@head``). The foundation, which every feature
    branch grows from, has one head per feature: it goes to the revision that declares it.
    """
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(config)
    targets: dict[str, str] = {}
    for rev in script.walk_revisions():
        for label in rev.branch_labels or ():
            shared = len(rev.nextrev) > 1
            targets[label] = rev.revision if shared else f"{label}@head"
    return targets
