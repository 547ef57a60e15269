"""Eco-cloud rules: ingest of hourly readings, anomaly and episode detection, joint response.

Bulk work runs on Arrow tables with DuckDB SQL; the database sees one insert and one update
per batch. Times are handled as whole hours since the epoch (`hx`) inside DuckDB so that no
time-zone library is needed; a time without an offset is China time (UTC+8), as CNEMC
publishes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from minyun.apps.ecocloud.aqi import HOURLY_COLUMNS, LEVELS, city_hourly_aqi_table, hourly_aqi_table
from minyun.apps.ecocloud.cnemc import CONTROL_POINT_SUFFIX
from minyun.apps.ecocloud.models import (
    Alert,
    AlertState,
    AlertStep,
    Anomaly,
    CityHour,
    DeadLetter,
    Reading,
    Source,
    Station,
    StepKind,
)
from minyun.core import audit, clock
from minyun.core.errors import Conflict, Invalid, NotFound
from minyun.core.security import Principal, Role, authorize
from minyun.orgs.models import Division, Organization

POLLUTANTS: tuple[str, ...] = ("pm10", "pm2_5", "o3", "no2", "so2", "co")
META: tuple[str, ...] = ("name", "city", "longitude", "latitude")
#: Above these a 1-hour value is not a measurement but a fault (µg/m³; CO mg/m³). They sit
#: well above the tops of HJ 633 table 1, so real severe pollution still passes.
ABSURD: dict[str, float] = {
    "pm10": 3000,
    "pm2_5": 2000,
    "o3": 2500,
    "no2": 4000,
    "so2": 10000,
    "co": 150,
}
#: CO is reported in mg/m³; a value above this was sent in µg/m³ and is divided by 1000.
CO_MICROGRAM_ABOVE = 150.0
HOUR_US = 3_600_000_000
CHINA = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class Rules:
    """Detection thresholds; each can be set by `MINYUN_ECO_<NAME>` (see docs/ecocloud.md)."""

    jump_window: int = 6  # hours of a station's own history the jump is measured against
    jump_min_history: int = 3  # fewer valid hours than this: no judgement
    jump_delta: int = 60  # AQI points above the median of the window
    jump_ratio: float = 2.0  # … and at least this multiple of it
    stuck_hours: int = 6  # PM10, PM2.5, NO2 and O3 all unchanged this many hours in a row
    spatial_radius_km: float = 30.0
    spatial_min_neighbours: int = 2
    spatial_delta: int = 60  # AQI points from the neighbours' median
    spatial_ratio: float = 2.0  # … and this factor above or below it
    episode_aqi: int = 100  # above 良 (good): light pollution or worse (HJ 633 table 2)
    episode_min_stations: int = 3  # stations of one city above the threshold in the same hour
    episode_min_cities: int = 1
    episode_min_hours: int = 3  # consecutive hours

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Rules:
        """The defaults, overridden by MINYUN_ECO_EPISODE_AQI=150 and the like."""
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"MINYUN_ECO_{f.name.upper()}")
            if raw is not None:
                kind = float if f.type in ("float", float) else int
                try:
                    changes[f.name] = kind(raw)
                except ValueError:
                    raise Invalid(
                        f"MINYUN_ECO_{f.name.upper()}: not a number", field=f.name
                    ) from None
        return replace(cls(), **changes)


DEFAULT_RULES = Rules()


class ResponseLevel(StrEnum):
    """Response levels of the joint response, mildest first (重污染天气应急预案 IV–I)."""

    LIGHT = "light"  # 轻度污染响应
    BLUE = "blue"  # 蓝色预警 IV级
    YELLOW = "yellow"  # 黄色预警 III级
    ORANGE = "orange"  # 橙色预警 II级
    RED = "red"  # 红色预警 I级


RESPONSE_NAMES = {
    ResponseLevel.LIGHT: "轻度污染响应",
    ResponseLevel.BLUE: "蓝色预警（IV级）",
    ResponseLevel.YELLOW: "黄色预警（III级）",
    ResponseLevel.ORANGE: "橙色预警（II级）",
    ResponseLevel.RED: "红色预警（I级）",
}


def suggested_level(peak_aqi: int) -> ResponseLevel:
    """The level a peak AQI suggests: ≤150 light, ≤200 blue, ≤300 yellow, ≤400 orange, else red."""
    for top, level in ((150, "light"), (200, "blue"), (300, "yellow"), (400, "orange")):
        if peak_aqi <= top:
            return ResponseLevel(level)
    return ResponseLevel.RED


# --- ingest ------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What a batch did: rows inserted, updated, unchanged, refused; alerts opened."""

    received: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    stations_added: int = 0
    anomalies: int = 0
    alerts_opened: list[int] = field(default_factory=list)
    hours: list[datetime] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "refused": self.refused,
            "stations_added": self.stations_added,
            "anomalies": self.anomalies,
            "alerts_opened": self.alerts_opened,
        }


