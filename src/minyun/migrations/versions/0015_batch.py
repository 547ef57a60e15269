"""exchange: batch subscriptions and their deliveries

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, minyun.core.db.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "batch_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consumer_id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(length=12), nullable=False),
        sa.Column("every_minutes", sa.Integer(), nullable=True),
        sa.Column("sink_kind", sa.String(length=12), nullable=False),
        sa.Column("sink_format", sa.String(length=8), nullable=True),
        sa.Column("sink_target", sa.String(length=2000), nullable=True),
        sa.Column("sink_sealed", sa.Text(), nullable=True),
        sa.Column("sink_table", sa.String(length=128), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("delivered_version", sa.BigInteger(), nullable=True),
        _when("next_due_at"),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _when("created_at", nullable=False),
        sa.Column("stopped_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["consumer_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["resource_id"], ["resources.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batch_subscriptions_consumer_id", "batch_subscriptions", ["consumer_id"])
    op.create_index("ix_batch_subscriptions_resource_id", "batch_subscriptions", ["resource_id"])
    op.create_table(
        "batch_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("from_version", sa.BigInteger(), nullable=True),
        sa.Column("from_key", sa.BigInteger(), nullable=False),
        sa.Column("to_version", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(length=64), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("file_name", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        _when("created_at", nullable=False),
        _when("finished_at"),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["batch_subscriptions.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "subscription_id",
            "from_key",
            "to_version",
            name=op.f("uq_batch_deliveries_subscription_id"),
        ),
    )
    op.create_index("ix_batch_deliveries_subscription_id", "batch_deliveries", ["subscription_id"])
    op.create_index("ix_batch_deliveries_state", "batch_deliveries", ["state"])


def downgrade() -> None:
    op.drop_table("batch_deliveries")
    op.drop_table("batch_subscriptions")
