"""Alembic environment for dihya-realtime.

The URL comes from the Config built by :meth:`Database.migrate` (or an open connection in
``config.attributes["connection"]``), never from an ini file, so the migrations run the same
from the CLI, from tests and from an embedding app.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

import sqlalchemy as sa
from alembic import context

from dihya_realtime import features
from dihya_realtime.store.models import Base


def _import_feature_models() -> None:
    """Each feature keeps its tables in ``features/<name>/models.py``: import them all, so
    that ``Base.metadata`` (what autogenerate compares) holds every table."""
    for info in pkgutil.iter_modules(features.__path__):
        name = f"{features.__name__}.{info.name}.models"
        if info.ispkg and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


_import_feature_models()
config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: run migrations through Database.migrate()")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
