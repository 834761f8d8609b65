"""Collaborative documents: docs, their update log and their snapshots.

Revision ID: 0002_collab
Revises: 0001_foundation
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_collab"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("collab",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "docs",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
    )
    op.create_table(
        "doc_updates",
        sa.Column("doc_id", sa.String(128), sa.ForeignKey("docs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("update", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "doc_snapshots",
        sa.Column("doc_id", sa.String(128), sa.ForeignKey("docs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("upto_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("doc_snapshots")
    op.drop_table("doc_updates")
    op.drop_table("docs")
