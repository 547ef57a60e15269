"""A node whose jobs run when the test says, on SQLite and on PostgreSQL (the ingest tests'
fixtures), and one on PostgreSQL only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from minyun.core.platform import Platform
from tests.conftest import PostgresDatabases, make_settings
from tests.ingest.conftest import node, sqlite_node

__all__ = ["node", "pg_node", "sqlite_node"]


@pytest.fixture
def pg_node(tmp_path: Path, pg_databases: PostgresDatabases) -> Iterator[Platform]:
    """A node on a fresh PostgreSQL database (concurrency the embedded SQLite serialises)."""
    overrides = {"database_url": pg_databases.create()}
    platform = Platform.open(make_settings(tmp_path / "var", **overrides), run_jobs_here=False)
    platform.migrate()
    yield platform
    platform.close()
