"""The eco-cloud in the lake: station-hours, city-hours and alert steps as governed resources."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from minyun.accounts.service import principal_for
from minyun.apps.ecocloud import lake, mqtt, response
from minyun.apps.ecocloud.ingest import ingest_readings
from minyun.apps.ecocloud.models import Alert, AlertStep, CityHour, Reading
from minyun.apps.ecocloud.readings import parse_hour
from minyun.catalog import service as catalog
from minyun.cli import app
from minyun.core import clock, jobs
from minyun.core.config import load_settings
from minyun.core.errors import NotFound
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.core.uow import unit_of_work
from minyun.demo import province
from minyun.ingest import service as ingest
from minyun.orgs.models import Organization
from tests import factories
from tests.apps.ecocloud.conftest import DAY

SYSTEM = Principal.system()
runner = CliRunner()


def publish(platform: Platform) -> dict[str, dict[str, object]]:
    job = lake.publish_now(platform.factory, SYSTEM, settings=platform.settings)
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    assert job.result is not None
    return dict(job.result["resources"])


def lake_rows(platform: Platform, code: str) -> pa.Table:
    with platform.factory() as session:
        return ingest.read_rows(session, platform.lake, SYSTEM, code)


def station_hours(session: Session) -> dict[tuple[str, datetime], tuple[int | None, float | None]]:
    rows = session.execute(select(Reading.station_code, Reading.hour, Reading.aqi, Reading.pm2_5))
    return {(code, hour): (aqi, pm2_5) for code, hour, aqi, pm2_5 in rows}


def lake_station_hours(
    table: pa.Table,
) -> dict[tuple[str, datetime], tuple[int | None, float | None]]:
    cols = [table[c].to_pylist() for c in ("station_code", "hour", "aqi", "pm2_5")]
    return {(c, h): (a, p) for c, h, a, p in zip(*cols, strict=True)}


def assert_keys_unique(table: pa.Table, keys: list[str]) -> None:
    assert table.group_by(keys).aggregate([]).num_rows == table.num_rows


def test_the_day_and_its_joint_response_are_in_the_lake_once(
    platform: Platform, episode_rows: pa.Table
) -> None:
    with unit_of_work(platform.factory) as session:
        province.load_departments(session)
        report = ingest_readings(session, SYSTEM, episode_rows)
        (alert_id,) = report.alerts_opened
        fuzhou = factories.make_user(
            session,
            roles=[Role.STEWARD],
            organization=session.scalars(
                select(Organization).where(Organization.code == "fz-eco")
            ).one(),
        )
        duty = principal_for(fuzhou)
        response.start_consultation(session, duty, alert_id, departments=["xm-eco"], note="会商")
        response.set_response_level(session, duty, alert_id, level="light")
        response.record_action(session, duty, alert_id, note="工地停工，道路洒水")
        response.close_alert(session, duty, alert_id, note="解除")

    first = publish(platform)
    assert first[lake.STATION_HOURS]["rows"] == 1007
    assert {o["load"] for o in first.values()} == {"committed"}

    readings = lake_rows(platform, lake.STATION_HOURS)
    assert readings.num_rows == 1007
    assert_keys_unique(readings, ["station_code", "hour"])
    with platform.factory() as session:
        # The lake's AQI is the control plane's, station-hour by station-hour.
        assert lake_station_hours(readings) == station_hours(session)
        # Partial hours carry their flag and the pollutants they miss into the lake.
        partial = readings.filter(pc.equal(readings["partial"], True))
        stored = session.execute(
            select(Reading.station_code, Reading.missing).where(Reading.missing.is_not(None))
        ).all()
        assert partial.num_rows == len(stored) >= 36
        assert sorted(zip(partial["station_code"].to_pylist(), partial["missing"].to_pylist(),
                          strict=True)) == sorted(map(tuple, stored))  # fmt: skip
        assert pc.all(pc.is_valid(partial["aqi"])).as_py()
        steps = session.execute(
            select(AlertStep.id, AlertStep.kind, AlertStep.at).order_by(AlertStep.id)
        ).all()
        alert = session.get(Alert, alert_id)
        assert alert is not None
        city_hours = session.scalars(select(CityHour.aqi).order_by(CityHour.id)).all()
        resources = [catalog.get_resource(session, spec.code) for spec in lake.SPECS]
    assert {r.status for r in resources} == {"published"}
    assert {r.provider.code for r in resources} == {"fj-eco"}

    lake_steps = lake_rows(platform, lake.ALERT_STEPS).sort_by("step_id")
    assert [tuple(s) for s in steps] == list(
        zip(
            lake_steps["step_id"].to_pylist(),
            lake_steps["kind"].to_pylist(),
            lake_steps["at"].to_pylist(),
            strict=True,
        )
    )
    assert lake_steps["kind"].to_pylist()[-4:] == ["consultation", "level", "action", "closed"]
    assert set(lake_steps["detected_at"].to_pylist()) == {alert.detected_at}
    assert set(lake_steps["cities"].to_pylist()) == {",".join(alert.cities)}

    cities = lake_rows(platform, lake.CITY_HOURS)
    assert cities.num_rows == len(city_hours)
    assert_keys_unique(cities, ["city", "hour"])
    assert sorted(cities["aqi"].to_pylist(), key=str) == sorted(city_hours, key=str)

    # Publishing again adds nothing: the same rows make the same file, a no-op load.
    versions = {r.code: r.lake_version for r in resources}
    again = publish(platform)
    assert {o["load"] for o in again.values()} == {"noop"}
    assert lake_rows(platform, lake.STATION_HOURS).num_rows == 1007
    assert lake_rows(platform, lake.ALERT_STEPS).num_rows == len(steps)
    with platform.factory() as session:
        assert {
            s.code: catalog.get_resource(session, s.code).lake_version for s in lake.SPECS
        } == versions


def correct(rows: pa.Table, pm2_5: str) -> pa.Table:
    """Station 1282A's 05:00 reading with another PM2.5."""
    hit = pc.and_(
        pc.equal(rows["station_code"], "1282A"), pc.equal(rows["hour"], "2022-01-04T05:00:00")
    )
    corrected = rows.filter(hit)
    assert corrected.num_rows == 1
    return corrected.set_column(corrected.column_names.index("pm2_5"), "pm2_5", pa.array([pm2_5]))


