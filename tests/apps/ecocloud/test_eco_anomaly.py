"""Detection: a jump against a station's own history, a stuck sensor, a spatial outlier, an episode."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.ecocloud import detect, ingest, readings
from minyun.apps.ecocloud.models import Alert, AlertStep, Anomaly
from minyun.core.errors import Invalid
from minyun.core.security import Principal
from tests import factories
from tests.apps.ecocloud.conftest import make_city_eco_orgs

SYSTEM = Principal.system()


def with_values(rows: pa.Table, column: str, where: pa.Array, value: str) -> pa.Table:
    changed = pc.if_else(where, value, rows[column])
    return rows.set_column(rows.column_names.index(column), column, changed)


def at(rows: pa.Table, code: str, hours: list[int]) -> pa.Array:
    stamps = [f"2022-01-04T{h:02d}:00:00" for h in hours]
    return pc.and_(pc.equal(rows["station_code"], code), pc.is_in(rows["hour"], pa.array(stamps)))


def found(session: Session, rule: str) -> list[tuple[str, int]]:
    rows = session.scalars(select(Anomaly).where(Anomaly.rule == rule).order_by(Anomaly.hour))
    return [(a.station_code, readings.parse_hour(a.hour.isoformat()).hour) for a in rows]


def test_the_real_day_raises_nothing(session: Session, day_rows: pa.Table) -> None:
    report = ingest.ingest_readings(session, SYSTEM, day_rows)
    assert report.anomalies == 0 and report.alerts_opened == []


def test_a_sudden_jump_against_its_own_history(session: Session, day_rows: pa.Table) -> None:
    # 1284A 杨桥西路 reads PM2.5 around 30; at 08:00 China time (00:00 UTC) it reads 200.
    rows = with_values(day_rows, "pm2_5", at(day_rows, "1284A", [8]), "200")
    ingest.ingest_readings(session, SYSTEM, rows)
    jump = session.scalars(select(Anomaly).where(Anomaly.rule == "jump")).one()
    assert jump.station_code == "1284A" and jump.value == 250
    assert "against a median of" in jump.detail


def test_a_stuck_sensor(session: Session, day_rows: pa.Table) -> None:
    hours = list(range(12, 19))  # 7 hours frozen: flagged at the 6th and 7th
    rows = day_rows
    for column, value in (("pm10", "55"), ("pm2_5", "33"), ("no2", "21"), ("o3", "70")):
        rows = with_values(rows, column, at(rows, "1611A", hours), value)
    ingest.ingest_readings(session, SYSTEM, rows)
    stuck = session.scalars(select(Anomaly).where(Anomaly.rule == "stuck")).all()
    assert {a.station_code for a in stuck} == {"1611A"} and len(stuck) == 2
    assert "unchanged for 6 hours" in stuck[0].detail


def test_a_station_far_from_its_neighbours(session: Session, day_rows: pa.Table) -> None:
    # One Xiamen station reads PM2.5 300 at one hour; its neighbours read around 40.
    rows = with_values(day_rows, "pm2_5", at(day_rows, "1288A", [16]), "300")
    ingest.ingest_readings(session, SYSTEM, rows)
    spatial = session.scalars(select(Anomaly).where(Anomaly.rule == "spatial")).all()
    assert [a.station_code for a in spatial] == ["1288A"]
    assert "stations within the radius" in spatial[0].detail


def test_a_regional_episode_opens_one_alert_routed_to_each_city(
    session: Session, episode_rows: pa.Table
) -> None:
    orgs = make_city_eco_orgs(session)
    report = ingest.ingest_readings(session, SYSTEM, episode_rows)
    assert len(report.alerts_opened) == 1
    alert = session.get(Alert, report.alerts_opened[0])
    assert alert is not None and alert.state == "open"
    # Zhangzhou's own real spell (3 stations above 100 at 09:00) joins the planted one.
    assert alert.cities == ["厦门市", "漳州市", "福州市"]
    assert alert.org_codes == ["fz-eco", "xm-eco"] and set(orgs) >= set(alert.org_codes)
    assert alert.start_hour == readings.parse_hour("2022-01-04T09:00:00")
    assert alert.end_hour == readings.parse_hour("2022-01-04T14:00:00")
    assert alert.peak_aqi == 230
    steps = [(s.kind, s.organization_code) for s in alert.steps]
    assert steps == [
        ("detected", None),
        ("routed", "xm-eco"),
        ("routed", None),  # no Zhangzhou department in this test: said, not dropped
        ("routed", "fz-eco"),
    ]
    # Ingesting the same hours again, or hour by hour, opens no second alert.
    again = ingest.ingest_readings(session, SYSTEM, episode_rows)
    assert again.alerts_opened == []
    assert len(session.scalars(select(Alert)).all()) == 1
    assert len(session.scalars(select(AlertStep)).all()) == 4


def test_an_episode_arriving_hour_by_hour_opens_one_alert(
    session: Session, episode_rows: pa.Table
) -> None:
    factories.ensure_divisions(session)
    opened = []
    for hour in sorted(set(episode_rows["hour"].to_pylist())):
        batch = episode_rows.filter(pc.equal(episode_rows["hour"], hour))
        opened += ingest.ingest_readings(session, SYSTEM, batch).alerts_opened
    assert len(opened) == 1
    alert = session.get(Alert, opened[0])
    assert alert is not None and alert.end_hour == readings.parse_hour("2022-01-04T14:00:00")
    # No department on file: the routing says so instead of dropping the city.
    assert all("no environment department" in s.note for s in alert.steps if s.kind == "routed")


def test_too_few_stations_or_hours_is_no_episode(session: Session, day_rows: pa.Table) -> None:
    two_hours = with_values(
        day_rows,
        "pm2_5",
        pc.and_(
            pc.equal(day_rows["city"], "福州市"),
            pc.is_in(day_rows["hour"], pa.array(["2022-01-04T16:00:00", "2022-01-04T17:00:00"])),
        ),
        "180",
    )
    assert ingest.ingest_readings(session, SYSTEM, two_hours).alerts_opened == []


def test_rules_come_from_the_environment() -> None:
    rules = detect.Rules.from_env({"MINYUN_ECO_EPISODE_AQI": "150", "MINYUN_ECO_JUMP_RATIO": "3"})
    assert rules.episode_aqi == 150 and rules.jump_ratio == 3.0
    with pytest.raises(Invalid):
        detect.Rules.from_env({"MINYUN_ECO_STUCK_HOURS": "many"})
