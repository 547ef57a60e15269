"""Loads into the lake: submit a load job, run it, list versions, read rejects and old versions.

A load is atomic across the two stores. The Delta commit carries the load's id in its
commit metadata and an idempotent transaction id; the control-plane commit (Version row,
resource pointer) comes after it and is what readers follow (`resource.lake_version`). A
load killed before its Delta commit leaves nothing readers can see; one killed between the
two commits is finished by the next attempt, which finds its Delta commit by that id.
Everything that touches Delta is a method of `core.lake.Lake` (decision 0003); this
module keeps the control plane around it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus
from minyun.core import audit, clock, events, jobs, policies, serving
from minyun.core.config import Settings, get_settings
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound
from minyun.core.lake import REJECTS_SCHEMA, Lake, LoadCommit, LoadRecord, load_folder
from minyun.core.policies import AccessPlan
from minyun.core.reading import reader_secret
from minyun.core.security import Principal, authorize
from minyun.core.tableschema import (
    SQL_TYPES,
    Field,
    TableSchema,
    arrow_schema,
    check_loadable,
    parse_schema,
)
from minyun.ingest import infer, sources
from minyun.ingest.models import LoadMode, LoadState, Version
from minyun.ingest.validate import (
    Checks,
    Settled,
    lit,
    q,
    quality_query,
    quality_report,
    unique_sets,
)

log = logging.getLogger(__name__)

KIND = "ingest.load"
# Naive date-times in departments' files are Beijing time; the lake stores UTC.
SOURCE_TIMEZONE = "Asia/Shanghai"
BATCH_ROWS = 256_000
# An upload no load is waiting for is kept at least this long (hours), whatever the
# retention: it may be one whose load is being submitted just now.
UNCLAIMED_HOURS = 1.0
# DuckDB's share of a load's memory; beyond it DuckDB spills to the load's work folder.
LOAD_MEMORY = "1GB"


class LoadRefused(Invalid):
    """Too many rows broke the rules: nothing was committed."""

    code = "load-refused"
    title = "Load refused"


# --- looking up ------------------------------------------------------------------------


def get_resource(session: Session, code: str) -> Resource:
    """The resource with this code, or NotFound."""
    resource = session.scalars(select(Resource).where(Resource.code == code)).first()
    if resource is None:
        raise NotFound(f"no resource {code}")
    return resource


def resource_schema(
    session: Session, resource: Resource, version: str | None = None
) -> tuple[TableSchema, str]:
    """The resource's schema (current, or the given version), parsed; Invalid if it has none."""
    wanted = version or resource.current_schema_version
    row = session.scalars(
        select(ResourceSchema).where(
            ResourceSchema.resource_id == resource.id, ResourceSchema.version == wanted
        )
    ).first()
    if row is None:
        raise Invalid(f"resource {resource.code} has no schema to load against", field="schema")
    return parse_schema(row.descriptor), row.version


def _access_managed(session: Session, actor: Principal, code: str, action: str) -> Resource:
    """The resource if `actor` may do `action` on it as its provider's staff or an admin."""
    resource = session.scalars(select(Resource).where(Resource.code == code)).first()
    authorize(
        session, actor, action, target=code, target_type="resource",
        provider_id=resource.provider_id if resource is not None else None,
    )  # fmt: skip
    if resource is None:
        raise NotFound(f"no resource {code}")
    if not policies.manages(actor, resource.provider_id):
        reason = f"only the provider of {code} or an admin may do this"
        error = Forbidden(reason)
        error.audit = audit.Pending(
            actor, action, target=code, target_type="resource",
            outcome=audit.Outcome.DENIED, detail=reason,
        )  # fmt: skip
        raise error
    return resource


# --- submitting ----------------------------------------------------------------------------


def submit_load(
    session: Session,
    actor: Principal,
    code: str,
    source: str,
    *,
    mode: LoadMode = LoadMode.FULL,
    table: str | None = None,
    encoding: str | None = None,
    watermark: str | None = None,
    filename: str | None = None,
    settings: Settings | None = None,
) -> jobs.Job:
    """Queue a load of `source` (a file path, an http(s) URL or a database DSN) into a resource.

    Only the provider's own staff or an admin may load. The job ("ingest.load") does the work.
    """
    mode = check_can_load(session, actor, code, mode=mode, encoding=encoding, watermark=watermark)
    kind = sources.source_type(source)
    if kind == "db" and not table:
        raise Invalid("a database source needs a table", field="table")
    cfg = settings or get_settings()
    # The parameters keep the source without credentials; the whole one is sealed for the load.
    public, sealed = sources.seal_source(source, session.info.get("node_key"))
    params = {
        "code": code,
        "source": public,
        "sealed_source": sealed,
        "mode": str(mode),
        "table": table,
        "encoding": encoding,
        "watermark": watermark,
        "filename": filename,
        "actor": actor.label,
        "lake_uri": cfg.lake_uri,
        "var_dir": str(cfg.var_dir),
        "upload_limit": cfg.upload_max_bytes,
        "upload_retention_hours": cfg.upload_retention_hours,
    }
    # The load works for the resource's department, whoever asked: its stewards follow it.
    provider = catalog.get_resource(session, code).provider_id
    job = jobs.submit(session, actor, KIND, params, organization_id=provider)
    label = filename or (source if kind == "file" else sources._safe_url(source))
    audit.record(
        session, actor, "resource.load", target=code, target_type="resource",
        detail=f"{mode} from {label} (job {job.id})",
    )  # fmt: skip
    return job


def check_can_load(
    session: Session,
    actor: Principal,
    code: str,
    *,
    mode: LoadMode = LoadMode.FULL,
    encoding: str | None = None,
    watermark: str | None = None,
) -> LoadMode:
    """Forbidden unless `actor` may load into the resource; Invalid if the options do not fit
    its schema (checked before an upload is accepted, so a refused one leaves nothing)."""
    resource = _access_managed(session, actor, code, "resource.load")
    if resource.status == ResourceStatus.RETIRED:
        raise Conflict(f"resource {code} is retired: it takes no new loads", code="retired")
    mode = LoadMode(mode)
    schema, _ = resource_schema(session, resource)
    check_loadable(schema)
    if mode in (LoadMode.UPSERT, LoadMode.DELETE) and not schema.primary_key:
        raise Invalid(f"{mode} needs a primary key in the schema of {code}", field="mode")
    if watermark is not None:
        schema.field(watermark)
    if encoding:
        sources.text_encoding(encoding)
    return mode


