"""opendata: developers' applications for conditionally open datasets (开放申请)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, minyun.core.db.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "open_applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("applicant", sa.String(length=100), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        _when("decided_at"),
        _when("expires_at"),
        _when("created_at", nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["open_datasets.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_open_applications_dataset_id", "open_applications", ["dataset_id"])
    op.create_index("ix_open_applications_user_id", "open_applications", ["user_id"])
    op.create_index("ix_open_applications_status", "open_applications", ["status"])


def downgrade() -> None:
    op.drop_table("open_applications")
