"""Readings as the eco-cloud's modules share them: pollutants, whole hours, the read-back table.

Times are handled as whole hours since the epoch (`hx`) inside DuckDB so that no time-zone
library is needed; a time without an offset is China time (UTC+8), as CNEMC publishes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.ecocloud.models import Reading, Station

POLLUTANTS: tuple[str, ...] = ("pm10", "pm2_5", "o3", "no2", "so2", "co")
META: tuple[str, ...] = ("name", "city", "longitude", "latitude")
HOUR_US = 3_600_000_000
CHINA = timezone(timedelta(hours=8))


def hours_at(hx: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Hours since the epoch as UTC timestamps."""
    micros = pc.multiply(pc.cast(hx, pa.int64()), HOUR_US)
    return pc.cast(micros, pa.timestamp("us", tz="UTC"))


def hx_of(value: datetime) -> int:
    """The whole hours since the epoch of a time."""
    return int(value.timestamp()) // 3600


def hour_at(hx: int) -> datetime:
    """The UTC time of an hour since the epoch."""
    return datetime.fromtimestamp(hx * 3600, UTC)


def parse_hour(text: str) -> datetime:
    """An ISO 8601 hour as UTC; without an offset it is China time, as CNEMC writes it."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA)
    return value.astimezone(UTC)


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
        .where(Reading.hour >= hour_at(first_hx), Reading.hour <= hour_at(last_hx))
    ).all()
    names = [*_WINDOW_COLUMNS, "city", "longitude", "latitude", "control_point"]
    types = [pa.string(), pa.timestamp("us", tz="UTC"), pa.int64()]
    types += [pa.float64()] * len(POLLUTANTS) + [pa.string(), pa.float64(), pa.float64()]
    types += [pa.bool_()]
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    table = pa.table({n: pa.array(c, t) for n, c, t in zip(names, columns, types, strict=True)})
    hx = pc.divide(pc.cast(pc.cast(table["hour"], pa.timestamp("us")), pa.int64()), HOUR_US)
    return table.drop_columns(["hour"]).append_column("hx", hx)