def _hour_of(hx: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Hours since the epoch as UTC timestamps."""
    micros = pc.multiply(pc.cast(hx, pa.int64()), HOUR_US)
    return pc.cast(micros, pa.timestamp("us", tz="UTC"))


def _hx(value: datetime) -> int:
    return int(value.timestamp()) // 3600


def parse_hour(text: str) -> datetime:
    """An ISO 8601 hour as UTC; without an offset it is China time, as CNEMC writes it."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA)
    return value.astimezone(UTC)


def _at(hx: int) -> datetime:
    return datetime.fromtimestamp(hx * 3600, UTC)


def _as_text(table: pa.Table) -> pa.Table:
    """The input with every expected column present, as text, so one SQL handles all sources."""
    columns = {}
    for name in ("station_code", "hour", *POLLUTANTS, *META, "payload"):
        if name in table.column_names:
            columns[name] = pc.cast(table[name], pa.string())
        else:
            columns[name] = pa.nulls(table.num_rows, pa.string())
    return pa.table(columns)


_VALIDATE = """
WITH src AS (
  SELECT row_number() OVER () AS seq, *,
    CASE WHEN hour IS NULL THEN NULL
         WHEN regexp_matches(hour, '(Z|[+-][0-9][0-9]:?[0-9][0-9])$')
           THEN epoch(try_cast(hour AS TIMESTAMPTZ))
         ELSE epoch(try_cast(hour AS TIMESTAMP)) - 8 * 3600 END AS t,
    {casts}
  FROM rows
), checked AS (
  SELECT *, CASE
    WHEN station_code IS NULL OR NOT regexp_matches(station_code, '^[0-9A-Za-z]{{1,16}}$')
      THEN 'missing or malformed station code'
    WHEN t IS NULL THEN 'hour is missing or not an ISO 8601 time: ' || coalesce(hour, '')
    WHEN t % 3600 <> 0 THEN 'hour is not on the hour: ' || hour
    WHEN t > $now + 3600 THEN 'hour is in the future: ' || hour
    {not_numbers}
    {negatives}
    {absurd}
    WHEN {all_missing} THEN 'no pollutant values'
    WHEN known IS NULL AND (name IS NULL OR city IS NULL OR lon_ IS NULL OR lat_ IS NULL)
      THEN 'unknown station ' || station_code
    WHEN lon_ IS NOT NULL AND (lon_ NOT BETWEEN -180 AND 180 OR lat_ NOT BETWEEN -90 AND 90)
      THEN 'coordinates out of range'
    ELSE NULL END AS reason
  FROM (SELECT s.*, k.code AS known,
          try_cast(s.longitude AS DOUBLE) AS lon_, try_cast(s.latitude AS DOUBLE) AS lat_
        FROM src s LEFT JOIN known k ON k.code = s.station_code)
)
SELECT * FROM checked
"""


def _validation_sql() -> str:
    casts = ", ".join(f"try_cast({p} AS DOUBLE) AS {p}_" for p in POLLUTANTS)
    not_numbers = " ".join(
        f"WHEN {p} IS NOT NULL AND {p}_ IS NULL THEN '{p} is not a number: ' || {p}"
        for p in POLLUTANTS
    )
    negatives = " ".join(
        f"WHEN {p}_ < 0 THEN 'negative concentration: {p}=' || {p}" for p in POLLUTANTS
    )
    # CO sent in µg/m³ is converted, so only a value absurd even then is refused.
    limits = {**ABSURD, "co": ABSURD["co"] * 1000}
    absurd = " ".join(
        f"WHEN {p}_ > {limit} THEN 'absurd concentration: {p}=' || {p}"
        for p, limit in limits.items()
    )
    all_missing = " AND ".join(f"{p}_ IS NULL" for p in POLLUTANTS)
    return _VALIDATE.format(
        casts=casts,
        not_numbers=not_numbers,
        negatives=negatives,
        absurd=absurd,
        all_missing=all_missing,
    )


_ACCEPTED = """
SELECT station_code, CAST(t // 3600 AS BIGINT) AS hx,
  pm10_ AS pm10, pm2_5_ AS pm2_5, o3_ AS o3, no2_ AS no2, so2_ AS so2,
  CASE WHEN co_ > {co_limit} THEN co_ / 1000 ELSE co_ END AS co,
  nullif(concat_ws(';',
    CASE WHEN co_ > {co_limit} THEN 'co-µg/m³-converted' END,
    CASE WHEN {any_missing} THEN 'missing:' || concat_ws(',', {missing_names}) END), '') AS flags,
  name, city, lon_ AS longitude, lat_ AS latitude
FROM checked
WHERE reason IS NULL
-- Within a batch the last reading of a station-hour wins, as it would across batches.
QUALIFY row_number() OVER (PARTITION BY station_code, t ORDER BY seq DESC) = 1
"""


def _accepted_sql() -> str:
    return _ACCEPTED.format(
        co_limit=CO_MICROGRAM_ABOVE,
        any_missing=" OR ".join(f"{p}_ IS NULL" for p in POLLUTANTS),
        missing_names=", ".join(f"CASE WHEN {p}_ IS NULL THEN '{p}' END" for p in POLLUTANTS),
    )


def _known_stations(session: Session, codes: Sequence[str]) -> pa.Table:
    found = list(session.scalars(select(Station.code).where(Station.code.in_(set(codes)))))
    return pa.table({"code": pa.array(found, pa.string())})


def ingest_readings(
    session: Session,
    actor: Principal,
    rows: pa.Table,
    *,
    source: Source = Source.FILE,
    rules: Rules = DEFAULT_RULES,
    detect_after: bool = True,
) -> IngestReport:
    """Upsert station-hours idempotently; refused rows become dead letters with their reason.

    `rows` holds station_code, hour (ISO 8601; China time when it has no offset), the six
    1-hour concentrations and, for a station not yet known, name, city, longitude, latitude.
    The same reading twice changes nothing; a later different reading for a station-hour
    replaces the earlier one (a correction).
    """
    authorize(session, actor, "eco.ingest", target_type="eco-readings")
    report = IngestReport(received=rows.num_rows)
    if rows.num_rows == 0:
        return report
    text = _as_text(rows)
    codes = pc.unique(pc.drop_null(text["station_code"])).to_pylist()
    with duckdb.connect() as con:
        con.register("rows", text)
        con.register("known", _known_stations(session, codes))
        con.execute(f"CREATE TEMP TABLE checked AS {_validation_sql()}", {"now": _now_epoch()})
        refused = con.sql(
            "SELECT coalesce(payload, to_json(struct_pack("
            "station_code, hour, pm10, pm2_5, o3, no2, so2, co))::VARCHAR) AS payload, reason "
            "FROM checked WHERE reason IS NOT NULL ORDER BY seq"
        ).to_arrow_table()
        accepted = con.sql(_accepted_sql()).to_arrow_table()
    report.refused = refused.num_rows
    if refused.num_rows:
        add_dead_letters(session, refused, source=source)
    if accepted.num_rows == 0:
        _audit_ingest(session, actor, report, source)
        return report
    report.stations_added = _add_stations(session, accepted)
    _upsert_readings(session, accepted, source, report)
    hours = sorted(set(pc.unique(accepted["hx"]).to_pylist()))
    report.hours = [_at(h) for h in hours]
    refresh_city_hours(session, hours)
    if detect_after:
        found = detect(session, first_hx=hours[0], last_hx=hours[-1], rules=rules)
        report.anomalies = found.anomalies
        report.alerts_opened = found.alerts_opened
    _audit_ingest(session, actor, report, source)
    return report


def _now_epoch() -> int:
    return int(clock.now().timestamp())


def _audit_ingest(session: Session, actor: Principal, report: IngestReport, source: str) -> None:
    audit.record(
        session,
        actor,
        "eco.ingest",
        target_type="eco-readings",
        count=report.inserted + report.updated,
        detail=json.dumps({**report.as_dict(), "source": str(source)}, ensure_ascii=False),
    )


def add_dead_letters(session: Session, refused: pa.Table, *, source: str) -> int:
    """Keep refused input (payload, reason) in one insert."""
    now = clock.now()
    values = pa.table(
        {
            "payload": refused["payload"],
            "reason": refused["reason"],
            "source": pa.array([str(source)] * refused.num_rows, pa.string()),
            "received_at": pa.array([now] * refused.num_rows, pa.timestamp("us", tz="UTC")),
        }
    )
    session.execute(insert(DeadLetter), values.to_pylist())
    return int(refused.num_rows)


def _add_stations(session: Session, accepted: pa.Table) -> int:
    """Create the stations the batch names for the first time, from the metadata it carries."""
    with duckdb.connect() as con:
        con.register("accepted", accepted)
        con.register("known", _known_stations(session, accepted["station_code"].to_pylist()))
        new = con.sql(
            "SELECT station_code AS code, any_value(name) AS name, any_value(city) AS city, "
            "any_value(longitude) AS longitude, any_value(latitude) AS latitude "
            "FROM accepted WHERE station_code NOT IN (SELECT code FROM known) "
            "GROUP BY station_code ORDER BY station_code"
        ).to_arrow_table()
    if new.num_rows == 0:
        return 0
    cities = pc.unique(new["city"]).to_pylist()
    divisions = dict(
        session.execute(
            select(Division.name, Division.code).where(
                Division.name.in_(cities), Division.level == "city"
            )
        ).all()
    )
    now = clock.now()
    stations = new.append_column(
        "division_code", pa.array([divisions.get(c) for c in new["city"].to_pylist()], pa.string())
    )
    stations = stations.append_column(
        "control_point", pc.fill_null(pc.ends_with(new["name"], CONTROL_POINT_SUFFIX), False)
    )
    stations = stations.append_column(
        "created_at", pa.array([now] * new.num_rows, pa.timestamp("us", tz="UTC"))
    )
    session.execute(insert(Station), stations.to_pylist())
    return int(new.num_rows)


_READING_COLUMNS = ("station_code", "hx", *POLLUTANTS)


def _existing_readings(session: Session, codes: list[str], first: int, last: int) -> pa.Table:
    rows = session.execute(
        select(
            Reading.id,
            Reading.station_code,
            Reading.hour,
            *(getattr(Reading, p) for p in POLLUTANTS),
            # Stored before partial hours had an AQI: no AQI and nothing named missing.
            (Reading.aqi.is_(None) & Reading.missing.is_(None)).label("stale"),
        )
        .where(Reading.station_code.in_(codes))
        .where(Reading.hour >= _at(first), Reading.hour <= _at(last))
    ).all()
    columns: list[Sequence[Any]] = (
        list(zip(*rows, strict=True)) if rows else [[] for _ in range(4 + len(POLLUTANTS))]
    )
    hours = pa.array(columns[2], pa.timestamp("us", tz="UTC"))
    hx = pc.divide(pc.cast(pc.cast(hours, pa.timestamp("us")), pa.int64()), HOUR_US)
    return pa.table(
        {
            "id": pa.array(columns[0], pa.int64()),
            "station_code": pa.array(columns[1], pa.string()),
            "hx": hx,
            **{p: pa.array(columns[3 + i], pa.float64()) for i, p in enumerate(POLLUTANTS)},
            "stale": pa.array([bool(v) for v in columns[-1]], pa.bool_()),
        }
    )


def _upsert_readings(
    session: Session, accepted: pa.Table, source: str, report: IngestReport
) -> None:
    """New station-hours in one insert, corrected ones in one update; repeats do nothing."""
    hx = accepted["hx"]
    existing = _existing_readings(
        session,
        pc.unique(accepted["station_code"]).to_pylist(),
        pc.min(hx).as_py(),
        pc.max(hx).as_py(),
    )
    # A stale row (a partial hour stored without its AQI) is recomputed when sent again.
    same = " AND ".join(f"a.{p} IS NOT DISTINCT FROM e.{p}" for p in POLLUTANTS)
    same += " AND NOT e.stale"
    with duckdb.connect() as con:
        con.register("accepted", accepted)
        con.register("existing", existing)
        joined = con.sql(
            f"SELECT a.*, e.id, CASE WHEN e.id IS NULL THEN 'new' WHEN {same} THEN 'same' "
            "ELSE 'changed' END AS change FROM accepted a "
            "LEFT JOIN existing e ON e.station_code = a.station_code AND e.hx = a.hx"
        ).to_arrow_table()
    fresh = joined.filter(pc.not_equal(joined["change"], "same"))
    report.unchanged = joined.num_rows - fresh.num_rows
    if fresh.num_rows == 0:
        return
    # A partial hour gets the AQI of the pollutants present and names the missing ones,
    # as CNEMC publishes it; a reading without any pollutant never gets here.
    computed = hourly_aqi_table(fresh.select(list(HOURLY_COLUMNS.values())), so2_24h_column=None)
    now = clock.now()
    values = pa.table(
        {
            "station_code": fresh["station_code"],
            "hour": _hour_of(fresh["hx"]),
            **{p: fresh[p] for p in POLLUTANTS},
            "aqi": pc.cast(computed["aqi"], pa.int64()),
            "primary_pollutant": pc.cast(computed["primary_pollutant"], pa.string()),
            "level": pc.cast(computed["aqi_level"], pa.int64()),
            "missing": pc.cast(computed["aqi_missing"], pa.string()),
            "flags": fresh["flags"],
            "source": pa.array([str(source)] * fresh.num_rows, pa.string()),
            "received_at": pa.array([now] * fresh.num_rows, pa.timestamp("us", tz="UTC")),
            "id": fresh["id"],
            "change": fresh["change"],
        }
    )
    new = values.filter(pc.equal(values["change"], "new")).drop_columns(["id", "change"])
    changed = values.filter(pc.equal(values["change"], "changed")).drop_columns(["change"])
    if new.num_rows:
        session.execute(insert(Reading), new.to_pylist())
    if changed.num_rows:
        session.execute(update(Reading), changed.drop_columns(["station_code", "hour"]).to_pylist())
    report.inserted, report.updated = new.num_rows, changed.num_rows


def rows_from_cnemc(table: pa.Table) -> pa.Table:
    """A CNEMC station file (cnemc.read_cnemc) as ingest rows; its 1-hour O3 is `o3_24h`."""
    return pa.table(
        {
            "station_code": table["stationcode"],
            "hour": table["timepoint"],
            "pm10": table["pm10"],
            "pm2_5": table["pm2_5"],
            "o3": table["o3_24h"],
            "no2": table["no2"],
            "so2": table["so2"],
            "co": table["co"],
            "name": table["positionname"],
            "city": table["area"],
            "longitude": table["longitude"],
            "latitude": table["latitude"],
        }
    )


# --- reading back ------------------------------------------------------------------

_WINDOW_COLUMNS = ("station_code", "hour", "aqi", *POLLUTANTS)


def readings_table(session: Session, *, first_hx: int, last_hx: int) -> pa.Table:
    """Readings of the hours first_hx…last_hx with their station's city and place, as Arrow."""
    rows = session.execute(
        select(
            Reading.station_code,
            Reading.hour,
            Reading.aqi,
            *(getattr(Reading, p) for p in POLLUTANTS),
            Station.city,
            Station.longitude,
            Station.latitude,
            Station.control_point,
        )
        .join(Station, Station.code == Reading.station_code)
        .where(Reading.hour >= _at(first_hx), Reading.hour <= _at(last_hx))
    ).all()
    names = [*_WINDOW_COLUMNS, "city", "longitude", "latitude", "control_point"]
    types = [pa.string(), pa.timestamp("us", tz="UTC"), pa.int64()]
    types += [pa.float64()] * len(POLLUTANTS) + [pa.string(), pa.float64(), pa.float64()]
    types += [pa.bool_()]
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    table = pa.table({n: pa.array(c, t) for n, c, t in zip(names, columns, types, strict=True)})
    hx = pc.divide(pc.cast(pc.cast(table["hour"], pa.timestamp("us")), pa.int64()), HOUR_US)
    return table.drop_columns(["hour"]).append_column("hx", hx)


def refresh_city_hours(session: Session, hours: Sequence[int]) -> None:
    """Recompute the city AQI of these hours from the stations (HJ 663, control points out)."""
    if not hours:
        return
    table = readings_table(session, first_hx=min(hours), last_hx=max(hours))
    table = table.filter(
        pc.and_(pc.invert(table["control_point"]), pc.is_in(table["hx"], pa.array(hours)))
    )
    session.execute(delete(CityHour).where(CityHour.hour.in_([_at(h) for h in hours])))
    if table.num_rows == 0:
        return
    counted = table.group_by(["hx", "city"]).aggregate([("station_code", "count")])
    cities = city_hourly_aqi_table(table, by=("hx", "city"), so2_24h_column=None, require_all=False)
    with duckdb.connect() as con:
        con.register("cities", cities)
        con.register("counted", counted)
        merged = con.sql(
            "SELECT c.city, c.hx, c.aqi, c.primary_pollutant::VARCHAR AS primary_pollutant, "
            "c.aqi_level AS level, c.pm2_5, c.aqi_missing::VARCHAR AS missing, "
            "n.station_code_count AS stations "
            "FROM cities c JOIN counted n USING (hx, city)"
        ).to_arrow_table()
    now = clock.now()
    values = pa.table(
        {
            "city": merged["city"],
            "hour": _hour_of(merged["hx"]),
            "aqi": pc.cast(merged["aqi"], pa.int64()),
            "primary_pollutant": merged["primary_pollutant"],
            "level": pc.cast(merged["level"], pa.int64()),
            "pm2_5": merged["pm2_5"],
            "missing": merged["missing"],
            "stations": merged["stations"],
            "computed_at": pa.array([now] * merged.num_rows, pa.timestamp("us", tz="UTC")),
        }
    )
    session.execute(insert(CityHour), values.to_pylist())


# --- detection ---------------------------------------------------------------------


@dataclass
class Detection:
    anomalies: int = 0
    alerts_opened: list[int] = field(default_factory=list)
    alerts_extended: list[int] = field(default_factory=list)


_JUMP = """
SELECT 'jump' AS rule, station_code, hx, aqi AS value,
  'AQI ' || aqi || ' against a median of ' || round(base, 1) || ' over the previous '
    || n || ' hours' AS detail
FROM (
  SELECT *, median(aqi) OVER w AS base, count(aqi) OVER w AS n
  FROM win WINDOW w AS (PARTITION BY station_code ORDER BY hx
                        RANGE BETWEEN $window PRECEDING AND 1 PRECEDING)
)
WHERE hx BETWEEN $first AND $last AND n >= $min_history
  AND aqi - base >= $delta AND aqi >= $ratio * base
"""

_STUCK = """
SELECT 'stuck' AS rule, station_code, hx, pm2_5 AS value,
  'PM10 ' || pm10 || ', PM2.5 ' || pm2_5 || ', NO2 ' || no2 || ', O3 ' || o3
    || ' unchanged for ' || n || ' hours' AS detail
FROM (
  SELECT *, count(k) OVER w AS n, min(k) OVER w AS lo, max(k) OVER w AS hi
  FROM (SELECT *, CASE WHEN pm10 IS NOT NULL AND pm2_5 IS NOT NULL AND no2 IS NOT NULL
                        AND o3 IS NOT NULL THEN concat_ws('|', pm10, pm2_5, no2, o3) END AS k
        FROM win)
  WINDOW w AS (PARTITION BY station_code ORDER BY hx
               RANGE BETWEEN $hours - 1 PRECEDING AND CURRENT ROW)
)
WHERE hx BETWEEN $first AND $last AND n >= $hours AND lo = hi
"""

_SPATIAL = """
WITH pairs AS (
  SELECT a.station_code, a.hx, a.aqi, b.aqi AS other
  FROM win a JOIN win b ON a.hx = b.hx AND a.station_code <> b.station_code
  WHERE a.hx BETWEEN $first AND $last AND a.aqi IS NOT NULL AND b.aqi IS NOT NULL
    AND 6371 * 2 * asin(sqrt(
          pow(sin(radians(b.latitude - a.latitude) / 2), 2)
          + cos(radians(a.latitude)) * cos(radians(b.latitude))
            * pow(sin(radians(b.longitude - a.longitude) / 2), 2))) <= $radius
)
SELECT 'spatial' AS rule, station_code, hx, any_value(aqi) AS value,
  'AQI ' || any_value(aqi) || ' against a median of ' || round(median(other), 1) || ' at '
    || count(*) || ' stations within the radius' AS detail
FROM pairs GROUP BY station_code, hx
HAVING count(*) >= $min_neighbours
  AND abs(any_value(aqi) - median(other)) >= $delta
  AND (any_value(aqi) >= $ratio * median(other) OR any_value(aqi) * $ratio <= median(other))
"""

_EPISODE_HOURS = """
WITH hot AS (
  SELECT hx, city, count(*) AS n, list(station_code ORDER BY station_code) AS stations,
         max(aqi) AS peak, arg_max(station_code, aqi) AS peak_station
  FROM win WHERE aqi > $threshold GROUP BY hx, city HAVING count(*) >= $min_stations
), hours AS (
  SELECT hx, list(city ORDER BY city) AS cities, flatten(list(stations)) AS stations,
         max(peak) AS peak, arg_max(peak_station, peak) AS peak_station
  FROM hot GROUP BY hx HAVING count(*) >= $min_cities
), runs AS (
  SELECT *, hx - row_number() OVER (ORDER BY hx) AS run FROM hours
)
SELECT min(hx) AS first, max(hx) AS last, count(*) AS hours,
  list_sort(list_distinct(flatten(list(cities)))) AS cities,
  list_sort(list_distinct(flatten(list(stations)))) AS stations,
  max(peak) AS peak, arg_max(peak_station, peak) AS peak_station
FROM runs GROUP BY run HAVING count(*) >= $min_hours AND max(hx) >= $first
ORDER BY first
"""


def detect(
    session: Session, *, first_hx: int, last_hx: int, rules: Rules = DEFAULT_RULES
) -> Detection:
    """Run every rule over the hours first_hx…last_hx (with the history they need before them)."""
    history = max(rules.jump_window, rules.stuck_hours, 24)
    # Later hours are judged again too: a late reading changes the history they were judged on.
    latest = session.scalar(select(func.max(Reading.hour)))
    last_hx = max(last_hx, _hx(latest) if latest is not None else last_hx)
    table = readings_table(session, first_hx=first_hx - history, last_hx=last_hx)
    result = Detection()
    with duckdb.connect() as con:
        con.register("win", table)
        bounds = {"first": first_hx, "last": last_hx}
        found = [
            con.sql(
                _JUMP,
                params={
                    **bounds,
                    "window": rules.jump_window,
                    "min_history": rules.jump_min_history,
                    "delta": rules.jump_delta,
                    "ratio": rules.jump_ratio,
                },
            ).to_arrow_table(),
            con.sql(_STUCK, params={**bounds, "hours": rules.stuck_hours}).to_arrow_table(),
            con.sql(
                _SPATIAL,
                params={
                    **bounds,
                    "radius": rules.spatial_radius_km,
                    "min_neighbours": rules.spatial_min_neighbours,
                    "delta": rules.spatial_delta,
                    "ratio": rules.spatial_ratio,
                },
            ).to_arrow_table(),
        ]
        episodes = con.sql(
            _EPISODE_HOURS,
            params={
                "first": first_hx,
                "threshold": rules.episode_aqi,
                "min_stations": rules.episode_min_stations,
                "min_cities": rules.episode_min_cities,
                "min_hours": rules.episode_min_hours,
            },
        ).to_arrow_table()
    anomalies = pa.concat_tables(
        [t.select(["rule", "station_code", "hx", "value", "detail"]) for t in found],
        promote_options="permissive",
    )
    result.anomalies = _add_anomalies(session, anomalies, first_hx, last_hx)
    for episode in episodes.to_pylist():
        alert, opened = _open_or_extend_alert(session, episode, rules)
        (result.alerts_opened if opened else result.alerts_extended).append(alert.id)
    return result


def _add_anomalies(session: Session, found: pa.Table, first_hx: int, last_hx: int) -> int:
    """Insert anomalies not already recorded (one insert); returns how many were new."""
    if found.num_rows == 0:
        return 0
    seen = session.execute(
        select(Anomaly.rule, Anomaly.station_code, Anomaly.hour).where(
            Anomaly.hour >= _at(first_hx), Anomaly.hour <= _at(last_hx)
        )
    ).all()
    seen_keys = pa.table(
        {
            "rule": pa.array([r[0] for r in seen], pa.string()),
            "station_code": pa.array([r[1] for r in seen], pa.string()),
            "hx": pa.array([_hx(r[2]) for r in seen], pa.int64()),
        }
    )
    found = found.set_column(2, "hx", pc.cast(found["hx"], pa.int64()))
    fresh = found.join(seen_keys, ["rule", "station_code", "hx"], join_type="left anti")
    if fresh.num_rows == 0:
        return 0
    now = clock.now()
    values = pa.table(
        {
            "rule": fresh["rule"],
            "station_code": fresh["station_code"],
            "hour": _hour_of(fresh["hx"]),
            "value": pc.cast(fresh["value"], pa.float64()),
            "detail": fresh["detail"],
            "detected_at": pa.array([now] * fresh.num_rows, pa.timestamp("us", tz="UTC")),
        }
    )
    session.execute(insert(Anomaly), values.to_pylist())
    return int(fresh.num_rows)


def _open_or_extend_alert(
    session: Session, episode: dict[str, Any], rules: Rules
) -> tuple[Alert, bool]:
    """The alert of an episode: the one overlapping it is extended, else a new one opens."""
    system = Principal.system(on_behalf_of="eco.detect")
    first, last = _at(episode["first"]), _at(episode["last"])
    alert = session.scalars(
        select(Alert)
        .where(Alert.start_hour <= last, Alert.end_hour >= first - timedelta(hours=1))
        .order_by(Alert.id.desc())
    ).first()
    if alert is not None:
        if alert.state != AlertState.CLOSED:
            added = sorted(set(episode["cities"]) - set(alert.cities))
            alert.start_hour = min(alert.start_hour, first)
            alert.end_hour = max(alert.end_hour, last)
            alert.stations = sorted(set(alert.stations) | set(episode["stations"]))
            alert.cities = sorted(set(alert.cities) | set(added))
            if episode["peak"] > alert.peak_aqi:
                alert.peak_aqi, alert.peak_station = episode["peak"], episode["peak_station"]
            if added:
                _route(session, system, alert, added)
        return alert, False
    alert = Alert(
        state=AlertState.OPEN,
        cities=list(episode["cities"]),
        stations=list(episode["stations"]),
        org_codes=[],
        start_hour=first,
        end_hour=last,
        peak_aqi=int(episode["peak"]),
        peak_station=episode["peak_station"],
        threshold=rules.episode_aqi,
        detected_at=clock.now(),
    )
    session.add(alert)
    session.flush()
    note = (
        f"{len(alert.stations)} stations in {'、'.join(alert.cities)} above AQI "
        f"{rules.episode_aqi} for {episode['hours']} consecutive hours; peak {alert.peak_aqi}"
    )
    _step(session, system, alert, StepKind.DETECTED, note, action="eco.alert.open")
    _route(session, system, alert, alert.cities)
    return alert, True


def _route(session: Session, actor: Principal, alert: Alert, cities: Sequence[str]) -> None:
    """Send the alert to the environment department (`*-eco`) of each city."""
    orgs = session.execute(
        select(Division.name, Organization.code)
        .join(Organization, Organization.division_code == Division.code)
        .where(Division.name.in_(cities), Division.level == "city")
        .where(Organization.code.like("%-eco"))
        .order_by(Organization.code)
    ).all()
    by_city = {name: code for name, code in orgs}
    for city in cities:
        code = by_city.get(city)
        if code is None:
            note = f"{city}: no environment department on file; left to the province"
        else:
            note = f"{city} → {code}"
            alert.org_codes = sorted({*alert.org_codes, code})
        _step(session, actor, alert, StepKind.ROUTED, note, org=code, action="eco.alert.route")


def _step(
    session: Session,
    actor: Principal,
    alert: Alert,
    kind: StepKind,
    note: str,
    *,
    action: str,
    org: str | None = None,
) -> AlertStep:
    step = AlertStep(
        kind=kind,
        actor=actor.label,
        organization_code=org,
        note=note,
        at=clock.now(),
    )
    alert.steps.append(step)
    session.flush()
    audit.record(
        session, actor, action, target=str(alert.id), target_type="eco-alert", detail=note[:500]
    )
    return step


# --- joint response ----------------------------------------------------------------


def _may_see(session: Session, actor: Principal, alert: Alert) -> bool:
    """Admins, the departments the alert was routed to, and the departments over them."""
    if actor.kind == "system" or actor.has_role(Role.ADMIN):
        return True
    if actor.organization_id is None or not alert.org_codes:
        return False
    routed = session.execute(
        select(Organization.id, Organization.parent_id).where(
            Organization.code.in_(alert.org_codes)
        )
    ).all()
    return any(actor.organization_id in (org_id, parent_id) for org_id, parent_id in routed)


def access_alert(session: Session, actor: Principal, alert_id: int) -> Alert:
    """The alert if the actor's department was sent it (or oversees one that was); else NotFound."""
    authorize(session, actor, "eco.read", target=str(alert_id), target_type="eco-alert")
    alert = session.get(Alert, alert_id)
    # Same error for missing and not yours: other cities' alerts are not listed to you.
    if alert is None or not _may_see(session, actor, alert):
        raise NotFound(f"no alert {alert_id}")
    return alert


def list_alerts(
    session: Session, actor: Principal, *, state: str | None = None, limit: int = 100
) -> list[Alert]:
    """The actor's alert inbox, newest first."""
    authorize(session, actor, "eco.read", target_type="eco-alert")
    query = select(Alert).order_by(Alert.detected_at.desc(), Alert.id.desc()).limit(limit * 5)
    if state is not None:
        query = query.where(Alert.state == state)
    return [a for a in session.scalars(query) if _may_see(session, actor, a)][:limit]


def _respond(session: Session, actor: Principal, alert_id: int) -> Alert:
    authorize(session, actor, "eco.respond", target=str(alert_id), target_type="eco-alert")
    return access_alert(session, actor, alert_id)


def _require(alert: Alert, *states: AlertState) -> None:
    if alert.state not in states:
        wanted = " or ".join(states)
        raise Conflict(f"alert {alert.id} is {alert.state}; this step needs it {wanted}")


def start_consultation(
    session: Session, actor: Principal, alert_id: int, *, departments: Sequence[str], note: str
) -> Alert:
    """Open a consultation (会商) of the alert with other departments."""
    alert = _respond(session, actor, alert_id)
    _require(alert, AlertState.OPEN)
    codes = sorted(set(departments))
    if not codes:
        raise Invalid("a consultation needs at least one department", field="departments")
    found = set(session.scalars(select(Organization.code).where(Organization.code.in_(codes))))
    unknown = [c for c in codes if c not in found]
    if unknown:
        raise Invalid(f"unknown departments: {', '.join(unknown)}", field="departments")
    alert.state = AlertState.CONSULTING
    text = f"会商 with {', '.join(codes)}" + (f": {note}" if note else "")
    _step(session, actor, alert, StepKind.CONSULTATION, text, action="eco.alert.consult")
    return alert


def set_response_level(
    session: Session, actor: Principal, alert_id: int, *, level: ResponseLevel | str, note: str = ""
) -> Alert:
    """Choose (or change) the response level; the first choice is the response time."""
    alert = _respond(session, actor, alert_id)
    _require(alert, AlertState.CONSULTING, AlertState.RESPONDING)
    try:
        chosen = ResponseLevel(level)
    except ValueError:
        raise Invalid(f"unknown response level {level!r}", field="level") from None
    alert.state = AlertState.RESPONDING
    alert.response_level = chosen
    if alert.responded_at is None:
        alert.responded_at = clock.now()
    text = RESPONSE_NAMES[chosen] + (f": {note}" if note else "")
    _step(session, actor, alert, StepKind.LEVEL, text, action="eco.alert.level")
    return alert


def record_action(session: Session, actor: Principal, alert_id: int, *, note: str) -> Alert:
    """Record an action taken under the response (e.g. 工地停工, 道路洒水)."""
    alert = _respond(session, actor, alert_id)
    _require(alert, AlertState.RESPONDING)
    if not note.strip():
        raise Invalid("say what was done", field="note")
    _step(session, actor, alert, StepKind.ACTION, note.strip(), action="eco.alert.action")
    return alert


def readings_back_under(session: Session, alert: Alert) -> tuple[bool, str]:
    """Whether every station of the alert reads at or under its threshold in the latest hour."""
    latest = session.scalar(
        select(func.max(Reading.hour)).where(Reading.station_code.in_(alert.stations))
    )
    if latest is None:
        return False, "no readings"
    above = session.execute(
        select(Reading.station_code, Reading.aqi)
        .where(Reading.station_code.in_(alert.stations), Reading.hour == latest)
        .where(Reading.aqi > alert.threshold)
        .order_by(Reading.station_code)
    ).all()
    if above:
        listed = ", ".join(f"{code} AQI {aqi}" for code, aqi in above)
        return False, f"still above {alert.threshold} at {latest.isoformat()}: {listed}"
    return (
        True,
        f"all {len(alert.stations)} stations at or under {alert.threshold} at {latest.isoformat()}",
    )


def close_alert(session: Session, actor: Principal, alert_id: int, *, note: str = "") -> Alert:
    """Close the response, allowed once the readings are back under the threshold."""
    alert = _respond(session, actor, alert_id)
    _require(alert, AlertState.RESPONDING)
    ok, why = readings_back_under(session, alert)
    if not ok:
        raise Conflict(f"cannot close alert {alert.id}: {why}")
    alert.state = AlertState.CLOSED
    alert.closed_at = clock.now()
    text = why + (f"; {note}" if note else "")
    _step(session, actor, alert, StepKind.CLOSED, text, action="eco.alert.close")
    return alert


# --- views -------------------------------------------------------------------------


def _latest_hour(session: Session) -> datetime | None:
    return session.scalar(select(func.max(CityHour.hour)))


def public_city_aqi(session: Session) -> list[CityHour]:
    """Current AQI per city (latest hour): public data, shown without signing in."""
    latest = _latest_hour(session)
    if latest is None:
        return []
    return list(
        session.scalars(
            select(CityHour)
            .where(CityHour.hour == latest)
            .order_by(CityHour.aqi.is_(None), CityHour.aqi, CityHour.city)
        )
    )


def city_ranking(session: Session, actor: Principal) -> list[CityHour]:
    """Cities of the latest hour, cleanest first (the usual 城市排名)."""
    authorize(session, actor, "eco.read", target_type="eco-city")
    return public_city_aqi(session)


@dataclass(frozen=True)
class StationView:
    code: str
    name: str
    city: str
    longitude: float
    latitude: float
    control_point: bool
    aqi: int | None
    level: int | None
    primary_pollutant: str | None
    colour: str
    hour: datetime | None
    missing_pollutants: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        """Whether the station's AQI this hour was computed without some pollutants."""
        return self.aqi is not None and bool(self.missing_pollutants)

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "city": self.city,
            "lon": self.longitude,
            "lat": self.latitude,
            "aqi": self.aqi,
            "level": self.level,
            "primary": self.primary_pollutant or "",
            "colour": self.colour,
            "missing": list(self.missing_pollutants),
        }


