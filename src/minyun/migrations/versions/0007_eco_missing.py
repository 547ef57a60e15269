"""eco-cloud: the pollutants a station-hour or city-hour misses (partial AQI hours)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("eco_readings") as batch:
        batch.add_column(sa.Column("missing", sa.String(length=60), nullable=True))
    with op.batch_alter_table("eco_city_hours") as batch:
        batch.add_column(sa.Column("missing", sa.String(length=60), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eco_city_hours") as batch:
        batch.drop_column("missing")
    with op.batch_alter_table("eco_readings") as batch:
        batch.drop_column("missing")
