from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from minyun.core.platform import Platform
from tests.conftest import make_settings


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Platform]:
    """A migrated embedded node that commits for real; jobs run when the test calls jobs.run."""
    platform = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    platform.migrate()
    yield platform
    platform.close()