def lake_row(platform: Platform) -> dict[str, object]:
    readings = lake_rows(platform, lake.STATION_HOURS)
    assert readings.num_rows == 1007
    assert_keys_unique(readings, ["station_code", "hour"])
    with platform.factory() as session:
        assert lake_station_hours(readings) == station_hours(session)
        # Partial hours carry their flag and the pollutants they miss into the lake.
        partial = readings.filter(pc.equal(readings["partial"], True))
        stored = session.execute(
            select(Reading.station_code, Reading.missing).where(Reading.missing.is_not(None))
        ).all()
        assert partial.num_rows == len(stored) >= 36
        assert sorted(zip(partial["station_code"].to_pylist(), partial["missing"].to_pylist(),
                          strict=True)) == sorted(map(tuple, stored))  # fmt: skip
        assert pc.all(pc.is_valid(partial["aqi"])).as_py()
    (row,) = readings.filter(
        pc.and_(
            pc.equal(readings["station_code"], "1282A"),
            pc.equal(readings["hour"], pa.scalar(parse_hour("2022-01-04T05:00:00"))),
        )
    ).to_pylist()
    return dict(row)


def test_a_corrected_late_reading_updates_its_row_and_only_the_changes_are_sent(
    platform: Platform, day_rows: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = clock.now()
    with unit_of_work(platform.factory) as session:
        province.load_departments(session)
        ingest_readings(session, SYSTEM, day_rows)
    publish(platform)

    # An hour later the station sends a corrected 05:00 reading, and an hour after that another.
    for hours, pm2_5 in ((1, "150"), (2, "75")):
        later = start + timedelta(hours=hours)
        monkeypatch.setattr(clock, "now", lambda at=later: at)
        with unit_of_work(platform.factory) as session:
            assert ingest_readings(session, SYSTEM, correct(day_rows, pm2_5)).updated == 1
        outcome = publish(platform)
        assert outcome[lake.STATION_HOURS]["load"] == "committed"
        assert outcome[lake.ALERT_STEPS]["rows"] == 0
        row = lake_row(platform)
        assert row["pm2_5"] == float(pm2_5) and row["received_at"] == later
    # The first publish after a batch sends it again (OVERLAP); later ones only what changed.
    assert outcome[lake.STATION_HOURS]["rows"] == 1
    assert outcome[lake.CITY_HOURS]["rows"] == 9  # the 05:00 hour of each city, recomputed
    assert publish(platform)[lake.STATION_HOURS]["load"] == "noop"
    assert lake_row(platform)["aqi"] == 100  # PM2.5 75 µg/m³ is IAQI 100 (HJ 633 table 1)


def test_publishing_needs_the_ecology_department(platform: Platform) -> None:
    with platform.factory() as session:
        assert "fj-eco" in (lake.provider_missing(session) or "")
        with pytest.raises(NotFound):
            lake.ensure_resources(session)
    with unit_of_work(platform.factory) as session:
        province.load_departments(session)
    with unit_of_work(platform.factory) as session:
        assert lake.ensure_resources(session) == [spec.code for spec in lake.SPECS]
    with unit_of_work(platform.factory) as session:
        assert lake.ensure_resources(session) == []  # idempotent
        schemas = [
            catalog.current_schema(session, catalog.get_resource(session, s.code))
            for s in lake.SPECS
        ]
    assert [s.version for s in schemas if s is not None] == ["1.0", "1.0", "1.0"]


def test_cli_ingest_publishes_and_publish_says_nothing_is_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    var = tmp_path / "var"
    monkeypatch.setenv("MINYUN_VAR_DIR", str(var))
    for name in ("MINYUN_DATABASE_URL", "MINYUN_JOBS_MODE", "MINYUN_LAKE_URI"):
        monkeypatch.delenv(name, raising=False)
    assert runner.invoke(app, ["init"]).exit_code == 0
    refused = runner.invoke(app, ["eco", "publish"])
    assert refused.exit_code == 2 and "fj-eco" in refused.output
    node = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    try:
        with unit_of_work(node.factory) as session:
            province.load_departments(session)
    finally:
        node.close()
    result = runner.invoke(app, ["eco", "ingest", str(DAY)])
    assert result.exit_code == 0, result.output
    assert "lake: eco-station-aqi-hourly: 1007 rows upserted, lake version 0" in result.output
    again = runner.invoke(app, ["eco", "publish"])
    assert again.exit_code == 0, again.output
    assert "lake: eco-station-aqi-hourly: 1007 rows, unchanged (no-op)" in again.output
    assert "lake: eco-alert-steps: nothing new" in again.output


def test_the_mqtt_listener_publishes_once_a_minute_at_most(platform: Platform) -> None:
    with unit_of_work(platform.factory) as session:
        province.load_departments(session)
    prefix = f"minyun-test/{uuid.uuid4().hex[:12]}/eco/stations"
    sub = mqtt.Subscriber(
        platform.factory,
        prefix=prefix,
        batch_seconds=0.1,
        publish_every=60,
        settings=platform.settings,
    ).start()
    try:
        assert sub.subscribed.wait(10)
        assert mqtt.replay(DAY, speed=0, prefix=prefix) == 1008
        assert sub.wait_idle(quiet=0.5, timeout=60)
    finally:
        sub.stop()
    platform.dispatcher.shutdown()  # wait for the publish jobs
    # One after the first batch; the rest of the day waited for the gate and went out at stop.
    assert sub.stats.publishes == 2
    with platform.factory() as session:
        publishes = session.scalars(select(jobs.Job).where(jobs.Job.kind == lake.KIND)).all()
    assert len(publishes) == 2
    assert publishes[0].key == lake.minute_key(publishes[0].created_at)
    assert {j.state for j in publishes} == {jobs.JobState.SUCCEEDED}
    assert lake_rows(platform, lake.STATION_HOURS).num_rows == 1007


def test_two_publish_jobs_exporting_the_same_rows_keep_their_own_files(
    platform: Platform, day_rows: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publish B runs whole between publish A's export and A's load of it: both exported the
    same rows (the same content name) and B deletes its file when done; A's stays."""
    with unit_of_work(platform.factory) as session:
        province.load_departments(session)
        ingest_readings(session, SYSTEM, day_rows)
    foreground = jobs.Dispatcher.foreground()
    with platform.factory(info={"jobs": foreground}) as session, session.begin():
        first = lake.submit_publish(session, SYSTEM, key="race-a", settings=platform.settings)
        second = lake.submit_publish(session, SYSTEM, key="race-b", settings=platform.settings)
        first_id, second_id = first.id, second.id
    export, run = lake.export_changes, jobs.run
    exported: list[Path] = []
    b_ran: list[jobs.Job] = []
    b_started: list[bool] = []

    def exporting(*args: Any, **kwargs: Any) -> lake.Export:
        made = export(*args, **kwargs)
        if made.path is not None:
            exported.append(made.path)
        return made

    def b_before_a_loads(factory: Any, job_id: str, **kwargs: Any) -> jobs.Job:
        if job_id not in (first_id, second_id) and not b_started:  # A's first load: B first
            b_started.append(True)
            b_ran.append(run(factory, second_id))
        return run(factory, job_id, **kwargs)

    monkeypatch.setattr(lake, "export_changes", exporting)
    monkeypatch.setattr(jobs, "run", b_before_a_loads)
    done = run(platform.factory, first_id)
    assert b_ran and b_ran[0].state == jobs.JobState.SUCCEEDED, b_ran[0].error
    assert done.state == jobs.JobState.SUCCEEDED, done.error
    a, b = exported[0], exported[1]  # the station-hours of A, then of B
    assert a.name == b.name and a != b  # same rows, same name, each job's own folder
    assert not a.parent.exists() and not b.parent.exists()  # each job removes its folder
    outcome = (done.result or {})["resources"][lake.STATION_HOURS]
    assert outcome["load"] == "noop" and outcome["rows"] == len(
        lake_rows(platform, lake.STATION_HOURS)
    )
