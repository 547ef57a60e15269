"""grid: areas (streets, communities, grids), services, routing rules, reports, tasks,
photos, timeline steps, Open311 api keys

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 22:35:13.907272
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grid_api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("rate_limit", sa.String(length=40), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", minyun.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_grid_api_keys_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_grid_api_keys_name")),
    )
    op.create_table(
        "grid_services",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("group", sa.String(length=60), nullable=False),
        sa.Column("keywords", sa.String(length=200), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("arrive_minutes", sa.Integer(), nullable=False),
        sa.Column("close_hours", sa.Float(), nullable=False),
        sa.Column("notice", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_grid_services")),
    )
    op.create_table(
        "grid_routing_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_code", sa.String(length=40), nullable=False),
        sa.Column("area_code", sa.String(length=16), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_grid_routing_rules_org_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["service_code"],
            ["grid_services.code"],
            name=op.f("fk_grid_routing_rules_service_code_grid_services"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_routing_rules")),
    )
    with op.batch_alter_table("grid_routing_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_grid_routing_rules_area_code"), ["area_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_grid_routing_rules_service_code"), ["service_code"], unique=False
        )

    op.create_table(
        "grid_areas",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("parent_code", sa.String(length=16), nullable=True),
        sa.Column("district_code", sa.String(length=12), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("office_org_id", sa.Integer(), nullable=True),
        sa.Column("worker_user_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["office_org_id"],
            ["organizations.id"],
            name=op.f("fk_grid_areas_office_org_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["worker_user_id"], ["users.id"], name=op.f("fk_grid_areas_worker_user_id_users")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_grid_areas")),
    )
    with op.batch_alter_table("grid_areas", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_grid_areas_district_code"), ["district_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_grid_areas_level"), ["level"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_grid_areas_parent_code"), ["parent_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_grid_areas_worker_user_id"), ["worker_user_id"], unique=False
        )

    op.create_table(
        "grid_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=40), nullable=False),
        sa.Column("service_code", sa.String(length=40), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("long", sa.Float(), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("grid_code", sa.String(length=16), nullable=True),
        sa.Column("community_code", sa.String(length=16), nullable=True),
        sa.Column("street_code", sa.String(length=16), nullable=True),
        sa.Column("district_code", sa.String(length=12), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("status_notes", sa.Text(), nullable=False),
        sa.Column("reporter_user_id", sa.Integer(), nullable=True),
        sa.Column("reporter", sa.String(length=120), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expected_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", minyun.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["grid_api_keys.id"],
            name=op.f("fk_grid_reports_api_key_id_grid_api_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["reporter_user_id"], ["users.id"], name=op.f("fk_grid_reports_reporter_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["service_code"],
            ["grid_services.code"],
            name=op.f("fk_grid_reports_service_code_grid_services"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_reports")),
        sa.UniqueConstraint("token", name=op.f("uq_grid_reports_token")),
    )
    with op.batch_alter_table("grid_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_grid_reports_district_code"), ["district_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_grid_reports_grid_code"), ["grid_code"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_grid_reports_reporter_user_id"), ["reporter_user_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_grid_reports_requested_at"), ["requested_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_grid_reports_service_code"), ["service_code"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_grid_reports_state"), ["state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_grid_reports_street_code"), ["street_code"], unique=False
        )

    op.create_table(
        "grid_photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("thumb_key", sa.String(length=200), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("had_location", sa.Boolean(), nullable=False),
        sa.Column("created_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["grid_reports.id"], name=op.f("fk_grid_photos_report_id_grid_reports")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_photos")),
    )
    with op.batch_alter_table("grid_photos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grid_photos_report_id"), ["report_id"], unique=False)

    op.create_table(
        "grid_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_grid_steps_org_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"], ["grid_reports.id"], name=op.f("fk_grid_steps_report_id_grid_reports")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_steps")),
    )
    with op.batch_alter_table("grid_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grid_steps_report_id"), ["report_id"], unique=False)

    op.create_table(
        "grid_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("routed_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("arrive_by", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("close_by", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", minyun.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", minyun.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("result_photo_id", sa.Integer(), nullable=True),
        sa.Column("escalation", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_grid_tasks_org_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"], ["grid_reports.id"], name=op.f("fk_grid_tasks_report_id_grid_reports")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grid_tasks")),
    )
    with op.batch_alter_table("grid_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grid_tasks_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_grid_tasks_report_id"), ["report_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_grid_tasks_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("grid_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grid_tasks_state"))
        batch_op.drop_index(batch_op.f("ix_grid_tasks_report_id"))
        batch_op.drop_index(batch_op.f("ix_grid_tasks_org_id"))

    op.drop_table("grid_tasks")
    with op.batch_alter_table("grid_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grid_steps_report_id"))

    op.drop_table("grid_steps")
    with op.batch_alter_table("grid_photos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grid_photos_report_id"))

    op.drop_table("grid_photos")
    with op.batch_alter_table("grid_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grid_reports_street_code"))
        batch_op.drop_index(batch_op.f("ix_grid_reports_state"))
        batch_op.drop_index(batch_op.f("ix_grid_reports_service_code"))
        batch_op.drop_index(batch_op.f("ix_grid_reports_requested_at"))
        batch_op.drop_index(batch_op.f("ix_grid_reports_reporter_user_id"))
        batch_op.drop_index(batch_op.f("ix_grid_reports_grid_code"))
        batch_op.drop_index(batch_op.f("ix_grid_reports_district_code"))

    op.drop_table("grid_reports")
    with op.batch_alter_table("grid_areas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grid_areas_worker_user_id"))
        batch_op.drop_index(batch_op.f("ix_grid_areas_parent_code"))
        batch_op.drop_index(batch_op.f("ix_grid_areas_level"))
        batch_op.drop_index(batch_op.f("ix_grid_areas_district_code"))

    op.drop_table("grid_areas")
    with op.batch_alter_table("grid_routing_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grid_routing_rules_service_code"))
        batch_op.drop_index(batch_op.f("ix_grid_routing_rules_area_code"))

    op.drop_table("grid_routing_rules")
    op.drop_table("grid_services")
    op.drop_table("grid_api_keys")
