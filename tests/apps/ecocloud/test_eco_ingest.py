"""Ingest of hourly readings: idempotent per station-hour, bad input dead-lettered with a reason."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.apps.ecocloud import cnemc, ingest, readings
from minyun.apps.ecocloud.aqi import hourly_aqi
from minyun.apps.ecocloud.models import CityHour, DeadLetter, Reading, Source, Station
from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden
from minyun.core.security import Principal, Role
from tests import factories
from tests.apps.ecocloud.conftest import DAY

SYSTEM = Principal.system()


def count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def reading(session: Session, code: str, hour: str) -> Reading:
    found = session.scalars(
        select(Reading).where(
            Reading.station_code == code, Reading.hour == readings.parse_hour(hour)
        )
    ).one()
    return found


def one_row(**values: object) -> pa.Table:
    row: dict[str, object] = {
        "station_code": "1282A",
        "hour": "2022-01-05T01:00:00+08:00",
        "pm10": 76,
        "pm2_5": 37,
        "o3": 8,
        "no2": 76,
        "so2": 3,
        "co": 1.0,
    }
    row.update(values)
    return pa.Table.from_pylist([row])


def test_real_day_loads_stations_readings_and_city_hours(
    session: Session, day_rows: pa.Table
) -> None:
    factories.ensure_divisions(session)
    report = ingest.ingest_readings(session, SYSTEM, day_rows)
    assert (report.received, report.inserted, report.refused) == (1008, 1007, 1)
    assert report.stations_added == 42 and count(session, Station) == 42
    fuzhou = session.get(Station, "1280A")
    assert fuzhou is not None and fuzhou.city == "福州市" and fuzhou.control_point
    assert fuzhou.division_code == "350100"
    # The row without any 1-hour value is kept as a dead letter, with its reason.
    letter = session.scalars(select(DeadLetter)).one()
    assert letter.reason == "no pollutant values" and "3527A" in letter.payload
    # 9 cities × 24 hours of city AQI.
    assert count(session, CityHour) == 9 * 24
    audit = session.scalars(select(AuditRecord).where(AuditRecord.action == "eco.ingest")).one()
    assert audit.record_count == 1007


def test_station_aqi_reproduces_the_official_figures(session: Session, day_rows: pa.Table) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows)
    official = cnemc.read_cnemc(cnemc.cnemc_files(DAY))
    ours = {
        (code, hour.isoformat()): aqi
        for code, hour, aqi in session.execute(
            select(Reading.station_code, Reading.hour, Reading.aqi)
        )
    }
    hours = [readings.parse_hour(h).isoformat() for h in official["timepoint"].to_pylist()]
    codes = official["stationcode"].to_pylist()
    published = pc.cast(official["aqi"], pa.int64()).to_pylist()
    same = sum(
        1
        for code, hour, aqi in zip(codes, hours, published, strict=True)
        if aqi is not None and ours.get((code, hour)) == aqi
    )
    assert same == sum(1 for aqi in published if aqi is not None) == 970


def test_the_same_readings_again_change_nothing(session: Session, day_rows: pa.Table) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows)
    again = ingest.ingest_readings(session, SYSTEM, day_rows)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1007)
    assert count(session, Reading) == 1007


def test_duplicates_within_a_batch_keep_the_last(session: Session, day_rows: pa.Table) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows.slice(0, 42))
    batch = pa.concat_tables([one_row(pm2_5=40), one_row(pm2_5=41)])
    report = ingest.ingest_readings(session, SYSTEM, batch)
    assert report.inserted == 1
    assert reading(session, "1282A", "2022-01-05T01:00:00+08:00").pm2_5 == 41


def test_late_out_of_order_correction_replaces_the_hour(
    session: Session, day_rows: pa.Table
) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows)
    late = one_row(hour="2022-01-04T05:00:00", pm2_5=120)
    report = ingest.ingest_readings(session, SYSTEM, late)
    assert (report.inserted, report.updated) == (0, 1)
    fixed = reading(session, "1282A", "2022-01-04T05:00:00")
    assert fixed.pm2_5 == 120 and fixed.aqi == 158 and fixed.level == 4


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"pm2_5": -5}, "negative concentration: pm2_5=-5"),
        ({"pm10": 99999}, "absurd concentration: pm10=99999"),
        ({"station_code": "9999Z"}, "unknown station 9999Z"),
        ({"station_code": None}, "missing or malformed station code"),
        ({"hour": "yesterday"}, "hour is missing or not an ISO 8601 time: yesterday"),
        ({"hour": "2022-01-05T01:30:00+08:00"}, "hour is not on the hour"),
        ({"hour": "2099-01-05T01:00:00+08:00"}, "hour is in the future"),
        ({"no2": "lots"}, "no2 is not a number: lots"),
        (
            {"pm10": None, "pm2_5": None, "o3": None, "no2": None, "so2": None, "co": None},
            "no pollutant values",
        ),
    ],
)
def test_bad_readings_become_dead_letters_with_their_reason(
    session: Session, day_rows: pa.Table, values: dict[str, object], reason: str
) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows.slice(0, 42))
    before = count(session, Reading)
    row = one_row(**values)
    row = pa.table({name: pc.cast(row[name], pa.string()) for name in row.column_names})
    report = ingest.ingest_readings(session, SYSTEM, row, source=Source.MQTT)
    assert report.refused == 1 and count(session, Reading) == before
    letter = session.scalars(select(DeadLetter).order_by(DeadLetter.id.desc())).first()
    assert letter is not None and letter.reason.startswith(reason) and letter.source == "mqtt"


def test_co_in_micrograms_is_converted_and_flagged(session: Session, day_rows: pa.Table) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows.slice(0, 42))
    ingest.ingest_readings(session, SYSTEM, one_row(co=800))
    got = reading(session, "1282A", "2022-01-05T01:00:00+08:00")
    assert got.co == pytest.approx(0.8) and got.flags == "co-µg/m³-converted"


@pytest.mark.parametrize(
    ("pollutant", "label"),
    [("so2", "SO2"), ("no2", "NO2"), ("pm10", "PM10"), ("co", "CO"), ("o3", "O3"),
     ("pm2_5", "PM2.5")],
)  # fmt: skip
def test_a_partial_hour_gets_the_aqi_of_the_pollutants_present(
    session: Session, day_rows: pa.Table, pollutant: str, label: str
) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows.slice(0, 42))
    values = {k: v for k, v in one_row().to_pylist()[0].items() if k in readings.POLLUTANTS}
    ingest.ingest_readings(session, SYSTEM, one_row(**{pollutant: None}))
    got = reading(session, "1282A", "2022-01-05T01:00:00+08:00")
    # CNEMC publishes the hour's AQI over the pollutants present; the reading says which not.
    expected = hourly_aqi(**{**values, pollutant: None})
    assert (got.aqi, got.primary_pollutant or "") == (expected.aqi, expected.primary_pollutant)
    assert got.aqi is not None and got.level == expected.level.grade  # type: ignore[union-attr]
    assert got.missing == label and got.missing_pollutants == [label] and got.partial
    assert got.flags == f"missing:{pollutant}"
    full = hourly_aqi(**values)
    ingest.ingest_readings(session, SYSTEM, one_row())
    session.refresh(got)
    assert (got.aqi, got.missing, got.partial) == (full.aqi, None, False)


def test_all_pollutants_missing_is_still_refused(session: Session, day_rows: pa.Table) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows.slice(0, 42))
    report = ingest.ingest_readings(session, SYSTEM, one_row(**dict.fromkeys(readings.POLLUTANTS)))
    assert (report.inserted, report.refused) == (0, 1)


def test_the_real_days_partial_hours_get_an_aqi(session: Session, day_rows: pa.Table) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows)
    partial = session.scalars(select(Reading).where(Reading.missing.is_not(None))).all()
    # 37 rows miss a 1-hour value; the one missing all six is a dead letter.
    assert len(partial) == 36 and all(r.aqi is not None and r.partial for r in partial)
    assert count(session, Reading) == 1007
    assert session.scalar(select(func.count()).where(Reading.aqi.is_(None))) == 0
    wuhang = reading(session, "3526A", "2022-01-04T03:00:00")
    assert (wuhang.aqi, wuhang.primary_pollutant, wuhang.partial) == (83, "二氧化氮", False)
    wenquan = reading(session, "2339A", "2022-01-04T15:00:00")  # CO empty in the file
    assert (
        wenquan.missing_pollutants == ["CO"]
        and wenquan.aqi == hourly_aqi(so2=6, no2=17, pm10=68, pm2_5=17, co=None, o3=98).aqi
    )


def test_a_partial_hour_stored_without_its_aqi_is_recomputed_when_sent_again(
    session: Session, day_rows: pa.Table
) -> None:
    ingest.ingest_readings(session, SYSTEM, day_rows.slice(0, 42))
    ingest.ingest_readings(session, SYSTEM, one_row(co=None))
    got = reading(session, "1282A", "2022-01-05T01:00:00+08:00")
    # As the engine stored partial hours before: no AQI, nothing named missing.
    got.aqi = got.level = got.primary_pollutant = got.missing = None
    session.flush()
    again = ingest.ingest_readings(session, SYSTEM, one_row(co=None))
    assert (again.updated, again.unchanged) == (1, 0)
    session.refresh(got)
    assert got.aqi is not None and got.missing == "CO"
    assert ingest.ingest_readings(session, SYSTEM, one_row(co=None)).unchanged == 1


def test_a_consumer_does_not_ingest(session: Session, day_rows: pa.Table) -> None:
    # Who does: test_eco_operators.
    consumer = factories.make_user(session, roles=[Role.CONSUMER])
    from minyun.accounts.service import principal_for

    with pytest.raises(Forbidden):
        ingest.ingest_readings(session, principal_for(consumer), day_rows.slice(0, 1))
