"""Collaborative documents: explicit access grants, and the quarantine of bad updates.

Revision ID: 0003_collab_access
Revises: 0002_collab
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_collab_access"
down_revision: str | Sequence[str] | None = "0002_collab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "doc_grants",
        sa.Column("doc_id", sa.String(128), sa.ForeignKey("docs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("subject", sa.String(128), primary_key=True),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("granted_by", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "doc_quarantine",
        sa.Column("doc_id", sa.String(128), sa.ForeignKey("docs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("update", sa.LargeBinary(), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("doc_quarantine")
    op.drop_table("doc_grants")