def save_upload(stream: Any, settings: Settings | None = None) -> tuple[Path, str, int]:
    """Stream an uploaded file object to `<var_dir>/uploads/<sha256>` under the size limit."""
    cfg = settings or get_settings()
    return sources.save_file(stream, cfg.var_dir / "uploads", limit=cfg.upload_max_bytes)


def upload_load(
    session: Session,
    actor: Principal,
    code: str,
    stream: Any,
    *,
    filename: str | None,
    mode: LoadMode = LoadMode.FULL,
    encoding: str | None = None,
    watermark: str | None = None,
    settings: Settings | None = None,
) -> jobs.Job:
    """Check who loads and how, stream the uploaded file to disk, queue its load (API, pages).

    The options are checked before a byte is written: a refused upload leaves nothing.
    """
    check_can_load(session, actor, code, mode=mode, encoding=encoding, watermark=watermark)
    if not filename:
        raise Invalid("the upload needs a file name", field="file")
    path, _, size = save_upload(stream, settings)
    if size == 0:
        path.unlink(missing_ok=True)
        raise sources.SourceError("the file is empty", field="file", code="empty-file")
    return submit_load(
        session, actor, code, str(path), mode=mode, encoding=encoding, watermark=watermark,
        filename=filename, settings=settings,
    )  # fmt: skip


# A sample only needs its first rows: a larger file is refused before it is read.
SAMPLE_MAX_BYTES = 32 << 20


def infer_sample(
    session: Session,
    actor: Principal,
    stream: Any,
    *,
    filename: str | None,
    encoding: str | None = None,
    settings: Settings | None = None,
) -> infer.Sample:
    """A schema proposed from a sample file, for those who register resources; the file is
    read in a work folder of its own and deleted at once."""
    authorize(session, actor, "resource.create", target_type="resource")
    if not filename:
        raise Invalid("choose a sample file", field="sample")
    if encoding:
        sources.text_encoding(encoding)
    cfg = settings or get_settings()
    limit = min(cfg.upload_max_bytes, SAMPLE_MAX_BYTES)
    (cfg.var_dir / "work").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sample-", dir=cfg.var_dir / "work"))
    try:
        path, _, size = sources.save_file(stream, work, limit=limit)
        if size == 0:
            raise sources.SourceError("the sample file is empty", field="sample", code="empty")
        return infer.infer(path, filename=filename, encoding=encoding, work=work / "read")
    except sources.SourceError as exc:
        exc.extra.setdefault("field", "sample")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- reading ----------------------------------------------------------------------------------


def list_versions(session: Session, actor: Principal, code: str) -> list[Version]:
    """Every load of a resource, newest first: lineage is for civil servants.

    A draft's loads only for its provider or admins (as the catalog hides the draft itself).
    """
    resource = catalog.access_resource(session, actor, code)
    if not catalog.internal(actor):
        raise NotFound(f"no lineage for resource {code}")
    return list(
        session.scalars(
            select(Version).where(Version.resource_id == resource.id).order_by(Version.id.desc())
        )
    )


def read_rejects(
    session: Session,
    lake: Lake,
    actor: Principal,
    code: str,
    *,
    version: int | None = None,
    limit: int = 1000,
    reason: str | None = None,
) -> pa.Table:
    """The refused rows of a load (`version` = Version.id; default the newest load with any),
    those refused for `reason` only if given (see `Lake.reject_reasons`).

    Rejects are data: they are read through the reader's access plan and masked like rows.
    """
    plan = catalog.access_data(session, actor, code, policies.REJECTS)
    if version is None:
        version = session.scalars(
            select(Version.id)
            .where(Version.resource_id == plan.resource.id, Version.rows_rejected > 0)
            .order_by(Version.id.desc())
            .limit(1)
        ).first()
    else:
        _load_of(session, plan.resource.id, code, version)
    if version is None:
        return REJECTS_SCHEMA.empty_table()
    return _read_rejects(session, lake, plan, version, limit=limit, reason=reason)


def _load_of(session: Session, resource_id: int, code: str, version_id: int) -> Version:
    chosen = session.get(Version, version_id)
    if chosen is None or chosen.resource_id != resource_id:
        raise NotFound(f"resource {code} has no load {version_id}")
    return chosen


def _read_rejects(
    session: Session, lake: Lake, plan: AccessPlan, version: int, *, limit: int,
    reason: str | None,
) -> pa.Table:  # fmt: skip
    table = lake.read_rejects(
        plan, secret=reader_secret(session), load_id=version, limit=limit, reason=reason
    )
    detail = f"load {version}; policy={plan.policy}" + (f"; reason={reason}" if reason else "")
    audit.record_read(
        session, plan.actor, policies.REJECTS, target=plan.code, target_type="resource",
        count=table.num_rows, detail=detail[:500],
    )  # fmt: skip
    return table


@dataclass(frozen=True)
class RejectsView:
    """One load's refused rows as a reader's plan shows them, with the reasons to filter by."""

    version: Version
    reasons: list[tuple[str, int]]  # each reason with its number of rejects, most first
    table: pa.Table  # the rows shown (masked as the plan says)
    reason: str | None  # the reason chosen, if any

    @property
    def every(self) -> int:
        """Rejects of every reason."""
        return sum(n for _, n in self.reasons)

    @property
    def total(self) -> int:
        """Rejects of the chosen reason (of every reason when none is chosen)."""
        return dict(self.reasons).get(self.reason, 0) if self.reason else self.every


def rejects_view(
    session: Session,
    lake: Lake,
    actor: Principal,
    code: str,
    version: int,
    *,
    reason: str | None = None,
    limit: int = 500,
) -> RejectsView:
    """The rejects page of one load: its reasons with their counts and the first refused rows."""
    plan = catalog.access_data(session, actor, code, policies.REJECTS)
    load = _load_of(session, plan.resource.id, code, version)
    reasons = lake.reject_reasons(plan, load_id=version)
    table = _read_rejects(session, lake, plan, version, limit=limit, reason=reason or None)
    return RejectsView(load, reasons, table, reason or None)