NO_DATA_COLOUR = "#9e9e9e"


def colour_of(level: int | None) -> str:
    """The HJ 633 appendix A colour of a level 1–6; grey without an AQI."""
    return NO_DATA_COLOUR if level is None else LEVELS[level - 1].colour


def station_map(session: Session, actor: Principal) -> list[StationView]:
    """Every station with its reading of the latest hour."""
    authorize(session, actor, "eco.read", target_type="eco-station")
    latest = session.scalar(select(func.max(Reading.hour)))
    rows = session.execute(
        select(Station, Reading)
        .outerjoin(Reading, (Reading.station_code == Station.code) & (Reading.hour == latest))
        .order_by(Station.city, Station.code)
    ).all()
    return [
        StationView(
            code=s.code,
            name=s.name,
            city=s.city,
            longitude=s.longitude,
            latitude=s.latitude,
            control_point=s.control_point,
            aqi=r.aqi if r else None,
            level=r.level if r else None,
            primary_pollutant=r.primary_pollutant if r else None,
            colour=colour_of(r.level if r else None),
            hour=latest if r else None,
            missing_pollutants=tuple(r.missing_pollutants) if r else (),
        )
        for s, r in rows
    ]


def get_station(session: Session, actor: Principal, code: str) -> Station:
    """The station, or NotFound."""
    authorize(session, actor, "eco.read", target=code, target_type="eco-station")
    station = session.get(Station, code)
    if station is None:
        raise NotFound(f"no station {code}")
    return station


