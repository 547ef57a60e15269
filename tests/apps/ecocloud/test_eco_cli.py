"""`minyun eco ingest` and `minyun eco replay`, run as a user would."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from minyun.apps.ecocloud import mqtt
from minyun.apps.ecocloud.models import Reading
from minyun.cli import app
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from tests.apps.ecocloud.conftest import DAY

runner = CliRunner()


def test_ingest_loads_the_day_and_says_what_it_did(var: Path) -> None:
    result = runner.invoke(app, ["eco", "ingest", str(DAY)])
    assert result.exit_code == 0, result.output
    assert "1008 readings from 24 file(s): 1007 new" in result.output
    assert "1 refused (dead letters); 42 stations added" in result.output
    again = runner.invoke(app, ["eco", "ingest", str(DAY)])
    assert "0 new, 0 corrected, 1007 unchanged" in again.output


def test_ingest_of_a_missing_folder_is_a_usage_error(var: Path) -> None:
    result = runner.invoke(app, ["eco", "ingest", str(var / "nowhere")])
    assert result.exit_code == 2


def test_replay_publishes_every_hour_to_a_listening_node(var: Path) -> None:
    prefix = f"minyun-test/{uuid.uuid4().hex[:12]}/eco/stations"
    node = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    subscriber = mqtt.Subscriber(node.factory, prefix=prefix, batch_seconds=0.1).start()
    try:
        assert subscriber.subscribed.wait(10)
        result = runner.invoke(
            app, ["eco", "replay", str(DAY), "--speed", "0", "--topic-prefix", prefix]
        )
        assert result.exit_code == 0, result.output
        assert "2022-01-04T23: 42 readings published" in result.output
        assert f"1008 readings published to {prefix}/" in result.output
        assert subscriber.wait_idle(quiet=0.5, timeout=30)
        with node.factory() as session:
            assert session.scalar(select(func.count()).select_from(Reading)) == 1007
    finally:
        subscriber.stop()
        node.close()