@dataclass(frozen=True)
class LoadStatus:
    """A load job of a resource and, once its run has begun, the version it makes."""

    job: jobs.Job
    version: Version | None


def access_load(session: Session, actor: Principal, code: str, job_id: str) -> LoadStatus:
    """Where a load of `code` stands, for those who may load into it (NotFound for another
    resource's job)."""
    resource = _access_managed(session, actor, code, "resource.load")
    job = session.get(jobs.Job, job_id)
    if job is None or job.kind != KIND or (job.params or {}).get("code") != code:
        raise NotFound(f"no load {job_id} of resource {code}")
    version = session.scalars(
        select(Version)
        .where(Version.resource_id == resource.id, Version.job_id == job_id)
        .order_by(Version.id.desc())
        .limit(1)
    ).first()
    return LoadStatus(job, version)


def read_rows(
    session: Session,
    lake: Lake,
    actor: Principal,
    code: str,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
    limit: int | None = None,
) -> pa.Table:
    """The resource's rows as of a lake version or a time (default: the newest committed load)."""
    plan = catalog.access_data(session, actor, code, policies.READ)
    latest = plan.resource.lake_version
    if latest is None:
        raise NotFound(f"resource {code} has no data in the lake yet")
    if version is not None and version > latest:
        raise NotFound(f"resource {code} has no version {version}")
    table = lake.read_table(
        plan, secret=reader_secret(session), version=version, as_of=as_of, limit=limit
    )
    audit.record_read(
        session, actor, policies.READ, target=code, target_type="resource",
        count=table.num_rows, detail=f"version {version}" if version is not None else f"as of {as_of or latest}",
    )  # fmt: skip
    return table


# --- the job ----------------------------------------------------------------------------------


@dataclass
class _Load:
    ctx: jobs.JobContext
    version_id: int
    lake: Lake
    code: str
    work: Path


@jobs.handler(KIND)
def run_load(ctx: jobs.JobContext) -> dict[str, Any]:
    """Fetch, stage, validate and commit one load; safe to run again after a crash."""
    p = ctx.params
    lake = Lake(p["lake_uri"])
    state = dict(ctx.resume or {})
    works = Path(p["var_dir"]) / "work"
    with ctx.factory.begin() as session:
        resource = get_resource(session, p["code"])
        _settle_orphans(session, lake, resource, keep=state.get("version_id"), works=works)
        version_id = state.get("version_id")
        if version_id is None:
            version = Version(
                resource_id=resource.id,
                mode=p["mode"],
                source=p.get("filename") or _label(p["source"]),
                source_kind=sources.source_type(p["source"]),
                loaded_by=p["actor"],
                job_id=ctx.job_id,
                schema_version=resource.current_schema_version,
                state=LoadState.RUNNING,
                started_at=clock.now(),
            )
            session.add(version)
            session.flush()
            version_id = version.id
    if "version_id" not in state:
        state["version_id"] = version_id
        ctx.save_point(state)
    work = works / f"load-{version_id}"
    with ctx.factory() as session:
        done = _version(session, version_id)
    if done.state != LoadState.RUNNING:  # finished from its Delta commit just now
        sources.cleanup(work)
        _release_upload(ctx)
        return _result(done)
    if "version_id" in (ctx.resume or {}):
        # An earlier run of this load died: the files it wrote into the table are not
        # committed (else the load was finished above), and nobody will commit them.
        lake.discard_uncommitted(p["code"], version_id)
    load = _Load(ctx, version_id, lake, p["code"], work)
    started = time.perf_counter()
    try:
        result = _run(load, started)
    except jobs.LeaseLost:
        raise  # another runner has the load now, and its input
    except Exception as exc:
        committed = _fail(ctx, lake, version_id, exc, started)
        _release_upload(ctx)
        if committed is not None:  # a committed load succeeded, whatever failed after it
            log.warning("load %s committed; then: %s", version_id, jobs.describe_error(exc))
            return committed
        raise
    finally:
        sources.cleanup(work)
    _release_upload(ctx)
    return result


def _release_upload(ctx: jobs.JobContext) -> None:
    """The load is settled: delete its uploaded file, unless uploads are kept for
    `upload_retention_hours`; then delete every upload past that retention (at least
    `UNCLAIMED_HOURS`, so a file being submitted is never taken) that no queued or running
    load will read. Only files under `<var_dir>/uploads` are ever deleted."""
    p = ctx.params
    uploads = Path(p["var_dir"]) / "uploads"
    if not uploads.is_dir():
        return
    retention = float(p.get("upload_retention_hours") or 0)
    with ctx.factory() as session:
        needed = _uploads_needed(session, uploads, besides=ctx.job_id)
    mine = _upload_of(p["source"], uploads)
    if retention == 0 and mine is not None and mine not in needed:
        mine.unlink(missing_ok=True)
    sources.sweep_uploads(uploads, older_than_s=max(retention, UNCLAIMED_HOURS) * 3600, keep=needed)


def _upload_of(source: str, uploads: Path) -> Path | None:
    """The uploaded file a load reads, if its source is one."""
    if sources.source_type(source) != "file":
        return None
    path = Path(source).resolve()
    return path if path.parent == uploads.resolve() else None


def _uploads_needed(session: Session, uploads: Path, *, besides: str) -> set[Path]:
    """The uploads that queued or running loads (other than job `besides`) will read."""
    waiting = session.scalars(
        select(jobs.Job.params).where(
            jobs.Job.kind == KIND,
            jobs.Job.state.in_((jobs.JobState.QUEUED, jobs.JobState.RUNNING)),
            jobs.Job.id != besides,
        )
    )
    found = (_upload_of(str((params or {}).get("source", "")), uploads) for params in waiting)
    return {path for path in found if path is not None}


def _version(session: Session, version_id: int) -> Version:
    """The version a running load or job works on; it is never deleted while they run."""
    version = session.get(Version, version_id)
    if version is None:
        raise RuntimeError(f"version {version_id} vanished while its load or job ran")
    return version


def _result(version: Version) -> dict[str, Any]:
    return {
        "version_id": version.id,
        "state": str(version.state),
        "lake_version": version.lake_version,
        "rows_read": version.rows_read,
        "rows_accepted": version.rows_accepted,
        "rows_rejected": version.rows_rejected,
        "notes": [version.notes] if version.notes else [],
    }


