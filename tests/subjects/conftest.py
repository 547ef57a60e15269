from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from minyun.core.platform import Platform
from tests.conftest import PostgresDatabases, make_settings


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Platform]:
    """A migrated embedded node that commits for real; jobs run when the test calls jobs.run."""
    platform = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    platform.migrate()
    yield platform
    platform.close()


@pytest.fixture
def pg_node(tmp_path: Path, pg_databases: PostgresDatabases) -> Iterator[Platform]:
    """The same on a fresh PostgreSQL database."""
    platform = Platform.open(
        make_settings(tmp_path / "var", database_url=pg_databases.create()), run_jobs_here=False
    )
    platform.migrate()
    yield platform
    platform.close()
