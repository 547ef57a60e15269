"""Event fan-out to three webhook consumers, one of them down for a while: every consumer
gets every event exactly once and in order (the correctness half of `exchange.events_per_s`,
with small numbers; the benchmark runs the same code with 10,000 events)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.events_fanout import fan_out, plain_post
from minyun.core.platform import Platform
from tests.conftest import PostgresDatabases, make_settings


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """A node running its jobs (the webhook deliveries) in its own threads."""
    overrides: dict[str, object] = {"webhooks_allow_private": True}
    if request.param == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        overrides["database_url"] = databases.create()
    node = Platform.open(make_settings(tmp_path / "var", **overrides))
    node.migrate()
    yield node
    node.close()


def test_no_event_is_lost_or_duplicated_when_a_consumer_comes_back(live: Platform) -> None:
    report = fan_out(live, count=40, down_for=3, timeout=60)
    assert report.refused_while_down > 0  # the second consumer really was down
    assert (report.lost, report.duplicated, report.out_of_order) == (0, 0, 0)
    assert report.per_s > 0


def test_the_baseline_posts_every_event() -> None:
    assert plain_post(20) > 0
