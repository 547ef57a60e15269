"""Ingest of hourly readings: validation, dead letters, idempotent upsert, city hours.

Bulk work runs on Arrow tables with DuckDB SQL; the database sees one insert and one update
per batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from minyun.apps.ecocloud.aqi import HOURLY_COLUMNS, city_hourly_aqi_table, hourly_aqi_table
from minyun.apps.ecocloud.cnemc import CONTROL_POINT_SUFFIX
from minyun.apps.ecocloud.detect import DEFAULT_RULES, Rules, detect
from minyun.apps.ecocloud.models import CityHour, DeadLetter, Reading, Source, Station
from minyun.apps.ecocloud.operators import require_operator
from minyun.apps.ecocloud.readings import (
    HOUR_US,
    META,
    POLLUTANTS,
    hour_at,
    hours_at,
    readings_table,
)
from minyun.core import audit, clock
from minyun.core.security import Principal, authorize
from minyun.orgs.models import Division

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
#: How many corrected readings a batch's audit record lists with their old and new values;
#: the rest are counted (`changes_more`).
AUDITED_CHANGES = 20


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
    # The first AUDITED_CHANGES corrections: station, hour, values before and after.
    changes: list[dict[str, Any]] = field(default_factory=list)
    changes_more: int = 0

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
    replaces the earlier one (a correction), and the audit record names it with its values
    before and after.

    Only the network's operators ingest, and only for the stations their organisation runs
    (`operators.operates`); a batch touching another's station is refused as a whole.
    """
    authorize(session, actor, "eco.ingest", target_type="eco-readings")
    report = IngestReport(received=rows.num_rows)
    if rows.num_rows == 0:
        return report
    text = _as_text(rows)
    require_operator(session, actor, text)
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
    report.hours = [hour_at(h) for h in hours]
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
    detail = {
        **report.as_dict(),
        "source": str(source),
        "changes": report.changes,
        "changes_more": report.changes_more,
    }
    audit.record(
        session,
        actor,
        "eco.ingest",
        target_type="eco-readings",
        count=report.inserted + report.updated,
        detail=json.dumps(detail, ensure_ascii=False),
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
            Reading.aqi,
            # Stored before partial hours had an AQI: no AQI and nothing named missing.
            (Reading.aqi.is_(None) & Reading.missing.is_(None)).label("stale"),
        )
        .where(Reading.station_code.in_(codes))
        .where(Reading.hour >= hour_at(first), Reading.hour <= hour_at(last))
    ).all()
    columns: list[Sequence[Any]] = (
        list(zip(*rows, strict=True)) if rows else [[] for _ in range(5 + len(POLLUTANTS))]
    )
    hours = pa.array(columns[2], pa.timestamp("us", tz="UTC"))
    hx = pc.divide(pc.cast(pc.cast(hours, pa.timestamp("us")), pa.int64()), HOUR_US)
    return pa.table(
        {
            "id": pa.array(columns[0], pa.int64()),
            "station_code": pa.array(columns[1], pa.string()),
            "hx": hx,
            **{p: pa.array(columns[3 + i], pa.float64()) for i, p in enumerate(POLLUTANTS)},
            "aqi": pa.array(columns[3 + len(POLLUTANTS)], pa.int64()),
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
        before = ", ".join(f"e.{p} AS before_{p}" for p in (*POLLUTANTS, "aqi"))
        joined = con.sql(
            f"SELECT a.*, e.id, {before}, CASE WHEN e.id IS NULL THEN 'new' WHEN {same} "
            "THEN 'same' ELSE 'changed' END AS change FROM accepted a "
            "LEFT JOIN existing e ON e.station_code = a.station_code AND e.hx = a.hx "
            "ORDER BY a.station_code, a.hx"
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
            "hour": hours_at(fresh["hx"]),
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
    corrected = pc.equal(fresh["change"], "changed")
    report.changes = _changes(fresh.filter(corrected), values.filter(corrected))
    report.changes_more = changed.num_rows - len(report.changes)


def _changes(fresh: pa.Table, values: pa.Table) -> list[dict[str, Any]]:
    """The first AUDITED_CHANGES corrections as {station, hour, before, after} (for the audit)."""
    fresh, values = fresh.slice(0, AUDITED_CHANGES), values.slice(0, AUDITED_CHANGES)
    shown = (*POLLUTANTS, "aqi")
    before = fresh.select([f"before_{p}" for p in shown]).rename_columns(list(shown)).to_pylist()
    after = values.select(list(shown)).to_pylist()
    return [
        {"station": code, "hour": hour.isoformat(), "before": old, "after": now}
        for code, hour, old, now in zip(
            values["station_code"].to_pylist(),
            values["hour"].to_pylist(),
            before,
            after,
            strict=True,
        )
    ]


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


def refresh_city_hours(session: Session, hours: Sequence[int]) -> None:
    """Recompute the city AQI of these hours from the stations (HJ 663, control points out)."""
    if not hours:
        return
    table = readings_table(session, first_hx=min(hours), last_hx=max(hours))
    table = table.filter(
        pc.and_(pc.invert(table["control_point"]), pc.is_in(table["hx"], pa.array(hours)))
    )
    session.execute(delete(CityHour).where(CityHour.hour.in_([hour_at(h) for h in hours])))
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
            "hour": hours_at(merged["hx"]),
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
