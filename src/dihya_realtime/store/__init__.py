"""Durable storage: SQLAlchemy 2 models and Alembic migrations.

SQLite by default (one process, zero set-up), PostgreSQL in production. Feature modules reach
SQL only through this package; see :class:`Database` for the engine and sessions.
"""

from dihya_realtime.store.db import Database
from dihya_realtime.store.models import Base

__all__ = ["Base", "Database"]
