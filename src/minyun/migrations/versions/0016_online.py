"""online services: the market regulation register (demo), the providers' proxy services

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, minyun.core.db.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "enterprise_register",
        sa.Column("uscc", sa.String(length=18), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("legal_person", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=True),
        sa.Column("capital", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("registrar_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _when("registered_at", nullable=False),
        _when("changed_at"),
        _when("deregistered_at"),
        sa.ForeignKeyConstraint(["registrar_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("uscc"),
    )
    op.create_index("ix_enterprise_register_registrar_id", "enterprise_register", ["registrar_id"])
    op.create_table(
        "proxy_services",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=2000), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _when("created_at", nullable=False),
        sa.ForeignKeyConstraint(["resource_id"], ["resources.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("resource_id"),
    )


def downgrade() -> None:
    op.drop_table("proxy_services")
    op.drop_index("ix_enterprise_register_registrar_id", table_name="enterprise_register")
    op.drop_table("enterprise_register")
