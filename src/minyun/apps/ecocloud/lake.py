"""The eco-cloud in the lake: station-hours, city-hours and alert steps as governed resources.

The control plane stays the working copy (ingest, detection and the joint response write
there); the `eco.publish` job copies what changed since its last run into three catalog
resources of the provincial ecology department (`fj-eco`), so that other departments and a
later sharing issue read them like any other resource:

| resource | one row per | primary key | changed since |
|---|---|---|---|
| `eco-station-aqi-hourly` | station-hour | station_code, hour | `eco_readings.received_at` |
| `eco-city-aqi-hourly` | city-hour (HJ 663) | city, hour | `eco_city_hours.computed_at` |
| `eco-alert-steps` | step of an alert's response | step_id | `eco_alert_steps.at` |

Each run selects the rows whose change time is after the previous run's watermark (minus
`OVERLAP`, for rows of a transaction that committed after a later one was published), writes
them to one Parquet file in SQL → Arrow batches, and loads it with `ingest.submit_load` in
upsert mode: a station-hour is one row however often it is published, and a corrected
reading replaces its row. The same rows again make the same file, which the lake records as
a no-op. The watermarks are the result of the last successful run.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Boolean, ColumnElement, Select, and_, select, type_coerce
from sqlalchemy.orm import Session, sessionmaker

from minyun.apps.ecocloud.models import (
    Alert,
    AlertStep,
    CityHour,
    Reading,
    Source,
    Station,
    StepKind,
)
from minyun.catalog import service as catalog
from minyun.core import clock, jobs
from minyun.core.config import Settings, get_settings, load_settings
from minyun.core.errors import NotFound
from minyun.core.security import Principal, authorize
from minyun.core.tableschema import arrow_schema, parse_schema
from minyun.ingest import service as ingest
from minyun.ingest.models import LoadMode
from minyun.orgs.models import Organization

KIND = "eco.publish"
PROVIDER = "fj-eco"  # 福建省生态环境厅
ACTOR = Principal.system(on_behalf_of="eco-cloud")
#: Rows changed this long before the last watermark are published again: an ingest
#: transaction stamps its rows when it starts and may commit after a later one was published.
#: Publishing a row again is harmless (upsert; identical files are a no-op).
OVERLAP = timedelta(minutes=10)
BATCH_ROWS = 50_000
OPEN_BASIS = None  # unconditional sharing and opening need no legal basis
RESPONSE_BASIS = (
    "《政务信息资源共享管理暂行办法》（国发〔2016〕51号）：联防联控处置记录含经办人员和处置"
    "过程信息，向有关部门有条件共享，不向社会开放"
)

STATION_HOURS = "eco-station-aqi-hourly"
CITY_HOURS = "eco-city-aqi-hourly"
ALERT_STEPS = "eco-alert-steps"


def _f(name: str, type_: str, title: str, **kw: Any) -> dict[str, Any]:
    """A Table Schema field; constraints and minyun keys as keywords."""
    out: dict[str, Any] = {"name": name, "type": type_, "title": title}
    for key in ("description", "format"):
        if key in kw:
            out[key] = kw.pop(key)
    out["sensitivity"] = kw.pop("sensitivity", "public")
    if kw:
        out["constraints"] = kw
    return out


def _concentration(name: str, title: str, unit: str = "µg/m³") -> dict[str, Any]:
    return _f(name, "number", f"{title} 1小时平均浓度（{unit}）", minimum=0)


_PARTIAL = _f(
    "partial",
    "boolean",
    "缺测计算",
    description="the AQI was computed without some pollutants (listed in missing)",
)
_MISSING = _f(
    "missing",
    "string",
    "缺测污染物",
    description="pollutants without a value that hour, comma-separated: SO2, NO2, PM10, CO, O3,"
    " PM2.5",
)
_LEVEL = _f("level", "integer", "空气质量指数级别（HJ 633 表2，1–6）", minimum=1, maximum=6)

STATION_HOURS_SCHEMA: dict[str, Any] = {
    "fields": [
        _f("station_code", "string", "站点编码", required=True, pattern="[0-9A-Za-z]{1,16}"),
        _f("station_name", "string", "站点名称"),
        _f("city", "string", "城市"),
        _f(
            "hour",
            "datetime",
            "监测时间",
            description="the end of the hour the concentrations are averaged over (UTC)",
            required=True,
        ),
        _concentration("pm10", "PM10"),
        _concentration("pm2_5", "PM2.5"),
        _concentration("o3", "O3"),
        _concentration("no2", "NO2"),
        _concentration("so2", "SO2"),
        _concentration("co", "CO", "mg/m³"),
        _f(
            "aqi",
            "integer",
            "空气质量指数（实时，HJ 633）",
            description="from the pollutants measured that hour; see partial and missing",
            minimum=0,
        ),
        _f("primary_pollutant", "string", "首要污染物"),
        _LEVEL,
        _PARTIAL,
        _MISSING,
        _f(
            "flags",
            "string",
            "数据标记",
            description="co-µg/m³-converted; missing:<pollutants>",
        ),
        _f("source", "string", "来源", enum=[s.value for s in Source]),
        _f(
            "received_at",
            "datetime",
            "接收时间",
            description="when the eco-cloud received (or last corrected) this station-hour",
            required=True,
        ),
    ],
    "primaryKey": ["station_code", "hour"],
}

CITY_HOURS_SCHEMA: dict[str, Any] = {
    "fields": [
        _f("city", "string", "城市", required=True),
        _f("hour", "datetime", "监测时间", description="end of the hour (UTC)", required=True),
        _f("aqi", "integer", "城市空气质量指数（实时，HJ 663）", minimum=0),
        _f("primary_pollutant", "string", "首要污染物"),
        _LEVEL,
        _PARTIAL,
        _MISSING,
        _concentration("pm2_5", "PM2.5"),
        _f(
            "stations",
            "integer",
            "参与评价站点数",
            description="stations of the city that hour, the control point excluded",
            minimum=0,
        ),
        _f("computed_at", "datetime", "计算时间", required=True),
    ],
    "primaryKey": ["city", "hour"],
}

ALERT_STEPS_SCHEMA: dict[str, Any] = {
    "fields": [
        _f("step_id", "integer", "处置步骤编号", required=True),
        _f("alert_id", "integer", "预警编号", required=True),
        _f("kind", "string", "步骤类型", required=True, enum=[k.value for k in StepKind]),
        _f(
            "cities",
            "string",
            "涉及城市",
            description="the alert's cities when published, separated by commas",
        ),
        _f("actor", "string", "经办人", sensitivity="internal"),
        _f("organization_code", "string", "部门代码", sensitivity="internal"),
        _f("note", "string", "说明", sensitivity="internal"),
        _f("at", "datetime", "步骤时间", required=True),
        _f("detected_at", "datetime", "预警发现时间", required=True),
    ],
    "primaryKey": ["step_id"],
}


@dataclass(frozen=True)
class Spec:
    """A lake resource of the eco-cloud: its catalog entry and the query that fills it."""

    code: str
    name: str
    summary: str
    schema: dict[str, Any]
    update_cycle: str
    sharing_type: str
    open_type: str
    legal_basis: str | None
    changed: Any  # the control-plane column saying when a row last changed

    def query(self) -> Select[*tuple[Any, ...]]:
        return _QUERIES[self.code]()


def _partial(aqi: Any, missing: Any) -> ColumnElement[bool]:
    """True where an AQI was computed without some pollutants (a boolean on every database)."""
    return type_coerce(and_(aqi.is_not(None), missing.is_not(None)), Boolean).label("partial")


def _station_hours() -> Select[*tuple[Any, ...]]:
    return (
        select(
            Reading.station_code,
            Station.name.label("station_name"),
            Station.city,
            Reading.hour,
            Reading.pm10,
            Reading.pm2_5,
            Reading.o3,
            Reading.no2,
            Reading.so2,
            Reading.co,
            Reading.aqi,
            Reading.primary_pollutant,
            Reading.level,
            _partial(Reading.aqi, Reading.missing),
            Reading.missing,
            Reading.flags,
            Reading.source,
            Reading.received_at,
        )
        .join(Station, Station.code == Reading.station_code)
        .order_by(Reading.station_code, Reading.hour)
    )


def _city_hours() -> Select[*tuple[Any, ...]]:
    return select(
        CityHour.city,
        CityHour.hour,
        CityHour.aqi,
        CityHour.primary_pollutant,
        CityHour.level,
        _partial(CityHour.aqi, CityHour.missing),
        CityHour.missing,
        CityHour.pm2_5,
        CityHour.stations,
        CityHour.computed_at,
    ).order_by(CityHour.city, CityHour.hour)


def _alert_steps() -> Select[*tuple[Any, ...]]:
    return (
        select(
            AlertStep.id.label("step_id"),
            AlertStep.alert_id,
            AlertStep.kind,
            Alert.cities,
            AlertStep.actor,
            AlertStep.organization_code,
            AlertStep.note,
            AlertStep.at,
            Alert.detected_at,
        )
        .join(Alert, Alert.id == AlertStep.alert_id)
        .order_by(AlertStep.id)
    )


_QUERIES = {STATION_HOURS: _station_hours, CITY_HOURS: _city_hours, ALERT_STEPS: _alert_steps}

SPECS: tuple[Spec, ...] = (
    Spec(
        STATION_HOURS,
        "空气质量站点小时数据（生态云）",
        "全省空气质量监测站点逐小时的六项污染物浓度和实时空气质量指数（HJ 633-2012），"
        "由生态云接收、校验并计算；迟到或更正的数据更新原有站点小时。",
        STATION_HOURS_SCHEMA,
        "hourly",
        "unconditional",
        "unconditional",
        OPEN_BASIS,
        Reading.received_at,
    ),
    Spec(
        CITY_HOURS,
        "城市空气质量小时数据（生态云）",
        "各设区市逐小时实时空气质量指数（HJ 663-2013：对照点除外的站点浓度均值）。",
        CITY_HOURS_SCHEMA,
        "hourly",
        "unconditional",
        "unconditional",
        OPEN_BASIS,
        CityHour.computed_at,
    ),
    Spec(
        ALERT_STEPS,
        "区域污染预警与联防联控处置记录",
        "生态云发现的区域污染过程预警及其发现、分派、会商、响应级别、处置措施和解除的"
        "每一步骤及时间。",
        ALERT_STEPS_SCHEMA,
        "realtime",
        "conditional",
        "none",
        RESPONSE_BASIS,
        AlertStep.at,
    ),
)
SPEC_BY_CODE = {s.code: s for s in SPECS}


# --- the catalog entries -----------------------------------------------------------------


def provider_missing(session: Session) -> str | None:
    """Why the resources cannot be published (their department is not on file), or None."""
    if session.scalars(select(Organization.id).where(Organization.code == PROVIDER)).first():
        return None
    return (
        f"no department {PROVIDER} (provincial ecology department) to own the eco-cloud's "
        "lake resources; load the demo province or create it first"
    )


def ensure_resources(session: Session) -> list[str]:
    """Register and publish the eco-cloud's lake resources if they are not yet; idempotent.

    A changed schema here becomes a new (compatible) schema version of the resource.
    Returns the codes created now.
    """
    missing = provider_missing(session)
    if missing:
        raise NotFound(missing)
    created = []
    for spec in SPECS:
        if catalog.find_resource(session, spec.code) is None:
            catalog.create_resource(
                session, ACTOR, code=spec.code, name=spec.name, provider=PROVIDER,
                summary=spec.summary, theme="environment", update_cycle=spec.update_cycle,
                sharing_type=spec.sharing_type, open_type=spec.open_type,
                legal_basis=spec.legal_basis, schema=spec.schema,
            )  # fmt: skip
            created.append(spec.code)
        else:
            catalog.set_schema(session, ACTOR, spec.code, spec.schema)
        catalog.publish_resource(session, ACTOR, spec.code)
    return created


# --- exporting ---------------------------------------------------------------------------


def _arrow_schema(spec: Spec) -> pa.Schema:
    return arrow_schema(parse_schema(spec.schema))


def _batch(spec: Spec, target: pa.Schema, rows: list[Any]) -> pa.RecordBatch:
    """Rows of the query as one Arrow batch: transposed once, then one array per column."""
    columns = list(zip(*rows, strict=True))
    arrays = []
    for i, field in enumerate(target):
        values = columns[i]
        if spec.code == ALERT_STEPS and field.name == "cities":
            lists = pa.array(values, pa.list_(pa.string()))
            arrays.append(pc.binary_join(lists, ","))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=target)


@dataclass
class Export:
    path: Path | None
    rows: int
    watermark: datetime | None  # the newest change time among the rows


def export_changes(session: Session, spec: Spec, since: datetime | None, folder: Path) -> Export:
    """Write the rows changed after `since` (all rows if None) to a Parquet file, in batches."""
    query = spec.query()
    changed: ColumnElement[Any] = spec.changed
    if since is not None:
        query = query.where(changed > since)
    target = _arrow_schema(spec)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{spec.code}.{clock.now().strftime('%Y%m%dT%H%M%S%f')}.parquet.tmp"
    change_name = changed.key if hasattr(changed, "key") else None
    rows = 0
    top: datetime | None = None
    writer: pq.ParquetWriter | None = None
    digest = hashlib.sha256()
    try:
        result = session.execute(query.execution_options(yield_per=BATCH_ROWS))
        for part in result.partitions():
            batch = _batch(spec, target, list(part))
            if writer is None:
                writer = pq.ParquetWriter(tmp, target)
            writer.write_batch(batch)
            rows += batch.num_rows
            newest = pc.max(batch[change_name]).as_py() if change_name else None
            if newest is not None and (top is None or newest > top):
                top = newest
    finally:
        if writer is not None:
            writer.close()
    if rows == 0:
        tmp.unlink(missing_ok=True)
        return Export(None, 0, None)
    # Named by content, so the lake sees the same rows again as the same input.
    with tmp.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    path = folder / f"{spec.code}-{digest.hexdigest()[:16]}.parquet"
    tmp.replace(path)
    return Export(path, rows, top)


# --- the job -----------------------------------------------------------------------------


def last_watermarks(session: Session) -> dict[str, datetime]:
    """Per resource, the newest change time the last successful publish put in the lake."""
    result = session.scalars(
        select(jobs.Job.result)
        .where(jobs.Job.kind == KIND, jobs.Job.state == jobs.JobState.SUCCEEDED)
        .order_by(jobs.Job.finished_at.desc())
        .limit(1)
    ).first()
    marks: dict[str, datetime] = {}
    for code, outcome in ((result or {}).get("resources") or {}).items():
        mark = (outcome or {}).get("watermark")
        if mark:
            marks[code] = datetime.fromisoformat(mark)
    return marks


def submit_publish(
    session: Session,
    actor: Principal,
    *,
    key: str | None = None,
    settings: Settings | None = None,
) -> jobs.Job:
    """Queue an `eco.publish` job (one per `key`: the MQTT listener keys it by minute)."""
    authorize(session, actor, "eco.ingest", target_type="eco-lake")
    cfg = settings or get_settings()
    params = {"var_dir": str(cfg.var_dir), "lake_uri": cfg.lake_uri, "actor": actor.label}
    return jobs.submit(session, actor, KIND, params, key=key)


def minute_key(now: datetime | None = None) -> str:
    """The idempotency key of the publish of this minute."""
    return f"{KIND}@{(now or clock.now()).strftime('%Y-%m-%dT%H:%M')}"


@jobs.handler(KIND)
def run_publish(ctx: jobs.JobContext) -> dict[str, Any]:
    """Upsert what changed since the last run into the eco-cloud's lake resources."""
    p = ctx.params
    settings = load_settings(var_dir=Path(p["var_dir"]), lake_uri=p["lake_uri"])
    # A folder of this job's own: two publish jobs export the same rows under the same
    # (content) name, and one must not delete the file the other is loading.
    folder = Path(p["var_dir"]) / "eco" / "lake" / ctx.job_id
    try:
        return _publish(ctx, settings, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _publish(ctx: jobs.JobContext, settings: Settings, folder: Path) -> dict[str, Any]:
    with ctx.factory.begin() as session:
        ensure_resources(session)
        marks = last_watermarks(session)
    state = dict(ctx.resume or {})
    done: dict[str, Any] = dict(state.get("resources", {}))
    for n, spec in enumerate(SPECS):
        if spec.code in done:
            continue
        ctx.progress(n, len(SPECS), spec.code)
        mark = marks.get(spec.code)
        with ctx.factory() as session:
            export = export_changes(session, spec, mark - OVERLAP if mark else None, folder)
        outcome: dict[str, Any] = {"rows": export.rows}
        newest = max((m for m in (mark, export.watermark) if m is not None), default=None)
        outcome["watermark"] = newest.isoformat() if newest is not None else None
        if export.path is not None:
            # Queued for no runner: this job runs the load itself, in the foreground.
            foreground = jobs.Dispatcher.foreground()
            try:
                with ctx.factory(info={"jobs": foreground}) as session, session.begin():
                    job_id = ingest.submit_load(
                        session, ACTOR, spec.code, str(export.path),
                        mode=LoadMode.UPSERT, settings=settings,
                    ).id  # fmt: skip
                finished = jobs.run(ctx.factory, job_id)
            finally:
                export.path.unlink(missing_ok=True)
            if finished.state != jobs.JobState.SUCCEEDED:
                raise RuntimeError(f"load into {spec.code} failed: {finished.error}")
            result = finished.result or {}
            outcome.update(
                load=result.get("state"),
                load_job=job_id,
                lake_version=result.get("lake_version"),
                rows_rejected=result.get("rows_rejected", 0),
            )
        done[spec.code] = outcome
        state["resources"] = done
        ctx.save_point(state)
    ctx.progress(len(SPECS), len(SPECS), "published")
    return {"resources": done}


def publish_now(
    factory: sessionmaker[Session], actor: Principal, *, settings: Settings | None = None
) -> jobs.Job:
    """Submit an `eco.publish` job and run it here, in the foreground (the CLI)."""
    foreground = jobs.Dispatcher.foreground()  # queued for no runner: run below
    with factory(info={"jobs": foreground}) as session, session.begin():
        job_id = submit_publish(session, actor, settings=settings).id
    return jobs.run(factory, job_id)


def describe(job: jobs.Job) -> str:
    """One line per resource of a finished publish job, or why it failed."""
    if job.state != jobs.JobState.SUCCEEDED:
        return (
            f"lake: publish failed: {(job.error or '').splitlines()[0] if job.error else job.state}"
        )
    lines = []
    for code, outcome in ((job.result or {}).get("resources") or {}).items():
        if not outcome.get("rows"):
            lines.append(f"lake: {code}: nothing new")
        elif outcome.get("load") == "noop":
            lines.append(f"lake: {code}: {outcome['rows']} rows, unchanged (no-op)")
        else:
            lines.append(
                f"lake: {code}: {outcome['rows']} rows upserted, "
                f"lake version {outcome.get('lake_version')}"
            )
    return "\n".join(lines)
