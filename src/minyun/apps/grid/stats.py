"""Statistics of the grid: time to arrival and to close per category, department and grid.

One query reads the tasks of the window with their report's category and place; Arrow
groups them (no Python loop per row).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.grid.models import Area, GridService, Report, ReportState, Task, TaskState
from minyun.core import clock
from minyun.core.security import Principal, authorize
from minyun.orgs.models import Organization


@dataclass(frozen=True)
class Row:
    """One group: how many tasks, how many closed or overdue, mean minutes to arrive and close."""

    key: str
    name: str
    tasks: int
    closed: int
    overdue: int
    arrive_minutes: float | None
    close_minutes: float | None


@dataclass(frozen=True)
class Summary:
    reports: int
    open_reports: int
    closed_reports: int
    by_category: list[Row]
    by_department: list[Row]
    by_street: list[Row]
    by_grid: list[Row]
    since: datetime


_TIME = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("org", pa.int64()), ("state", pa.string()), ("routed", _TIME),
                    ("accepted", _TIME), ("closed", _TIME), ("arrive_by", _TIME),
                    ("close_by", _TIME), ("service", pa.string()), ("street", pa.string()),
                    ("grid", pa.string())])  # fmt: skip
COLUMNS = SCHEMA.names


def _minutes(end: pa.Array, start: pa.Array) -> pa.Array:
    return pc.divide(pc.cast(pc.subtract(end, start), pa.int64()), 60_000_000.0)


def summary(session: Session, actor: Principal, *, days: int = 30) -> Summary:
    """The last `days` days of reports and tasks, grouped four ways (civil servants)."""
    authorize(session, actor, "grid.read")
    now = clock.now()
    since = now - timedelta(days=days)
    rows = session.execute(
        select(Task.org_id, Task.state, Task.routed_at, Task.accepted_at, Task.closed_at,
               Task.arrive_by, Task.close_by, Report.service_code, Report.street_code,
               Report.grid_code)
        .join(Report, Report.id == Task.report_id)
        .where(Report.requested_at >= since, Task.state != TaskState.WITHDRAWN)
    ).all()  # fmt: skip
    counts = (
        session.execute(select(Report.state).where(Report.requested_at >= since)).scalars().all()
    )
    names = _names(session)
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}, schema=SCHEMA)
    if rows:
        table = _measures(table, now)
    closed = sum(1 for s in counts if s == ReportState.CLOSED)
    return Summary(
        reports=len(counts),
        open_reports=len(counts) - closed,
        closed_reports=closed,
        by_category=_group(table, "service", names["service"]),
        by_department=_group(table, "org", names["org"]),
        by_street=_group(table, "street", names["area"]),
        by_grid=_group(table, "grid", names["area"]),
        since=since,
    )


def _measures(table: pa.Table, now: datetime) -> pa.Table:
    routed = table["routed"]
    now_array = pa.scalar(now, type=routed.type)
    closed = pc.equal(table["state"], TaskState.CLOSED.value)
    late_arrival = pc.greater(pc.fill_null(table["accepted"], now_array), table["arrive_by"])
    late_close = pc.greater(pc.fill_null(table["closed"], now_array), table["close_by"])
    return table.append_column("arrive_min", _minutes(table["accepted"], routed)) \
        .append_column("close_min", _minutes(table["closed"], routed)) \
        .append_column("is_closed", pc.cast(closed, pa.int64())) \
        .append_column("is_overdue", pc.cast(pc.or_(late_arrival, late_close), pa.int64()))  # fmt: skip


def _group(table: pa.Table, key: str, names: dict[Any, str]) -> list[Row]:
    if table.num_rows == 0 or "arrive_min" not in table.column_names:
        return []
    grouped = table.group_by(key).aggregate([
        (key, "count"), ("is_closed", "sum"), ("is_overdue", "sum"),
        ("arrive_min", "mean"), ("close_min", "mean"),
    ]).sort_by([(f"{key}_count", "descending")])  # fmt: skip
    out = []
    for item in grouped.to_pylist():
        value = item[key]
        out.append(Row(str(value), names.get(value, str(value)), item[f"{key}_count"],
                       item["is_closed_sum"], item["is_overdue_sum"],
                       _round(item["arrive_min_mean"]), _round(item["close_min_mean"])))  # fmt: skip
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _names(session: Session) -> dict[str, dict[Any, str]]:
    return {
        "service": dict(session.execute(select(GridService.code, GridService.name)).all()),
        "org": dict(session.execute(select(Organization.id, Organization.name)).all()),
        "area": dict(
            session.execute(select(Area.code, Area.name).where(Area.level != "community")).all()
        ),
    }


def map_points(session: Session, actor: Principal, *, days: int = 30) -> list[dict[str, Any]]:
    """The window's reports as map points: id, category, state, place."""
    authorize(session, actor, "grid.read")
    since = clock.now() - timedelta(days=days)
    found = session.execute(
        select(Report.id, Report.service_code, Report.state, Report.lat, Report.long,
               Report.address).where(Report.requested_at >= since).order_by(Report.id.desc())
        .limit(2000)
    ).all()  # fmt: skip
    return [{"id": r[0], "service": r[1], "state": r[2], "lat": r[3], "long": r[4],
             "address": r[5]} for r in found]  # fmt: skip