def _label(source: str) -> str:
    kind = sources.source_type(source)
    return sources._safe_url(source) if kind != "file" else Path(source).name


def _fail(
    ctx: jobs.JobContext, lake: Lake, version_id: int, exc: Exception, started: float
) -> dict[str, Any] | None:
    """Record why the load failed, unless its version committed: then its result.

    A version whose Delta commit exists but whose control-plane record did not commit (the
    database was busy, the run stopped in between) is recorded now.
    """
    with ctx.factory.begin() as session:
        version = session.get(Version, version_id)
        if version is None:
            return None
        if version.state == LoadState.COMMITTED:
            return _result(version)
        resource = get_resource(session, ctx.params["code"])
        found = lake.find_commits(resource.code, [version_id]).get(version_id)
        if found is not None:
            _adopt(session, lake, resource, version, found)
            return _result(version)
        version.state = LoadState.REJECTED if isinstance(exc, LoadRefused) else LoadState.FAILED
        version.error = str(exc)[:4000]
        version.duration_s = round(time.perf_counter() - started, 3)
    return None


@dataclass
class _Plan:
    """What a load is to do, settled from the control plane before its source is read."""

    mode: LoadMode
    schema: TableSchema
    schema_version: str
    threshold: float
    watermark: str | None  # the field whose maximum is kept as the load's watermark
    last_mark: str | None  # the watermark of the last committed load (an incremental pull)


@dataclass
class _Pass:
    """The source in DuckDB, read through the schema's checks, and where its files go."""

    con: duckdb.DuckDBPyConnection
    checks: Checks
    keep: list[str]  # the source's columns that the schema has
    ignored: list[str]  # the source's columns that the schema does not have
    relation: str  # the source with its typed values, for the one pass
    numbered: str  # the same with row numbers, read again only for refused rows
    select: str  # the written columns, cast to their lake types
    where: str | None  # the watermark filter of a file source
    target: pa.Schema  # the lake schema of the written files
    direct: Path | None  # the table folder, when the files are written straight into it
    parts_dir: Path


@dataclass
class _State:
    """What the load has found so far, step by step."""

    fetched: sources.Fetched
    hashing: Future[str] | None = None  # the SHA-256 of a local file, computed beside the pass
    good: list[sources.Part] = dataclasses.field(default_factory=list)  # the files of accepted rows
    rows_read: int = 0
    rows_rejected: int = 0
    field_errors: dict[str, int] = dataclasses.field(default_factory=dict)
    mark: str | None = None  # the maximum of the watermark field over the accepted rows
    lake_version: int | None = None

    @property
    def rows_accepted(self) -> int:
        return self.rows_read - self.rows_rejected


def _run(load: _Load, started: float) -> dict[str, Any]:
    """Fetch; read, check and write in one pass; keep the rejects; commit the lake, then
    the control plane. Each step is a function below, in this order."""
    ctx = load.ctx
    shutil.rmtree(load.work, ignore_errors=True)
    load.work.mkdir(parents=True)
    plan = _plan(load)
    ctx.progress(0, 5, "fetching")
    state = _State(_fetch(load, ctx.params, plan.last_mark))
    if state.fetched.sha256:  # downloads and dumps were hashed while being written
        same = _same_input(ctx, load.version_id, state.fetched, plan.mode)
        if same is not None:
            return _noop(ctx, load.version_id, state.fetched, started, same)
    else:
        state.hashing = _hash_beside(state.fetched.path)
    scan = _open_pass(load, plan, state.fetched)
    try:
        ctx.progress(1, 5, "reading")
        _read(scan, state)
        same = _repeated_input(load, plan, scan, state)
        if same is not None:
            return _noop(ctx, load.version_id, state.fetched, started, same)
        _require_rows(plan, state)
        ctx.progress(2, 5, f"validating {state.rows_read:,} rows")
        _find_rejects(load, scan, state)
        _keep_rejects(load, scan, state)
        _refuse_over_threshold(load, plan, state, started)
        ctx.progress(3, 5, "writing")
        state.mark = _new_watermark(plan, scan, state)
        state.lake_version = _commit(load, plan, scan, state)
    except BaseException:
        _discard(load, scan, state)
        raise
    scan.con.close()
    # Committed in the lake: from here on neither a cancellation nor a busy database fails
    # the load (if recording fails, `_fail` records the version from its Delta commit).
    ctx.progress(4, 5, "recording", stop=False)
    notes = _notes(scan)
    _record_committed(load, plan, state, started, notes)
    ctx.progress(5, 5, f"version {state.lake_version}", stop=False)
    return {
        "version_id": load.version_id,
        "state": str(LoadState.COMMITTED),
        "lake_version": state.lake_version,
        "rows_read": state.rows_read,
        "rows_accepted": state.rows_accepted,
        "rows_rejected": state.rows_rejected,
        "notes": notes,
    }


def _notes(scan: _Pass) -> list[str]:
    """What the load tells beside its counts: the source's columns it did not load."""
    if not scan.ignored:
        return []
    return [f"extra columns ignored: {', '.join(scan.ignored)}"]


def _plan(load: _Load) -> _Plan:
    """The mode, the resource's current schema, its reject threshold and last watermark."""
    p = load.ctx.params
    with load.ctx.factory() as session:
        resource = get_resource(session, load.code)
        schema, schema_version = resource_schema(session, resource)
        check_loadable(schema)
        last_mark = _last_watermark(session, resource.id) if p.get("watermark") else None
        return _Plan(
            mode=LoadMode(p["mode"]),
            schema=schema,
            schema_version=schema_version,
            threshold=resource.reject_threshold,
            watermark=p.get("watermark") or None,
            last_mark=last_mark,
        )


def _hash_beside(path: Path) -> Future[str]:
    """A local file's SHA-256, computed in a thread beside the DuckDB pass.

    hashlib releases the GIL; the same-input check then comes after the read, before
    anything is committed.
    """
    pool = ThreadPoolExecutor(1, thread_name_prefix="minyun-sha256")
    hashing = pool.submit(sources.sha256_file, path)
    pool.shutdown(wait=False)
    return hashing


