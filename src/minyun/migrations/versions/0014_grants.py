"""exchange: sharing applications and grants

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, minyun.core.db.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consumer_id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("applicant", sa.String(length=100), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("row_filter", sa.Text(), nullable=True),
        _when("expires_at", nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        _when("decided_at"),
        _when("created_at", nullable=False),
        sa.ForeignKeyConstraint(["consumer_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["resource_id"], ["resources.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_applications_consumer_id", "applications", ["consumer_id"])
    op.create_index("ix_applications_resource_id", "applications", ["resource_id"])
    op.create_index("ix_applications_status", "applications", ["status"])
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consumer_id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("row_filter", sa.Text(), nullable=True),
        sa.Column("clearance", sa.String(length=12), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        _when("expires_at", nullable=False),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("granted_by", sa.String(length=100), nullable=False),
        _when("created_at", nullable=False),
        sa.Column("revoked_by", sa.String(length=100), nullable=True),
        _when("revoked_at"),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["consumer_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["resource_id"], ["resources.id"]),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_grants_consumer_id", "grants", ["consumer_id"])
    op.create_index("ix_grants_resource_id", "grants", ["resource_id"])
    op.create_index("ix_grants_status", "grants", ["status"])


def downgrade() -> None:
    op.drop_table("grants")
    op.drop_table("applications")
