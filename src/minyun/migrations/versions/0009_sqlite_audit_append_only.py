"""audit: SQLite refuses UPDATE and DELETE on the audit tables, as PostgreSQL does (0001)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00

SQLite has no TRUNCATE (a `DELETE` without `WHERE` fires the trigger too). Whoever can
write the database file can drop these triggers: the hash chain and the signed heads
outside the database (decision 0002, 0005) catch what they let through.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("audit_records", "audit_checkpoints")
OPERATIONS = ("UPDATE", "DELETE")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL has its triggers since 0001
    for table in TABLES:
        for operation in OPERATIONS:
            op.execute(
                f"CREATE TRIGGER {table}_append_only_{operation.lower()} "
                f"BEFORE {operation} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'minyun: {table} is append-only ({operation} refused)'); "
                "END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        for operation in OPERATIONS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_{operation.lower()}")