def _open_pass(load: _Load, plan: _Plan, fetched: sources.Fetched) -> _Pass:
    """The source opened in DuckDB and checked against the schema's fields; no row read yet."""
    schema, mode = plan.schema, plan.mode
    con = _duck(load.work)
    checks = Checks(schema, key_only=mode == LoadMode.DELETE)
    raw = sources.relation_sql(
        con, fetched, load.work, encoding=load.ctx.params.get("encoding"), fields=schema.names
    )
    columns = sources.columns_of(con, raw)
    missing = [f.name for f in checks.fields if f.name not in columns]
    if missing:
        raise sources.SourceError(
            f"the header does not match the schema: missing {', '.join(missing)} "
            f"(the file has {', '.join(columns[:20])}); check the delimiter, encoding and header row"
        )
    keep = [c for c in columns if c in schema.names]
    ignored = [c for c in columns if c not in schema.names]
    where = None
    if (
        plan.watermark
        and plan.last_mark is not None
        and fetched.source_kind
        not in (
            "postgres",
            "mariadb",
        )
    ):
        f = schema.field(plan.watermark)
        where = f"TRY_CAST({q(f.name)} AS {SQL_TYPES[f.type]}) > CAST({lit(plan.last_mark)} AS {SQL_TYPES[f.type]})"
    target, written = _written_columns(plan, checks, keep)
    direct = load.lake.direct_folder(load.code, mode, target)
    return _Pass(
        con=con,
        checks=checks,
        keep=keep,
        ignored=ignored,
        relation=checks.wrap(raw, columns),
        numbered=checks.wrap(sources.numbered(raw, keep, where=where), keep),
        select=", ".join(f"{checks.typed(schema.field(n))} AS {q(n)}" for n in written),
        where=where,
        target=target,
        direct=direct,
        parts_dir=load_folder(direct or load.work, load.version_id, uuid.uuid4().hex[:12]),
    )


def _written_columns(plan: _Plan, checks: Checks, keep: list[str]) -> tuple[pa.Schema, list[str]]:
    """The lake schema of the load's files and the columns written: a delete writes its keys
    (and the watermark field, when the source has it)."""
    target = arrow_schema(plan.schema)
    if plan.mode != LoadMode.DELETE:
        return target, plan.schema.names
    written = [f.name for f in checks.fields]
    if plan.watermark and plan.watermark not in written and plan.watermark in keep:
        written.append(plan.watermark)
    return pa.schema([target.field(n) for n in plan.schema.primary_key]), written


def _read(scan: _Pass, state: _State) -> None:
    """The one pass: every row cast and checked; the rows that pass written as Parquet files."""
    written = sources.write_parts(
        scan.con, scan.relation, scan.select, scan.checks.ok(), scan.parts_dir, where=scan.where
    )
    state.good, state.rows_read = written.parts, written.rows_read


def _repeated_input(load: _Load, plan: _Plan, scan: _Pass, state: _State) -> int | None:
    """With a local file's hash now known: the earlier load it repeats (its files deleted)."""
    if state.hashing is None:
        return None
    state.fetched = replace(state.fetched, sha256=state.hashing.result())
    state.hashing = None
    same = _same_input(load.ctx, load.version_id, state.fetched, plan.mode)
    if same is not None:
        shutil.rmtree(scan.parts_dir, ignore_errors=True)  # never committed
        scan.con.close()
    return same


def _require_rows(plan: _Plan, state: _State) -> None:
    if state.rows_read == 0 and plan.mode == LoadMode.FULL:
        raise sources.SourceError(
            "the input has no data rows; a full load would empty the resource"
        )


def _find_rejects(load: _Load, scan: _Pass, state: _State) -> None:
    """The refused rows (broken rules, repeated keys) into `__rejects`, and the counts.

    Only now is the source read again with row numbers, and only when some row failed or
    a key repeats; with repeated keys the accepted files are written again without them.
    """
    con = scan.con
    failing = state.rows_read - sum(part.rows for part in state.good)
    con.sql(
        "CREATE TEMP TABLE __rejects (load_id BIGINT, row_number BIGINT, field VARCHAR, "
        "reason VARCHAR, record VARCHAR)"
    )
    try:
        dups = _repeated_keys(scan, state, failing=failing)
        if failing or dups:
            con.sql(
                "INSERT INTO __rejects "
                + scan.checks.rejects_query(
                    scan.numbered, load.version_id, scan.keep, dups=bool(dups)
                )
            )
    except duckdb.Error as exc:
        raise sources.SourceError(f"cannot read the source: {sources._duck_message(exc)}") from exc
    counts = con.execute("SELECT count(DISTINCT row_number) FROM __rejects").fetchall()
    state.rows_rejected = int(counts[0][0])
    state.field_errors = dict(
        con.execute(
            "SELECT field, count(DISTINCT row_number) FROM __rejects GROUP BY field"
        ).fetchall()
    )
    if dups:
        _write_again(scan, state)
    written = sum(part.rows for part in state.good)
    if written != state.rows_accepted:
        raise RuntimeError(f"the load wrote {written} rows but accepted {state.rows_accepted}")


def _repeated_keys(scan: _Pass, state: _State, *, failing: int) -> int:
    """How many rows repeat a primary or unique key (the tables of them built when any do)."""
    if failing:
        # A refused row's key still makes a later copy of it a duplicate: look for
        # repeated keys over the whole source, not only over the written rows.
        return _find_duplicates(scan.con, scan.checks, scan.numbered)
    if not state.good:
        return 0
    dup_sql = scan.checks.dup_count_query(
        _files_sql(state.good), _integer_bounds(state.good, scan.target)
    )
    dups = int(scan.con.execute(dup_sql).fetchall()[0][0]) if dup_sql else 0
    if dups:
        _find_duplicates(scan.con, scan.checks, scan.numbered)
    return dups


def _write_again(scan: _Pass, state: _State) -> None:
    """Later occurrences of a key passed the row rules and were written: write the accepted
    files again without every rejected row."""
    again = sources.write_parts(
        scan.con, scan.numbered, scan.select, "true", scan.parts_dir / "again",
        where=f"src.{sources.ROW} NOT IN (SELECT row_number FROM __rejects)", count=False,
    )  # fmt: skip
    for part in state.good:
        part.path.unlink(missing_ok=True)
    state.good = [_flatten(part, scan.parts_dir) for part in again.parts]
    shutil.rmtree(scan.parts_dir / "again", ignore_errors=True)


