"""food: EPCIS capture jobs, the event index, named queries, pull sources

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, minyun.core.db.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "food_captures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("capture_id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error_behaviour", sa.String(length=10), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("lake_version", sa.Integer(), nullable=True),
        _when("created_at", nullable=False),
        _when("finished_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("capture_id"),
    )
    op.create_table(
        "food_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=300), nullable=False),
        sa.Column("event_type", sa.String(length=24), nullable=False),
        _when("event_time", nullable=False),
        _when("record_time", nullable=False),
        sa.Column("action", sa.String(length=8), nullable=True),
        sa.Column("biz_step", sa.String(length=300), nullable=True),
        sa.Column("disposition", sa.String(length=300), nullable=True),
        sa.Column("read_point", sa.String(length=300), nullable=True),
        sa.Column("biz_location", sa.String(length=300), nullable=True),
        sa.Column("transformation_id", sa.String(length=300), nullable=True),
        _when("error_time"),
        sa.Column("error_reason", sa.String(length=300), nullable=True),
        sa.Column("capture_id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["capture_id"], ["food_captures.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    for column in ("event_type", "biz_step", "disposition", "read_point", "biz_location",
                   "transformation_id", "capture_id", "organization_id"):  # fmt: skip
        op.create_index(f"ix_food_events_{column}", "food_events", [column])
    op.create_index("ix_food_events_time", "food_events", ["event_time", "id"])
    op.create_index("ix_food_events_record", "food_events", ["record_time", "id"])
    op.create_table(
        "food_event_terms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=120), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.Column("number", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["event_pk"], ["food_events.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_food_terms_lookup", "food_event_terms", ["kind", "value", "event_pk"])
    op.create_index("ix_food_terms_event", "food_event_terms", ["event_pk"])
    op.create_table(
        "food_queries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=False),
        _when("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "food_pull_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("query", sa.JSON(), nullable=False),
        _when("watermark"),
        _when("last_run_at"),
        sa.Column("last_result", sa.Text(), nullable=True),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "food_names",
        sa.Column("uri", sa.String(length=300), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("uri"),
    )


def downgrade() -> None:
    op.drop_table("food_names")
    op.drop_table("food_pull_sources")
    op.drop_table("food_queries")
    op.drop_table("food_event_terms")
    op.drop_table("food_events")
    op.drop_table("food_captures")
