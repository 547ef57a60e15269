"""subjects: links of source rows to subjects, changes, models, runs, reviews

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, minyun.core.db.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "subject_links",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("row_key", sa.String(length=200), nullable=False),
        sa.Column("subject_id", sa.String(length=16), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("ident", sa.String(length=64), nullable=True),
        sa.Column("lake_version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("resource", "row_key"),
    )
    op.create_index("ix_subject_links_subject", "subject_links", ["subject_id"])
    op.create_index("ix_subject_links_kind", "subject_links", ["kind"])
    op.create_index("ix_subject_links_ident", "subject_links", ["ident"])
    op.create_table(
        "subject_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("subject_id", sa.String(length=16), nullable=False),
        sa.Column("other_id", sa.String(length=16), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("by", sa.String(length=100), nullable=False),
        _when("at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subject_changes_run_id", "subject_changes", ["run_id"])
    op.create_index("ix_subject_changes_subject_id", "subject_changes", ["subject_id"])
    op.create_index("ix_subject_changes_other_id", "subject_changes", ["other_id"])
    op.create_table(
        "subject_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("trained_on", sa.Integer(), nullable=False),
        _when("trained_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subject_models_kind", "subject_models", ["kind"])
    op.create_table(
        "subject_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("engine", sa.String(length=12), nullable=False),
        sa.Column("mode", sa.String(length=12), nullable=False),
        _when("started_at", nullable=False),
        _when("finished_at"),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "subject_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("left_uid", sa.String(length=270), nullable=False),
        sa.Column("right_uid", sa.String(length=270), nullable=False),
        sa.Column("match_probability", sa.Float(), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        _when("decided_at"),
        _when("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("left_uid", "right_uid"),
    )
    op.create_index("ix_subject_reviews_kind", "subject_reviews", ["kind"])
    op.create_index("ix_subject_reviews_status", "subject_reviews", ["status"])


def downgrade() -> None:
    for table in (
        "subject_reviews",
        "subject_runs",
        "subject_models",
        "subject_changes",
        "subject_links",
    ):
        op.drop_table(table)
