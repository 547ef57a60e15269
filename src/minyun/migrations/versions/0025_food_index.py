"""food: the event index's indexes for queries at scale; query subscriptions

A standard query names a value (a business step, a read point, an event type, …) and pages
in eventTime order: one index on (column, event_time, id) answers both, where a
single-column index made the database sort every matching event first. Rarely set columns
(transformationID, the error declaration's time) are indexed only where set, and the
capture id's index (nothing reads by it) goes: fewer indexes for each captured event to
update. `food_subscriptions`: webhook subscriptions to named queries.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAIRED = ("event_type", "biz_step", "disposition", "read_point", "biz_location")


def upgrade() -> None:
    for column in (*PAIRED, "transformation_id", "capture_id"):
        op.drop_index(f"ix_food_events_{column}", table_name="food_events")
    for column in PAIRED:
        op.create_index(f"ix_food_events_{column}", "food_events", [column, "event_time", "id"])
    for column in ("transformation_id", "error_time"):
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_food_events_{column}", "food_events", [column],
            postgresql_where=where, sqlite_where=where,
        )  # fmt: skip

    op.create_table(
        "food_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("query_name", sa.String(length=100), nullable=False),
        sa.Column("dest", sa.Text(), nullable=False),
        sa.Column("signature_token", sa.Text(), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=True),
        sa.Column("report_if_empty", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("watermark", sa.Integer(), nullable=False),
        sa.Column("created_at", minyun.core.db.UTCDateTime(), nullable=False),
        sa.Column("last_run_at", minyun.core.db.UTCDateTime(), nullable=True),
        sa.Column("last_result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscription_id"),
    )
    op.create_index("ix_food_subscriptions_query_name", "food_subscriptions", ["query_name"])


def downgrade() -> None:
    op.drop_table("food_subscriptions")
    for column in (*PAIRED, "transformation_id", "error_time"):
        op.drop_index(f"ix_food_events_{column}", table_name="food_events")
    for column in (*PAIRED, "transformation_id", "capture_id"):
        op.create_index(f"ix_food_events_{column}", "food_events", [column])
