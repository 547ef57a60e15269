"""nodes: the node registry, seen nonces, published city catalogs, forwarded applications

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, minyun.core.db.UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("division_code", sa.String(length=12), nullable=False),
        sa.Column("relation", sa.String(length=8), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("base_url", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("added_by", sa.String(length=100), nullable=False),
        _when("created_at", nullable=False),
        sa.Column("revoked_by", sa.String(length=100), nullable=True),
        _when("revoked_at"),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        _when("published_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("node_id"),
    )
    op.create_index("ix_nodes_status", "nodes", ["status"])
    op.create_table(
        "node_nonces",
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        _when("expires_at", nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"]),
        sa.PrimaryKeyConstraint("node_id", "nonce"),
    )
    op.create_index("ix_node_nonces_expires_at", "node_nonces", ["expires_at"])
    op.create_table(
        "node_resources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("provider_code", sa.String(length=32), nullable=False),
        sa.Column("provider_name", sa.String(length=200), nullable=False),
        sa.Column("sharing_type", sa.String(length=16), nullable=False),
        sa.Column("update_cycle", sa.String(length=16), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        _when("synced_at", nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("node_id", "code"),
    )
    op.create_index("ix_node_resources_node_id", "node_resources", ["node_id"])
    op.create_table(
        "node_applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("resource_code", sa.String(length=64), nullable=False),
        sa.Column("consumer_id", sa.Integer(), nullable=False),
        sa.Column("applicant", sa.String(length=100), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("remote_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("granted_fields", sa.JSON(), nullable=True),
        _when("created_at", nullable=False),
        _when("checked_at", nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"]),
        sa.ForeignKeyConstraint(["consumer_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_node_applications_node_id", "node_applications", ["node_id"])
    op.create_index("ix_node_applications_consumer_id", "node_applications", ["consumer_id"])
    op.create_table(
        "node_organizations",
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("remote_code", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"]),
        sa.PrimaryKeyConstraint("organization_id"),
    )
    op.create_index("ix_node_organizations_node_id", "node_organizations", ["node_id"])


def downgrade() -> None:
    op.drop_table("node_organizations")
    op.drop_table("node_applications")
    op.drop_table("node_resources")
    op.drop_table("node_nonces")
    op.drop_table("nodes")
