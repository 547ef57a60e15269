"""Detection: anomalies of single stations (jump, stuck, spatial) and pollution episodes.

Every rule is one DuckDB query over a window of readings; an episode opens an alert (or
extends the one it overlaps), which the joint response (`response`) then takes over.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from minyun.apps.ecocloud.models import Alert, AlertState, Anomaly, Reading, StepKind
from minyun.apps.ecocloud.readings import hour_at, hours_at, hx_of, readings_table
from minyun.apps.ecocloud.response import add_step, route_alert
from minyun.core import clock
from minyun.core.errors import Invalid
from minyun.core.security import Principal


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
    last_hx = max(last_hx, hx_of(latest) if latest is not None else last_hx)
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
            Anomaly.hour >= hour_at(first_hx), Anomaly.hour <= hour_at(last_hx)
        )
    ).all()
    seen_keys = pa.table(
        {
            "rule": pa.array([r[0] for r in seen], pa.string()),
            "station_code": pa.array([r[1] for r in seen], pa.string()),
            "hx": pa.array([hx_of(r[2]) for r in seen], pa.int64()),
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
            "hour": hours_at(fresh["hx"]),
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
    first, last = hour_at(episode["first"]), hour_at(episode["last"])
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
                route_alert(session, system, alert, added)
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
    add_step(session, system, alert, StepKind.DETECTED, note, action="eco.alert.open")
    route_alert(session, system, alert, alert.cities)
    return alert, True
