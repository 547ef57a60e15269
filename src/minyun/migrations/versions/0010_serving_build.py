"""serving index: the refresh building it (built in short transactions, switched at the end)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 10:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("serving_state") as batch:
        batch.add_column(sa.Column("building", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("building_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("serving_state") as batch:
        batch.drop_column("building_version")
        batch.drop_column("building")
