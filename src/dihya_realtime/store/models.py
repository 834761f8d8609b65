"""The tables every feature shares: users and the audit trail.

Timestamps are always timezone-aware UTC in Python. PostgreSQL stores ``timestamptz``; SQLite
has no time zones, so :class:`UTCDateTime` stores naive UTC there and re-attaches UTC on read.
JSON columns are ``json`` on PostgreSQL, not ``jsonb``: jsonb rewrites numbers and key order,
and the audit hash chain must re-read exactly what it hashed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime on both databases; naive datetimes are refused."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every model; ``Base.metadata`` is what migrations describe."""


class User(Base):
    """A user seen at least once, keyed by the JWT ``sub``; refreshed at every connect."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(256), nullable=True)
    roles: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class AuditEvent(Base):
    """One row of the hash-chained audit trail (written only by
    :mod:`dihya_realtime.kernel.audit`)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    type: Mapped[str] = mapped_column(sa.String(64), nullable=False, index=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    sid: Mapped[str | None] = mapped_column(sa.String(64))
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))
    origin: Mapped[str | None] = mapped_column(sa.String(512))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    event: Mapped[str | None] = mapped_column(sa.String(128))
    outcome: Mapped[str | None] = mapped_column(sa.String(64))
    details: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    prev_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)


def upsert_user(
    session: Session,
    user_id: str,
    name: str | None,
    roles: list[str] | tuple[str, ...],
    now: datetime,
) -> None:
    """Insert the user, or refresh ``name`` (when given), ``roles`` and ``last_seen``.

    One ``INSERT … ON CONFLICT DO UPDATE`` statement, so two processes accepting the same
    user's connections at once cannot collide; ``first_seen`` keeps its first value.
    """
    upsert_users(session, [(user_id, name, roles)], now)


def upsert_users(
    executor: Session | sa.Connection,
    users: Sequence[tuple[str, str | None, list[str] | tuple[str, ...]]],
    now: datetime,
) -> None:
    """:func:`upsert_user` for many ``(user_id, name, roles)`` at once, in the caller's
    transaction: a burst of connects then costs one commit, not one per user.

    A user given twice is merged as if upserted in order (one row may not be upserted twice
    in one statement): the last roles, the last name given.
    """
    latest: dict[str, tuple[str | None, list[str]]] = {}
    for user_id, name, roles in users:
        known = latest.get(user_id)
        latest[user_id] = (name if name is not None or known is None else known[0], list(roles))
    if not latest:
        return
    bind = executor.get_bind() if isinstance(executor, Session) else executor
    dialect = bind.dialect.name
    insert: Any
    if dialect == "postgresql":
        insert = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(f"upsert_user does not support {dialect}")
    table = User.__table__
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={
            "name": sa.func.coalesce(stmt.excluded.name, table.c.name),
            "roles": stmt.excluded.roles,
            "last_seen": stmt.excluded.last_seen,
        },
    )
    executor.execute(stmt, [
        {"id": user_id, "name": name, "roles": roles, "first_seen": now, "last_seen": now}
        for user_id, (name, roles) in latest.items()
    ])
