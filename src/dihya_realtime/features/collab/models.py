"""The collab feature's tables: the document row, its update log, snapshot, grants, quarantine.

They live with the feature (the store keeps only the shared base and the tables every feature
uses); the migrations that create them are the ``collab`` branch in ``store/migrations``.

A document's content is a Yjs (CRDT) state. Every accepted update is appended to
``doc_updates`` with the next ``seq`` of its document *before* the client gets its ack, so a
restart of every process loses no acknowledged update. Compaction merges the updates into
``doc_snapshots`` and deletes them, in one transaction. ``docs.last_seq`` hands out the
sequence numbers: incrementing it takes the row lock, so appends to one document commit in
``seq`` order on every database, and a reader that has seen ``seq`` n has seen every seq < n.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dihya_realtime.store.models import Base, UTCDateTime


class DocRecord(Base):
    """One collaborative document and the last sequence number handed out for it."""

    __tablename__ = "docs"

    id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    created_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)


class DocUpdate(Base):
    """One Yjs update as a client sent it (binary, never inspected beyond validation)."""

    __tablename__ = "doc_updates"

    doc_id: Mapped[str] = mapped_column(
        sa.String(128), sa.ForeignKey("docs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    update: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    user_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class DocSnapshot(Base):
    """The merged state of every update of a document up to and including ``upto_seq``."""

    __tablename__ = "doc_snapshots"

    doc_id: Mapped[str] = mapped_column(
        sa.String(128), sa.ForeignKey("docs.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    upto_seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class DocGrant(Base):
    """Access to one document granted to a user or to every holder of a role.

    Without a grant only the document's creator (and a holder of ``doc:admin``) may open it;
    ``mode`` is ``read`` or ``edit``. Role permissions stay a ceiling: a grant of ``edit`` to
    a user whose roles lack ``doc:edit`` gives ``read``.
    """

    __tablename__ = "doc_grants"

    doc_id: Mapped[str] = mapped_column(
        sa.String(128), sa.ForeignKey("docs.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8), primary_key=True)  # "user" | "role"
    subject: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    mode: Mapped[str] = mapped_column(sa.String(8), nullable=False)  # "read" | "edit"
    granted_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class DocQuarantine(Base):
    """A stored update that no longer applies to its document, moved out of ``doc_updates``.

    Kept (not deleted) so that an operator can look at it; compaction never reads it.
    """

    __tablename__ = "doc_quarantine"

    doc_id: Mapped[str] = mapped_column(
        sa.String(128), sa.ForeignKey("docs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    update: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    user_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    quarantined_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    reason: Mapped[str] = mapped_column(sa.String(200), nullable=False)


# The Core tables, for the statements that bypass the ORM unit of work (the update log's hot
# path). Declarative types ``__table__`` as a FromClause; these are Tables.
docs_table = cast(sa.Table, DocRecord.__table__)
updates_table = cast(sa.Table, DocUpdate.__table__)
snapshots_table = cast(sa.Table, DocSnapshot.__table__)
grants_table = cast(sa.Table, DocGrant.__table__)
quarantine_table = cast(sa.Table, DocQuarantine.__table__)
