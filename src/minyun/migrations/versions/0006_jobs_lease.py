"""jobs: runner lease, crash count, cancellation, department; errors without tracebacks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 09:00:00.000000

Job errors written before this revision carried the last lines of a Python traceback
(with server paths): only their first line is kept, its paths cut to the file name.
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import minyun.core.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@+~-]+){2,}[\\/]?")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("crashes", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(
            sa.Column(
                "cancel_requested_at", minyun.core.db.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch.add_column(sa.Column("cancelled_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("organization_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_jobs_organization_id"), ["organization_id"], unique=False)

    jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("error", sa.Text))
    connection = op.get_bind()
    rows = connection.execute(sa.select(jobs.c.id, jobs.c.error).where(jobs.c.error.is_not(None)))
    for job_id, error in rows.all():
        first = error.splitlines()[0] if error.strip() else error
        cleaned = _PATH.sub(
            lambda m: "…/" + re.split(r"[\\/]", m.group(0).rstrip("/\\"))[-1], first
        )
        if cleaned != error:
            connection.execute(sa.update(jobs).where(jobs.c.id == job_id).values(error=cleaned))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index(batch.f("ix_jobs_organization_id"))
        batch.drop_column("organization_id")
        batch.drop_column("cancelled_by")
        batch.drop_column("cancel_requested_at")
        batch.drop_column("crashes")
        batch.drop_column("lease")
