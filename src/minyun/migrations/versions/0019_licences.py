"""licences: e-licence types, issuers' keys, status lists, licences and their uses

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "licence_issuer_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", minyun.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("retired_at", minyun.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_licence_issuer_keys_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_issuer_keys")),
    )
    op.create_index(
        "ix_licence_issuer_keys_org_generation",
        "licence_issuer_keys",
        ["organization_id", "generation"],
        unique=True,
    )
    op.create_index(
        op.f("ix_licence_issuer_keys_organization_id"),
        "licence_issuer_keys",
        ["organization_id"],
        unique=False,
    )
    op.create_table(
        "licence_status_lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=12), nullable=False),
        sa.Column("bits", sa.LargeBinary(), nullable=False),
        sa.Column("next_index", sa.Integer(), nullable=False),
        sa.Column("updated_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_licence_status_lists_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_status_lists")),
    )
    op.create_index(
        "ix_licence_status_lists_org_purpose",
        "licence_status_lists",
        ["organization_id", "purpose"],
        unique=True,
    )
    op.create_table(
        "licence_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("issuer_id", sa.Integer(), nullable=False),
        sa.Column("holder_kind", sa.String(length=12), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("holder_field", sa.String(length=64), nullable=False),
        sa.Column("holder_name_field", sa.String(length=64), nullable=True),
        sa.Column("number_field", sa.String(length=64), nullable=True),
        sa.Column("validity", sa.JSON(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("created_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["organizations.id"],
            name=op.f("fk_licence_types_issuer_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_types")),
        sa.UniqueConstraint("code", name=op.f("uq_licence_types_code")),
    )
    op.create_index(
        op.f("ix_licence_types_issuer_id"), "licence_types", ["issuer_id"], unique=False
    )
    op.create_index(op.f("ix_licence_types_source"), "licence_types", ["source"], unique=False)
    op.create_table(
        "licences",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("type_id", sa.Integer(), nullable=False),
        sa.Column("holder_id", sa.String(length=18), nullable=False),
        sa.Column("holder_name", sa.String(length=200), nullable=True),
        sa.Column("number", sa.String(length=100), nullable=False),
        sa.Column("source_key", sa.String(length=200), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("status_index", sa.Integer(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("credential", sa.Text(), nullable=False),
        sa.Column("valid_from", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", minyun.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("issued_at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=True),
        sa.Column("ended_at", minyun.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("replaced_by", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["type_id"], ["licence_types.id"], name=op.f("fk_licences_type_id_licence_types")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licences")),
    )
    op.create_index(op.f("ix_licences_holder_id"), "licences", ["holder_id"], unique=False)
    op.create_index(op.f("ix_licences_status"), "licences", ["status"], unique=False)
    op.create_index(op.f("ix_licences_type_id"), "licences", ["type_id"], unique=False)
    op.create_index("ix_licences_type_source", "licences", ["type_id", "source_key"], unique=False)
    op.create_index(
        "ux_licences_current_source",
        "licences",
        ["type_id", "source_key"],
        unique=True,
        sqlite_where=sa.text("status IN ('live', 'suspended')"),
        postgresql_where=sa.text("status IN ('live', 'suspended')"),
    )
    op.create_table(
        "licence_uses",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("licence_id", sa.String(length=40), nullable=False),
        sa.Column("type_id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column("at", minyun.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["licence_id"], ["licences.id"], name=op.f("fk_licence_uses_licence_id_licences")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_licence_uses_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licence_uses")),
    )
    op.create_index(
        op.f("ix_licence_uses_licence_id"), "licence_uses", ["licence_id"], unique=False
    )
    op.create_index(op.f("ix_licence_uses_type_id"), "licence_uses", ["type_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_licence_uses_type_id"), table_name="licence_uses")
    op.drop_index(op.f("ix_licence_uses_licence_id"), table_name="licence_uses")
    op.drop_table("licence_uses")
    op.drop_index(
        "ux_licences_current_source",
        table_name="licences",
        sqlite_where=sa.text("status IN ('live', 'suspended')"),
        postgresql_where=sa.text("status IN ('live', 'suspended')"),
    )
    op.drop_index("ix_licences_type_source", table_name="licences")
    op.drop_index(op.f("ix_licences_type_id"), table_name="licences")
    op.drop_index(op.f("ix_licences_status"), table_name="licences")
    op.drop_index(op.f("ix_licences_holder_id"), table_name="licences")
    op.drop_table("licences")
    op.drop_index(op.f("ix_licence_types_source"), table_name="licence_types")
    op.drop_index(op.f("ix_licence_types_issuer_id"), table_name="licence_types")
    op.drop_table("licence_types")
    op.drop_index("ix_licence_status_lists_org_purpose", table_name="licence_status_lists")
    op.drop_table("licence_status_lists")
    op.drop_index(op.f("ix_licence_issuer_keys_organization_id"), table_name="licence_issuer_keys")
    op.drop_index("ix_licence_issuer_keys_org_generation", table_name="licence_issuer_keys")
    op.drop_table("licence_issuer_keys")