def _keep_rejects(load: _Load, scan: _Pass, state: _State) -> None:
    """The refused rows into the lake's rejects table (a retry replaces its own)."""
    any_rows = scan.con.execute("SELECT count(*) FROM __rejects").fetchall()[0][0]
    rows = scan.con.sql("SELECT * FROM __rejects").to_arrow_reader(BATCH_ROWS) if any_rows else None
    load.lake.write_rejects(load.code, load.version_id, rows)


def _refuse_over_threshold(load: _Load, plan: _Plan, state: _State, started: float) -> None:
    """LoadRefused (nothing committed) when more rows broke the rules than the resource allows."""
    share = state.rows_rejected / state.rows_read if state.rows_read else 0.0
    if share <= plan.threshold:
        return
    _record(load.ctx, load.version_id, state=LoadState.RUNNING, fetched=state.fetched,
            started=started, rows=(state.rows_read, 0, state.rows_rejected))  # fmt: skip
    raise LoadRefused(
        f"{state.rows_rejected:,} of {state.rows_read:,} rows broke the schema ({share:.1%}), more "
        f"than the {plan.threshold:.1%} allowed for {load.code}; nothing was committed",
        rejected=state.rows_rejected,
    )


def _new_watermark(plan: _Plan, scan: _Pass, state: _State) -> str | None:
    """The maximum of the watermark field over the accepted rows, as text."""
    if not plan.watermark or not state.rows_accepted:
        return None
    f = plan.schema.field(plan.watermark)
    top = f"max({q(f.name)})"
    # Date-times are kept as local wall time, which is what department databases hold.
    expr = (
        f"strftime(CAST({top} AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f')"
        if f.type == "datetime"
        else f"CAST({top} AS VARCHAR)"
    )
    found = scan.con.execute(
        f"SELECT {expr} FROM read_parquet({_files_sql(state.good)})"
    ).fetchall()
    return found[0][0] if found else None


def _commit(load: _Load, plan: _Plan, scan: _Pass, state: _State) -> int:
    """The accepted rows as one Delta commit carrying the load's record; its version."""
    record = LoadRecord(
        load_id=load.version_id,
        rows_read=state.rows_read,
        rows_accepted=state.rows_accepted,
        rows_rejected=state.rows_rejected,
        source_sha256=state.fetched.sha256,
        watermark=state.mark or plan.last_mark,
    )
    if scan.direct is not None:
        return load.lake.commit_files(
            load.code, record, mode=plan.mode, schema=scan.target, folder=scan.direct,
            files=state.good,
        )  # fmt: skip
    cols = ", ".join(q(n) for n in scan.target.names)
    data = (
        scan.con.sql(f"SELECT {cols} FROM read_parquet({_files_sql(state.good)})")
        .to_arrow_reader(BATCH_ROWS)
        .cast(scan.target)
        if state.good
        else pa.RecordBatchReader.from_batches(scan.target, [])
    )
    return load.lake.commit_rows(
        load.code, record, mode=plan.mode, data=data, primary_key=plan.schema.primary_key,
        bounds=_integer_bounds(state.good, scan.target),
    )  # fmt: skip


def _discard(load: _Load, scan: _Pass, state: _State) -> None:
    """After a failure: stop the hashing, delete files written into the table and not committed."""
    if state.hashing is not None:
        state.hashing.cancel()
    if scan.direct is not None and not load.lake.has_commit(load.code, load.version_id):
        shutil.rmtree(scan.parts_dir, ignore_errors=True)  # never committed: nobody reads them


def _record_committed(
    load: _Load, plan: _Plan, state: _State, started: float, notes: list[str]
) -> None:
    """The control-plane commit: the Version, the resource's pointer, the audit record, and
    the jobs that follow the version (serving index, quality report)."""
    lake_version = state.lake_version
    if lake_version is None:
        raise RuntimeError(
            f"load {load.version_id} is recorded as committed without a lake version"
        )
    row_count = load.lake.row_count(load.code, lake_version)
    with load.ctx.factory.begin() as session:
        version = _version(session, load.version_id)
        _apply(version, state.fetched, started)
        version.state = LoadState.COMMITTED
        version.lake_version = lake_version
        version.rows_read, version.rows_accepted, version.rows_rejected = (
            state.rows_read,
            state.rows_accepted,
            state.rows_rejected,
        )
        version.watermark = state.mark or plan.last_mark
        version.schema_version = plan.schema_version
        version.committed_at = clock.now()
        version.notes = "; ".join(notes) or None
        resource = get_resource(session, load.code)
        resource.lake_version = lake_version
        resource.row_count = row_count
        audit.record(
            session, Principal.system(on_behalf_of=load.ctx.params["actor"]), "resource.version",
            target=load.code, target_type="resource", count=state.rows_accepted,
            detail=f"lake version {lake_version}: {plan.mode}, {state.rows_accepted} accepted, "
            f"{state.rows_rejected} rejected",
        )  # fmt: skip
        # The serving index and the quality report follow in jobs of their own, which exist
        # if and only if this version committed.
        serving.submit_refresh(session, resource, plan.schema.primary_key, lake_uri=load.lake.uri)
        submit_quality(session, load.code, load.version_id, lake_uri=load.lake.uri,
                       field_errors=state.field_errors)  # fmt: skip
        _announce(session, load.code, version)


def _announce(session: Session, code: str, version: Version) -> None:
    """The `resource.updated` event, in the transaction that commits the version."""
    events.publish(
        session, kind="resource.updated", subject=code,
        data={"resource": code, "version_id": version.id, "lake_version": version.lake_version,
              "rows_accepted": version.rows_accepted, "rows_rejected": version.rows_rejected},
    )  # fmt: skip


def _noop(
    ctx: jobs.JobContext, version_id: int, fetched: sources.Fetched, started: float, same: int
) -> dict[str, Any]:
    _record(ctx, version_id, state=LoadState.NOOP, fetched=fetched, started=started,
            error=f"same input as load {same}")  # fmt: skip
    return {"version_id": version_id, "state": str(LoadState.NOOP), "same_as": same}


