"""Appending a batch of records to the hash chain in the database, in one transaction.

Why apart from the writer thread: this is the only code that touches the ``audit_events``
table on the way in, and it is where the chain is extended, so its rules are read in one place.
Several processes may share one database, so each batch reads the last hash and appends inside
one serialized transaction (``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite, which the caller's ``Database.write_transaction`` opens).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from dihya_realtime.kernel.audit.chain import FIELDS, GENESIS_HASH, chain_hash
from dihya_realtime.store.models import AuditEvent

# Serializes chain appends across processes on PostgreSQL ("dihyaaud").
AUDIT_LOCK_KEY = 0x6469687961617564

_COLUMNS = (*FIELDS, "prev_hash", "hash")


@dataclass(frozen=True, slots=True)
class RowInsert:
    """The audit row INSERT compiled once for a dialect, run as one DBAPI ``executemany``.

    Why not ``conn.execute(insert(table), rows)``: SQLAlchemy rebuilds and type-processes
    every row's parameters in Python, half of a row's cost in a writer that shares the event
    loop's core. The columns' own bind processors are applied here instead, so what is
    stored is byte for byte what SQLAlchemy would store (``verify`` reads it back through
    the ORM).
    """

    sql: str
    positional: bool
    processors: tuple[tuple[int, Any], ...]  # (column index, the type's bind processor)

    @classmethod
    def compile(cls, dialect: sa.Dialect) -> RowInsert:
        table = cast(sa.Table, AuditEvent.__table__)
        compiled = sa.insert(table).compile(dialect=dialect, column_keys=list(_COLUMNS))
        if compiled.positional and list(compiled.positiontup or ()) != list(_COLUMNS):
            raise RuntimeError(f"unexpected audit INSERT parameters: {compiled.positiontup}")
        processors = tuple(
            (i, proc)
            for i, name in enumerate(_COLUMNS)
            if (proc := table.c[name].type.bind_processor(dialect)) is not None
        )
        return cls(str(compiled), bool(compiled.positional), processors)

    def params(self, values: list[Any]) -> tuple[Any, ...] | dict[str, Any]:
        for i, proc in self.processors:
            values[i] = proc(values[i])
        return tuple(values) if self.positional else dict(zip(_COLUMNS, values, strict=True))


def append_rows(
    conn: sa.Connection,
    insert: RowInsert,
    batch: list[tuple[dict[str, Any], datetime]],
    *,
    postgres: bool,
) -> None:
    """Chain ``batch`` (hashed fields, their timestamp) after the table's last row.

    ``conn`` is in the caller's write transaction; on PostgreSQL the advisory lock taken here
    is held until it commits, so no other process appends in between.
    """
    table = cast(sa.Table, AuditEvent.__table__)
    if postgres:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(AUDIT_LOCK_KEY)))
    prev = conn.execute(
        sa.select(table.c.hash).order_by(table.c.id.desc()).limit(1)
    ).scalar()
    prev = prev or GENESIS_HASH
    rows = []
    for fields, ts in batch:
        digest = chain_hash(prev, fields)
        values = [fields[name] for name in FIELDS]
        values[0] = ts
        values += (prev, digest)
        rows.append(insert.params(values))
        prev = digest
    # One executemany: the driver runs the rows one after another, in chain order.
    conn.exec_driver_sql(insert.sql, rows)
