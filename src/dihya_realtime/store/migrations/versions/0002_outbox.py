"""Outbox: rows a host transaction publishes after it commits, and the relay's lease.

Not a feature's branch: ``rt.publish(..., session=)`` works whatever ``DIHYA_RT_FEATURES``
says, so ``migrate`` always runs this branch (``features.migration_branches``). The tables live
in the host app's database: see docs/host-integration.md.

Revision ID: 0002_outbox
Revises: 0001_foundation
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_outbox"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("outbox",)
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dihya_rt_outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("stream", sa.String(300), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("failed_at", TS, nullable=True),
        sa.UniqueConstraint("id", name="uq_dihya_rt_outbox_id"),
        sqlite_autoincrement=True,  # a deleted row's seq is never given again
    )
    op.create_index("ix_dihya_rt_outbox_state_seq", "dihya_rt_outbox", ["state", "seq"])
    relay = op.create_table(
        "dihya_rt_outbox_relay",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("until", sa.Float(), nullable=False, server_default="0"),
    )
    op.bulk_insert(relay, [{"name": "relay", "holder": None, "until": 0.0}])


def downgrade() -> None:
    op.drop_table("dihya_rt_outbox_relay")
    op.drop_index("ix_dihya_rt_outbox_state_seq", table_name="dihya_rt_outbox")
    op.drop_table("dihya_rt_outbox")
