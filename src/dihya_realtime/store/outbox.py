"""The outbox tables and the SQL the transactional publish stands on.

A host app that calls ``rt.publish(channel, data, session=db.session)`` gets one row in
``dihya_rt_outbox``, written through *its* session, so it commits or rolls back with the
host's own change. A relay (``kernel/outbox``) publishes committed rows and deletes them.
This module knows tables and statements only; who calls them and when is the relay's job.

- **Order.** ``seq`` is assigned at insert and never reused (SQLite ``AUTOINCREMENT``, a
  PostgreSQL identity). On PostgreSQL, :func:`insert_row` first takes
  ``pg_advisory_xact_lock`` on the row's ``stream`` (the channel): two transactions writing to
  one channel then run one after the other until commit, so ``seq`` order is commit order per
  channel. SQLite has one writer at a time anyway.
- **Wake-up.** On PostgreSQL the insert also runs ``pg_notify``: delivered at commit, and only
  if the transaction commits, it wakes the relays that ``LISTEN`` on :data:`NOTIFY_CHANNEL`.
- **One relay at a time.** ``dihya_rt_outbox_relay`` holds a lease (:func:`take_lease`): the
  relay holding it publishes, in ``seq`` order; the others wait. A relay killed while it held
  the lease is replaced once the lease ends.
- **The idempotency key.** ``id`` is a random hex string given at insert: the broker dedupes
  publications by it, so a relay that published and died before deleting the row does not
  publish twice when the row is taken again (a reused ``seq`` in a fresh database could not
  collide with a key still remembered by Redis).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dihya_realtime.store.models import Base, UTCDateTime

OUTBOX_TABLE = "dihya_rt_outbox"
RELAY_TABLE = "dihya_rt_outbox_relay"
NOTIFY_CHANNEL = "dihya_rt_outbox"
"""The PostgreSQL ``LISTEN`` channel an insert notifies (at commit)."""
LEASE_NAME = "relay"
PENDING = "pending"
FAILED = "failed"
MAX_ERROR_CHARS = 500
STREAM_LOCK_PREFIX = "dihya-rt-outbox:"

OUTBOX = sa.Table(
    OUTBOX_TABLE,
    Base.metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("stream", sa.String(300), nullable=True),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("state", sa.String(8), nullable=False, server_default=PENDING),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error", sa.String(MAX_ERROR_CHARS), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("failed_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("id", name="uq_dihya_rt_outbox_id"),
    sa.Index("ix_dihya_rt_outbox_state_seq", "state", "seq"),
    sqlite_autoincrement=True,
)
"""One row per publish (or notify, system message) waiting for its transaction's commit."""

RELAY_LEASE = sa.Table(
    RELAY_TABLE,
    Base.metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=True),
    sa.Column("until", sa.Float(), nullable=False, server_default="0"),
)
"""Which relay publishes now, and until when (unix seconds) unless it renews."""


@dataclass(frozen=True)
class OutboxRow:
    """A pending row as the relay reads it."""

    seq: int
    id: str
    kind: str
    stream: str | None
    payload: Any
    attempts: int


def new_outbox_id() -> str:
    return uuid.uuid4().hex


def insert_row(conn: Connection, kind: str, stream: str | None, payload: Any) -> str:
    """Write one pending row in ``conn``'s transaction (the host's); returns its id.

    PostgreSQL: a transaction-scoped advisory lock on ``stream`` first (commit order per
    stream, see the module docstring), then ``pg_notify`` (sent only at commit).
    """
    postgres = conn.dialect.name == "postgresql"
    if postgres and stream is not None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(
            sa.func.hashtext(STREAM_LOCK_PREFIX + stream))))
    outbox_id = new_outbox_id()
    conn.execute(sa.insert(OUTBOX).values(
        id=outbox_id, kind=kind, stream=stream, payload=payload, state=PENDING, attempts=0,
        created_at=datetime.now(UTC)))
    if postgres:
        conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))
    return outbox_id


def take_lease(conn: Connection, holder: str, seconds: float, now: float) -> bool:
    """Become (or stay) the relay that publishes, for ``seconds``; ``False``: another holds it.

    Creates the lease row the first time (a database migrated before it existed never lacks
    it: the migration inserts it, this is belt and braces).
    """
    taken = conn.execute(
        sa.update(RELAY_LEASE)
        .where(RELAY_LEASE.c.name == LEASE_NAME,
               sa.or_(RELAY_LEASE.c.holder == holder, RELAY_LEASE.c.holder.is_(None),
                      RELAY_LEASE.c.until < now))
        .values(holder=holder, until=now + seconds)).rowcount
    if taken:
        return True
    exists = conn.execute(sa.select(RELAY_LEASE.c.name)
                          .where(RELAY_LEASE.c.name == LEASE_NAME)).first()
    if exists is None:
        conn.execute(sa.insert(RELAY_LEASE).values(name=LEASE_NAME, holder=holder,
                                                   until=now + seconds))
        return True
    return False


def release_lease(conn: Connection, holder: str) -> None:
    """Give the lease up (a clean shutdown): another relay takes over at its next pass."""
    conn.execute(sa.update(RELAY_LEASE)
                 .where(RELAY_LEASE.c.name == LEASE_NAME, RELAY_LEASE.c.holder == holder)
                 .values(holder=None, until=0))


def pending_rows(conn: Connection, limit: int) -> list[OutboxRow]:
    """The oldest ``limit`` pending rows, in ``seq`` (commit, per stream) order."""
    rows = conn.execute(
        sa.select(OUTBOX.c.seq, OUTBOX.c.id, OUTBOX.c.kind, OUTBOX.c.stream, OUTBOX.c.payload,
                  OUTBOX.c.attempts)
        .where(OUTBOX.c.state == PENDING).order_by(OUTBOX.c.seq).limit(limit))
    return [OutboxRow(*row) for row in rows]


def delete_row(conn: Connection, seq: int) -> None:
    conn.execute(sa.delete(OUTBOX).where(OUTBOX.c.seq == seq))


def count_attempt(conn: Connection, seq: int, error: str) -> None:
    """One more failed attempt; the row stays pending."""
    conn.execute(sa.update(OUTBOX).where(OUTBOX.c.seq == seq)
                 .values(attempts=OUTBOX.c.attempts + 1, error=error[:MAX_ERROR_CHARS]))


def mark_failed(conn: Connection, seq: int, error: str) -> None:
    """Set a row the relay will not publish aside, with the reason (kept for an operator)."""
    conn.execute(sa.update(OUTBOX).where(OUTBOX.c.seq == seq)
                 .values(state=FAILED, error=error[:MAX_ERROR_CHARS],
                         failed_at=datetime.now(UTC)))


def count_state(conn: Connection, state: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)
                            .where(OUTBOX.c.state == state)).scalar_one())


__all__ = ["FAILED", "NOTIFY_CHANNEL", "OUTBOX", "PENDING", "RELAY_LEASE", "OutboxRow",
           "count_attempt", "count_state", "delete_row", "insert_row", "mark_failed",
           "pending_rows", "release_lease", "take_lease"]
