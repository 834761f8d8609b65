"""Fixtures shared by every layer of the suite: databases, Redis, settings, free ports.

PostgreSQL and Redis are real servers (``make test`` starts them). Each test session gets
its own PostgreSQL database and its own Redis key prefix, so runs never see each other.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "DIHYA_RT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DIHYA_RT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session (dropped afterwards)."""
    import sqlalchemy as sa

    name = f"dihya_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Run the test once on SQLite (a fresh file) and once on PostgreSQL (fresh schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    import sqlalchemy as sa

    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a clean slate per test: drop every table we made
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@contextmanager
def redis_key_prefix(redis_url: str = REDIS_URL) -> Iterator[str]:
    """A unique key prefix; every key under it is deleted on leaving the block."""
    import redis

    prefix = f"dihya-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix for one test (see :func:`redis_key_prefix`)."""
    with redis_key_prefix(redis_url) as prefix:
        yield prefix


@pytest.fixture
def jwt_secret() -> str:
    return "test-secret-" + "x" * 32