def _duck(work: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": LOAD_MEMORY})
    con.sql("SET enable_progress_bar = false")
    con.sql(f"SET disabled_optimizers = {lit(sources.UNSAFE_OPTIMIZERS)}")
    con.sql(f"SET temp_directory = {lit(work / 'spill')}")
    con.sql(f"SET TimeZone = {lit(SOURCE_TIMEZONE)}")
    return con


def _flatten(part: sources.Part, parts_dir: Path) -> sources.Part:
    """Move a file up into the load's folder, beside the others of the same version."""
    moved = parts_dir / part.path.name
    part.path.replace(moved)
    return replace(part, path=moved)


def _integer_bounds(parts: list[sources.Part], target: pa.Schema) -> dict[str, tuple[int, int]]:
    """Smallest and largest value of each integer column over the files, from their statistics."""
    bounds: dict[str, tuple[int, int]] = {}
    for field in target:
        if not pa.types.is_integer(field.type):
            continue
        stats = [part.stats.get(field.name) or {} for part in parts]
        if any(st.get("min") is None or st.get("max") is None for st in stats):
            continue
        bounds[field.name] = (
            min(int(st["min"]) for st in stats),
            max(int(st["max"]) for st in stats),
        )
    return bounds


def _find_duplicates(con: duckdb.DuckDBPyConnection, checks: Checks, numbered: str) -> int:
    """Build the tables of repeated keys (with their first row) over `numbered`; their size."""
    found = 0
    for statement, (alias, _) in zip(checks.dup_views(numbered), checks.dup_tables, strict=True):
        con.sql(statement)
        found += int(con.execute(f"SELECT count(*) FROM {alias}").fetchall()[0][0])
    return found


def _files_sql(files: list[sources.Part] | list[str]) -> str:
    """A SQL list of the files' paths, for read_parquet."""
    paths = [f.path if isinstance(f, sources.Part) else f for f in files]
    return "[" + ", ".join(lit(path) for path in paths) + "]"


def _fetch(load: _Load, p: dict[str, Any], last_mark: str | None) -> sources.Fetched:
    with load.ctx.factory() as session:
        source = sources.open_source(
            p["source"], p.get("sealed_source"), session.info.get("node_key")
        )
    kind = sources.source_type(source)
    if kind == "url":
        # Downloaded into the load's own work folder, deleted with it.
        return sources.fetch_url(source, load.work, limit=int(p["upload_limit"]))
    if kind == "db":
        mark = (p["watermark"], last_mark) if p.get("watermark") and last_mark is not None else None
        return sources.fetch_table(source, p.get("table"), load.work, watermark=mark)
    return sources.fetch_file(Path(source), filename=p.get("filename"), hash_later=True)


def _same_input(
    ctx: jobs.JobContext, version_id: int, fetched: sources.Fetched, mode: LoadMode
) -> int | None:
    """The earlier load this one repeats, if any: same bytes, same mode, nothing changed since."""
    with ctx.factory() as session:
        current = _version(session, version_id)
        committed = list(
            session.scalars(
                select(Version)
                .where(
                    Version.resource_id == current.resource_id,
                    Version.state == LoadState.COMMITTED,
                )
                .order_by(Version.id.desc())
            )
        )
    if not committed:
        return None
    latest = committed[0]
    if latest.sha256 == fetched.sha256 and latest.mode == mode:
        return latest.id
    # Appending the same file again would double its rows, whatever came in between.
    if mode == LoadMode.APPEND:
        for v in committed:
            if v.sha256 == fetched.sha256 and v.mode == mode:
                return v.id
    return None


def _last_watermark(session: Session, resource_id: int) -> str | None:
    return session.scalars(
        select(Version.watermark)
        .where(
            Version.resource_id == resource_id,
            Version.state == LoadState.COMMITTED,
            Version.watermark.is_not(None),
        )
        .order_by(Version.id.desc())
        .limit(1)
    ).first()


QUALITY_KIND = "ingest.quality"


def submit_quality(
    session: Session,
    code: str,
    version_id: int,
    *,
    lake_uri: str,
    field_errors: dict[str, int] | None,
) -> jobs.Job:
    """Queue the quality report of a committed version, inside that commit's transaction.

    `field_errors` (rejected rows per field) come from the load; None takes them from the
    rejects table (a run finished after a crash no longer has them in hand).
    """
    return jobs.submit(
        session,
        Principal.system(),
        QUALITY_KIND,
        {"code": code, "version_id": version_id, "lake_uri": lake_uri,
         "field_errors": field_errors},
        key=f"quality:{code}:{version_id}",
    )  # fmt: skip


@jobs.handler(QUALITY_KIND)
def run_quality(ctx: jobs.JobContext) -> dict[str, Any]:
    """The `ingest.quality` job: the report of one committed version; safe to run again."""
    p = ctx.params
    lake = Lake(p["lake_uri"])
    with ctx.factory() as session:
        version = session.get(Version, p["version_id"])
        if version is None or version.lake_version is None:
            raise NotFound(f"no committed version {p['version_id']} of {p['code']}")
        resource = get_resource(session, p["code"])
        schema, _ = resource_schema(session, resource, version.schema_version)
        lake_version, rows_read = version.lake_version, version.rows_read or 0
        settled = _settled(session, resource, lake_version, schema)
    errors = p.get("field_errors")
    if errors is None:
        errors = _field_errors(lake, p["code"], p["version_id"])
    ctx.progress(0, 1, "quality")
    found = lake.aggregate(
        p["code"], lake_version, lambda table: quality_query(schema, table, settled),
        timezone=SOURCE_TIMEZONE,
    )  # fmt: skip
    report = quality_report(schema, found, rows_read, errors)
    with ctx.factory.begin() as session:
        version = _version(session, p["version_id"])
        version.quality = report
    ctx.progress(1, 1, "quality")
    return {"version_id": p["version_id"], "lake_version": lake_version, "rows": report["rows"]}


def _settled(
    session: Session, resource: Resource, lake_version: int, schema: TableSchema
) -> Settled:
    """What the loads of a table version already checked on all its rows.

    The fields whose rules every row was loaded under (each load that put rows in the
    version, back to the last full load, had them exactly as `schema` does) are valid by
    construction; the others are checked row by row (after a schema change, until a full
    load replaces the older rows). When one load wrote every row, under these rules, its
    check for repeated keys covered the whole version.
    """
    wanted: set[str] = set()
    loads = 0
    for mode, schema_version in session.execute(
        select(Version.mode, Version.schema_version)
        .where(
            Version.resource_id == resource.id,
            Version.state == LoadState.COMMITTED,
            Version.lake_version <= lake_version,
        )
        .order_by(Version.lake_version.desc())
    ):
        if mode == LoadMode.DELETE:
            continue  # removes rows, adds none
        if schema_version is None:
            return Settled()
        wanted.add(schema_version)
        loads += 1
        if mode == LoadMode.FULL:
            break  # it replaced every earlier row
    try:
        others = [resource_schema(session, resource, v)[0] for v in sorted(wanted)]
    except Invalid:
        return Settled()
    fields = frozenset(
        f.name for f in schema.fields if all(_same_rules(f, schema, other) for other in others)
    )
    keys = {c for _, cols in unique_sets(schema) for c in cols}
    return Settled(fields, keys=loads == 1 and keys <= fields)


def _same_rules(f: Field, schema: TableSchema, other: TableSchema) -> bool:
    """Whether `other` checks field `f` exactly as `schema` does (names and governance keys
    aside: a title, a sensitivity or a mask changes no rule)."""
    found = next((g for g in other.fields if g.name == f.name), None)
    if found is None or (f.name in schema.primary_key) != (f.name in other.primary_key):
        return False

    def rules(field: Field) -> Field:
        return replace(field, title=None, description=None, sensitivity="internal", mask=None)

    return rules(found) == rules(f)


def _field_errors(lake: Lake, code: str, version_id: int) -> dict[str, int]:
    """Rejected rows per field of one load, from the rejects table."""
    return lake.reject_counts(code, version_id)


def _apply(version: Version, fetched: sources.Fetched, started: float) -> None:
    version.source = version.source if fetched.source_kind in sources.FILE_KINDS else fetched.label
    version.source_kind = fetched.source_kind
    version.sha256 = fetched.sha256
    version.duration_s = round(time.perf_counter() - started, 3)


def _record(
    ctx: jobs.JobContext,
    version_id: int,
    *,
    state: LoadState,
    fetched: sources.Fetched,
    started: float,
    rows: tuple[int, int, int] | None = None,
    error: str | None = None,
) -> None:
    with ctx.factory.begin() as session:
        version = _version(session, version_id)
        _apply(version, fetched, started)
        version.state = state
        version.error = error
        if rows is not None:
            version.rows_read, version.rows_accepted, version.rows_rejected = rows


def _settle_orphans(
    session: Session, lake: Lake, resource: Resource, *, keep: int | None, works: Path
) -> None:
    """Finish loads that died after their Delta commit; fail those that died before it, and
    delete the files they left (in the table folder and in their work folder)."""
    running = list(
        session.scalars(
            select(Version).where(
                Version.resource_id == resource.id, Version.state == LoadState.RUNNING
            )
        )
    )
    if not running:
        return
    commits = lake.find_commits(resource.code, [version.id for version in running])
    for version in running:
        found = commits.get(version.id)
        if found is not None:
            _adopt(session, lake, resource, version, found)
            continue
        if version.id == keep:
            continue
        job = session.get(jobs.Job, version.job_id) if version.job_id else None
        alive = (
            job is not None
            and job.state == jobs.JobState.RUNNING
            and (job.heartbeat_at is not None and job.heartbeat_at > clock.now() - jobs.STALE_AFTER)
        )
        if not alive:
            version.state = LoadState.FAILED
            version.error = "the load was interrupted before it committed; nothing was written"
            lake.discard_uncommitted(resource.code, version.id)
            sources.cleanup(works / f"load-{version.id}")


def _adopt(
    session: Session, lake: Lake, resource: Resource, version: Version, commit: LoadCommit
) -> None:
    """Record a load whose Delta commit exists (its run died before the control plane's)."""
    found, record = commit.version, commit.record
    version.state = LoadState.COMMITTED
    version.lake_version = found
    version.rows_read = record.rows_read
    version.rows_accepted = record.rows_accepted
    version.rows_rejected = record.rows_rejected
    version.sha256 = record.source_sha256 or version.sha256
    version.watermark = record.watermark
    version.committed_at = clock.now()
    if resource.lake_version is None or found > resource.lake_version:
        resource.lake_version = found
        resource.row_count = lake.row_count(resource.code, found)
        schema, _ = resource_schema(session, resource, version.schema_version)
        serving.submit_refresh(session, resource, schema.primary_key, lake_uri=lake.uri)
        _announce(session, resource.code, version)
    submit_quality(session, resource.code, version.id, lake_uri=lake.uri, field_errors=None)
    audit.record(
        session, Principal.system(on_behalf_of=version.loaded_by), "resource.version",
        target=resource.code, target_type="resource", count=version.rows_accepted,
        detail=f"lake version {found}: finished after an interrupted run",
    )  # fmt: skip


def versions_json(versions: list[Version]) -> list[dict[str, Any]]:
    """The lineage of loads as plain JSON (CLI and API)."""
    return [
        {
            "id": v.id,
            "lake_version": v.lake_version,
            "state": v.state,
            "mode": v.mode,
            "source": v.source,
            "source_kind": v.source_kind,
            "sha256": v.sha256,
            "schema_version": v.schema_version,
            "watermark": v.watermark,
            "rows_read": v.rows_read,
            "rows_accepted": v.rows_accepted,
            "rows_rejected": v.rows_rejected,
            "duration_s": v.duration_s,
            "loaded_by": v.loaded_by,
            "started_at": v.started_at.isoformat() if v.started_at else None,
            "committed_at": v.committed_at.isoformat() if v.committed_at else None,
            "error": v.error,
            "notes": v.notes,
        }
        for v in versions
    ]


def lineage(session: Session, actor: Principal, code: str) -> list[dict[str, Any]]:
    """The loads of a resource with their lineage and quality (as the reader's plan shows it)."""
    found = list_versions(session, actor, code)
    # One plan for every version's report: the reader and the schema are the same.
    plan = catalog.quality_plan(session, actor, catalog.get_resource(session, code))
    out = versions_json(found)
    for row, version in zip(out, found, strict=True):
        row["quality"] = catalog.planned_quality_doc(plan, version.quality)
    return out


def rejects_json(table: pa.Table) -> list[dict[str, Any]]:
    """Rejected rows as plain JSON, the raw record parsed back."""
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        row["record"] = json.loads(row["record"]) if row["record"] else None
    return rows