def station_series(
    session: Session, actor: Principal, code: str, *, hours: int = 72
) -> list[Reading]:
    """The station's readings of its latest `hours` hours, oldest first."""
    get_station(session, actor, code)
    rows = session.scalars(
        select(Reading)
        .where(Reading.station_code == code)
        .order_by(Reading.hour.desc())
        .limit(hours)
    )
    return list(reversed(list(rows)))


def city_series(
    session: Session, actor: Principal, city: str, *, hours: int = 72
) -> list[CityHour]:
    """The city's hourly AQI, oldest first."""
    authorize(session, actor, "eco.read", target=city, target_type="eco-city")
    rows = session.scalars(
        select(CityHour).where(CityHour.city == city).order_by(CityHour.hour.desc()).limit(hours)
    )
    found = list(reversed(list(rows)))
    if not found:
        raise NotFound(f"no readings for city {city}")
    return found


def anomalies(session: Session, actor: Principal, *, limit: int = 200) -> list[Anomaly]:
    """The newest anomalies."""
    authorize(session, actor, "eco.read", target_type="eco-anomaly")
    return list(
        session.scalars(select(Anomaly).order_by(Anomaly.hour.desc(), Anomaly.id).limit(limit))
    )


def dead_letters(session: Session, actor: Principal, *, limit: int = 200) -> list[DeadLetter]:
    """The newest refused readings with their reasons."""
    authorize(session, actor, "eco.read", target_type="eco-dead-letter")
    return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)))


def hulls(stations: Sequence[StationView]) -> dict[str, list[tuple[float, float]]]:
    """Per city, the convex hull of its stations (lat, lon): a rough outline without map tiles."""
    result: dict[str, list[tuple[float, float]]] = {}
    for city in sorted({s.city for s in stations}):
        points = np.array(sorted({(s.longitude, s.latitude) for s in stations if s.city == city}))
        result[city] = [(float(y), float(x)) for x, y in _convex_hull(points)]
    return result


def _convex_hull(points: np.ndarray) -> list[tuple[float, float]]:
    # Andrew's monotone chain; a handful of points per city.
    pts = [tuple(p) for p in points]
    if len(pts) <= 2:
        return pts

    def cross(o: tuple[float, ...], a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, ...]] = []
    upper: list[tuple[float, ...]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return [(float(p[0]), float(p[1])) for p in lower[:-1] + upper[:-1]]
