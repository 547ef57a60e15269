"""A node whose jobs run when the test says, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from minyun.core.platform import Platform
from tests.conftest import PostgresDatabases, make_settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """A migrated node that commits for real; jobs run when the test calls jobs.run."""
    overrides: dict[str, object] = {}
    if request.param == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        overrides["database_url"] = databases.create()
    platform = Platform.open(make_settings(tmp_path / "var", **overrides), run_jobs_here=False)
    platform.migrate()
    yield platform
    platform.close()


@pytest.fixture
def sqlite_node(tmp_path: Path) -> Iterator[Platform]:
    """The embedded node only (for tests whose subject is not the control-plane backend)."""
    platform = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    platform.migrate()
    yield platform
    platform.close()


@pytest.fixture
def pg_node(tmp_path: Path, pg_databases: PostgresDatabases) -> Iterator[Platform]:
    """A node on a fresh PostgreSQL database (concurrency the embedded SQLite serialises)."""
    overrides = {"database_url": pg_databases.create()}
    platform = Platform.open(make_settings(tmp_path / "var", **overrides), run_jobs_here=False)
    platform.migrate()
    yield platform
    platform.close()
