"""Loads into the lake: submit a load job, run it, list versions, read rejects and old versions.

A load is atomic across the two stores. The Delta commit carries the load's id in its
commit metadata and an idempotent transaction id; the control-plane commit (Version row,
resource pointer) comes after it and is what readers follow (`resource.lake_version`). A
load killed before its Delta commit leaves nothing readers can see; one killed between the
two commits is finished by the next attempt, which finds its Delta commit by that id.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource, ResourceSchema
from minyun.catalog.tableschema import TableSchema, arrow_schema, parse_schema
from minyun.core import audit, clock, jobs, policies
from minyun.core.config import Settings, get_settings
from minyun.core.errors import ConfigError, DomainError, Forbidden, Invalid, NotFound
from minyun.core.keys import NodeKey
from minyun.core.lake import Lake
from minyun.core.reading import REJECTS_SCHEMA
from minyun.core.security import Principal, authorize
from minyun.ingest import sources
from minyun.ingest.models import LoadMode, LoadState, Version
from minyun.ingest.validate import SQL_TYPES, Checks, lit, q, quality_query, quality_report
from minyun.query.service import submit_refresh

KIND = "ingest.load"
CDF = {"delta.enableChangeDataFeed": "true"}
# Naive date-times in departments' files are Beijing time; the lake stores UTC.
SOURCE_TIMEZONE = "Asia/Shanghai"
BATCH_ROWS = 256_000
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
        raise Forbidden(f"only the provider of {code} or an admin may do this")
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
    resource = _access_managed(session, actor, code, "resource.load")
    mode = LoadMode(mode)
    schema, _ = resource_schema(session, resource)
    if mode in (LoadMode.UPSERT, LoadMode.DELETE) and not schema.primary_key:
        raise Invalid(f"{mode} needs a primary key in the schema of {code}", field="mode")
    if watermark is not None:
        schema.field(watermark)
    kind = sources.source_type(source)
    if kind == "db" and not table:
        raise Invalid("a database source needs a table", field="table")
    cfg = settings or get_settings()
    params = {
        "code": code,
        "source": source,
        "mode": str(mode),
        "table": table,
        "encoding": encoding,
        "watermark": watermark,
        "filename": filename,
        "actor": actor.label,
        "lake_uri": cfg.lake_uri,
        "var_dir": str(cfg.var_dir),
        "upload_limit": cfg.upload_max_bytes,
    }
    job = jobs.submit(session, actor, KIND, params)
    label = filename or (source if kind == "file" else sources._safe_url(source))
    audit.record(
        session, actor, "resource.load", target=code, target_type="resource",
        detail=f"{mode} from {label} (job {job.id})",
    )  # fmt: skip
    return job


def check_can_load(session: Session, actor: Principal, code: str) -> None:
    """Forbidden unless `actor` may load into the resource (used before accepting an upload)."""
    _access_managed(session, actor, code, "resource.load")


def save_upload(stream: Any, settings: Settings | None = None) -> tuple[Path, str, int]:
    """Stream an uploaded file object to `<var_dir>/uploads/<sha256>` under the size limit."""
    cfg = settings or get_settings()
    return sources.save_file(stream, cfg.var_dir / "uploads", limit=cfg.upload_max_bytes)


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
) -> pa.Table:
    """The refused rows of a load (`version` = Version.id; default the newest load with any).

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
        chosen = session.get(Version, version)
        if chosen is None or chosen.resource_id != plan.resource.id:
            raise NotFound(f"resource {code} has no load {version}")
    if version is None:
        return REJECTS_SCHEMA.empty_table()
    table = lake.read_rejects(plan, secret=_secret(session), load_id=version, limit=limit)
    audit.record_read(
        session, actor, policies.REJECTS, target=code, target_type="resource",
        count=table.num_rows, detail=f"load {version}; policy={plan.policy}",
    )  # fmt: skip
    return table


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
        plan, secret=_secret(session), version=version, as_of=as_of, limit=limit
    )
    audit.record_read(
        session, actor, policies.READ, target=code, target_type="resource",
        count=table.num_rows, detail=f"version {version}" if version is not None else f"as of {as_of or latest}",
    )  # fmt: skip
    return table


def _secret(session: Session) -> bytes:
    node_key = session.info.get("node_key")
    if not isinstance(node_key, NodeKey):
        raise ConfigError("no node key to pseudonymise with")
    return node_key.derive("reader")


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
    with ctx.factory.begin() as session:
        resource = get_resource(session, p["code"])
        _settle_orphans(session, lake, resource, keep=state.get("version_id"))
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
    with ctx.factory() as session:
        done = session.get(Version, version_id)
        assert done is not None
        if done.state != LoadState.RUNNING:  # finished from its Delta commit just now
            return _result(done)
    work = Path(p["var_dir"]) / "work" / f"load-{version_id}"
    load = _Load(ctx, version_id, lake, p["code"], work)
    started = time.perf_counter()
    try:
        return _run(load, started)
    except DomainError as exc:
        _fail(ctx, version_id, exc, started)
        raise
    except Exception as exc:
        _fail(ctx, version_id, exc, started)
        raise
    finally:
        sources.cleanup(work)


def _result(version: Version) -> dict[str, Any]:
    return {
        "version_id": version.id,
        "state": str(version.state),
        "lake_version": version.lake_version,
        "rows_read": version.rows_read,
        "rows_accepted": version.rows_accepted,
        "rows_rejected": version.rows_rejected,
    }


def _label(source: str) -> str:
    kind = sources.source_type(source)
    return sources._safe_url(source) if kind != "file" else Path(source).name


def _fail(ctx: jobs.JobContext, version_id: int, exc: Exception, started: float) -> None:
    with ctx.factory.begin() as session:
        version = session.get(Version, version_id)
        if version is None or version.state == LoadState.COMMITTED:
            return
        version.state = LoadState.REJECTED if isinstance(exc, LoadRefused) else LoadState.FAILED
        version.error = str(exc)[:4000]
        version.duration_s = round(time.perf_counter() - started, 3)


def _run(load: _Load, started: float) -> dict[str, Any]:
    ctx, p = load.ctx, load.ctx.params
    shutil.rmtree(load.work, ignore_errors=True)
    load.work.mkdir(parents=True)
    mode = LoadMode(p["mode"])
    with ctx.factory() as session:
        resource = get_resource(session, load.code)
        schema, schema_version = resource_schema(session, resource)
        threshold = resource.reject_threshold
        last_mark = _last_watermark(session, resource.id) if p.get("watermark") else None
    ctx.progress(0, 5, "fetching")
    fetched = _fetch(load, p, last_mark)
    hashing: Future[str] | None = None
    if fetched.sha256:  # downloads and dumps were hashed while being written
        noop = _same_input(ctx, load.version_id, fetched, mode)
        if noop is not None:
            return _noop(ctx, load.version_id, fetched, started, noop)
    else:
        # A local file is hashed beside the DuckDB pass (hashlib releases the GIL); the
        # same-input check then comes after the read, before anything is committed.
        pool = ThreadPoolExecutor(1, thread_name_prefix="minyun-sha256")
        hashing = pool.submit(sources.sha256_file, fetched.path)
        pool.shutdown(wait=False)
    con = _duck(load.work)
    checks = Checks(schema, key_only=mode == LoadMode.DELETE)
    needed = [f.name for f in checks.fields]
    raw = sources.relation_sql(
        con, fetched, load.work, encoding=p.get("encoding"), fields=schema.names
    )
    columns = sources.columns_of(con, raw)
    missing = [n for n in needed if n not in columns]
    if missing:
        raise sources.SourceError(
            f"the header does not match the schema: missing {', '.join(missing)} "
            f"(the file has {', '.join(columns[:20])}); check the delimiter, encoding and header row"
        )
    keep = [c for c in columns if c in schema.names]
    relation = checks.wrap(raw, columns)
    where = None
    if last_mark is not None and fetched.source_kind not in ("postgres", "mariadb"):
        f = schema.field(p["watermark"])
        where = f"TRY_CAST({q(f.name)} AS {SQL_TYPES[f.type]}) > CAST({lit(last_mark)} AS {SQL_TYPES[f.type]})"
    target = arrow_schema(schema)
    written = [f.name for f in checks.fields] if mode == LoadMode.DELETE else schema.names
    if mode == LoadMode.DELETE:
        target = pa.schema([target.field(n) for n in schema.primary_key])
        if p.get("watermark") and p["watermark"] not in written and p["watermark"] in keep:
            written.append(p["watermark"])
    uri = load.lake.table_uri(load.code)
    direct = _direct_dir(uri, mode, target)
    parts_dir = (direct or load.work) / f"load-{load.version_id}-{uuid.uuid4().hex[:12]}"
    try:
        ctx.progress(1, 5, "reading")
        select = ", ".join(f"{checks.typed(schema.field(n))} AS {q(n)}" for n in written)
        written_once = sources.write_parts(
            con, relation, select, checks.ok(), parts_dir, where=where
        )
        good, rows_read = written_once.parts, written_once.rows_read
        if hashing is not None:
            fetched = replace(fetched, sha256=hashing.result())
            hashing = None
            noop = _same_input(ctx, load.version_id, fetched, mode)
            if noop is not None:
                shutil.rmtree(parts_dir, ignore_errors=True)  # never committed
                con.close()
                return _noop(ctx, load.version_id, fetched, started, noop)
        if rows_read == 0 and mode == LoadMode.FULL:
            raise sources.SourceError(
                "the input has no data rows; a full load would empty the resource"
            )
        ctx.progress(2, 5, f"validating {rows_read:,} rows")
        failing = rows_read - sum(part.rows for part in good)
        con.sql(
            "CREATE TEMP TABLE __rejects (load_id BIGINT, row_number BIGINT, field VARCHAR, "
            "reason VARCHAR, record VARCHAR)"
        )
        numbered = checks.wrap(sources.numbered(raw, keep, where=where), keep)
        try:
            if failing:
                # A refused row's key still makes a later copy of it a duplicate: look for
                # repeated keys over the whole source, not only over the written rows.
                dups = _find_duplicates(con, checks, numbered)
            else:
                dup_sql = (
                    checks.dup_count_query(_files_sql(good), _integer_bounds(good, target))
                    if good
                    else None
                )
                dups = int(con.execute(dup_sql).fetchall()[0][0]) if dup_sql else 0
                if dups:
                    _find_duplicates(con, checks, numbered)
            if failing or dups:
                # Only now is the source read again with row numbers, for the rows it refused.
                con.sql(
                    "INSERT INTO __rejects "
                    + checks.rejects_query(numbered, load.version_id, keep, dups=bool(dups))
                )
        except duckdb.Error as exc:
            raise sources.SourceError(
                f"cannot read the source: {sources._duck_message(exc)}"
            ) from exc
        counts = con.execute("SELECT count(DISTINCT row_number) FROM __rejects").fetchall()
        rows_rejected = int(counts[0][0])
        field_errors = dict(
            con.execute(
                "SELECT field, count(DISTINCT row_number) FROM __rejects GROUP BY field"
            ).fetchall()
        )
        if dups:
            # Later occurrences of a key passed the row rules and were written: write again
            # without every rejected row.
            again = sources.write_parts(
                con, numbered, select, "true", parts_dir / "again",
                where=f"src.{sources.ROW} NOT IN (SELECT row_number FROM __rejects)", count=False,
            )  # fmt: skip
            for part in good:
                part.path.unlink(missing_ok=True)
            good = [_flatten(part, parts_dir) for part in again.parts]
            shutil.rmtree(parts_dir / "again", ignore_errors=True)
        assert sum(part.rows for part in good) == rows_read - rows_rejected
        _write_rejects(load, con)
        share = rows_rejected / rows_read if rows_read else 0.0
        if share > threshold:
            _record(ctx, load.version_id, state=LoadState.RUNNING, fetched=fetched, started=started,
                    rows=(rows_read, 0, rows_rejected))  # fmt: skip
            raise LoadRefused(
                f"{rows_rejected:,} of {rows_read:,} rows broke the schema ({share:.1%}), more than "
                f"the {threshold:.1%} allowed for {load.code}; nothing was committed",
                rejected=rows_rejected,
            )
        ctx.progress(3, 5, "writing")
        rows_accepted = rows_read - rows_rejected
        mark = None
        if p.get("watermark") and rows_accepted:
            f = schema.field(p["watermark"])
            top = f"max({q(f.name)})"
            # Date-times are kept as local wall time, which is what department databases hold.
            expr = (
                f"strftime(CAST({top} AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f')"
                if f.type == "datetime"
                else f"CAST({top} AS VARCHAR)"
            )
            found = con.execute(f"SELECT {expr} FROM read_parquet({_files_sql(good)})").fetchall()
            mark = found[0][0] if found else None
        meta = {
            "minyun.load_id": str(load.version_id),
            "minyun.rows_read": str(rows_read),
            "minyun.rows_accepted": str(rows_accepted),
            "minyun.rows_rejected": str(rows_rejected),
            "minyun.source_sha256": fetched.sha256,
            "minyun.watermark": mark or last_mark or "",
        }
        if direct is not None:
            lake_version = _commit_files(load, mode, target, direct, good, meta)
        else:
            cols = ", ".join(q(n) for n in target.names)
            data = (
                con.sql(f"SELECT {cols} FROM read_parquet({_files_sql(good)})")
                .to_arrow_reader(BATCH_ROWS)
                .cast(target)
                if good
                else pa.RecordBatchReader.from_batches(target, [])
            )
            bounds = _integer_bounds(good, target)
            lake_version = _commit(load, mode, schema, data, meta, bounds=bounds)
    except BaseException:
        if hashing is not None:
            hashing.cancel()
        if direct is not None and not _has_commit(uri, load.version_id):
            shutil.rmtree(parts_dir, ignore_errors=True)  # never committed: nobody reads them
        raise
    con.close()
    ctx.progress(4, 5, "recording")
    row_count = _row_count(load.lake, load.code, lake_version)
    with ctx.factory.begin() as session:
        version = session.get(Version, load.version_id)
        assert version is not None
        _apply(version, fetched, started)
        version.state = LoadState.COMMITTED
        version.lake_version = lake_version
        version.rows_read, version.rows_accepted, version.rows_rejected = (
            rows_read,
            rows_accepted,
            rows_rejected,
        )
        version.watermark = mark or last_mark
        version.schema_version = schema_version
        version.committed_at = clock.now()
        resource = get_resource(session, load.code)
        resource.lake_version = lake_version
        resource.row_count = row_count
        audit.record(
            session, Principal.system(on_behalf_of=p["actor"]), "resource.version",
            target=load.code, target_type="resource", count=rows_accepted,
            detail=f"lake version {lake_version}: {mode}, {rows_accepted} accepted, {rows_rejected} rejected",
        )  # fmt: skip
        # The serving index and the quality report follow in jobs of their own, which exist
        # if and only if this version committed.
        submit_refresh(session, load.code, lake_version, lake_uri=load.lake.uri)
        submit_quality(session, load.code, load.version_id, lake_uri=load.lake.uri,
                       field_errors=field_errors)  # fmt: skip
    ctx.progress(5, 5, f"version {lake_version}")
    return {
        "version_id": load.version_id,
        "state": str(LoadState.COMMITTED),
        "lake_version": lake_version,
        "rows_read": rows_read,
        "rows_accepted": rows_accepted,
        "rows_rejected": rows_rejected,
    }  # fmt: skip


def _noop(
    ctx: jobs.JobContext, version_id: int, fetched: sources.Fetched, started: float, same: int
) -> dict[str, Any]:
    _record(ctx, version_id, state=LoadState.NOOP, fetched=fetched, started=started,
            error=f"same input as load {same}")  # fmt: skip
    return {"version_id": version_id, "state": str(LoadState.NOOP), "same_as": same}


def _duck(work: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": LOAD_MEMORY})
    con.sql("SET enable_progress_bar = false")
    con.sql(f"SET temp_directory = {lit(work / 'spill')}")
    con.sql(f"SET TimeZone = {lit(SOURCE_TIMEZONE)}")
    return con


def _direct_dir(uri: str, mode: LoadMode, target: pa.Schema) -> Path | None:
    """The table folder, when DuckDB may write the new files straight into it.

    That is a full or append load into a local lake whose table is new or has exactly the
    load's schema; anything else (merges, schema changes, object stores) goes through
    delta-rs.
    """
    if "://" in uri or mode not in (LoadMode.FULL, LoadMode.APPEND):
        return None
    if DeltaTable.is_deltatable(uri):
        current = pa.schema(DeltaTable(uri).schema().to_arrow())
        if not current.equals(target):
            return None
    folder = Path(uri)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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


def _has_commit(uri: str, version_id: int) -> bool:
    try:
        table = DeltaTable(uri) if DeltaTable.is_deltatable(uri) else None
    except Exception:  # an unreadable log: keep the files, vacuum decides later
        return True
    return table is not None and _committed_version(table, version_id) is not None


def _fetch(load: _Load, p: dict[str, Any], last_mark: str | None) -> sources.Fetched:
    source = p["source"]
    kind = sources.source_type(source)
    uploads = Path(p["var_dir"]) / "uploads"
    if kind == "url":
        return sources.fetch_url(source, uploads, limit=int(p["upload_limit"]))
    if kind == "db":
        mark = (p["watermark"], last_mark) if p.get("watermark") and last_mark is not None else None
        return sources.fetch_table(source, p.get("table"), load.work, watermark=mark)
    return sources.fetch_file(Path(source), filename=p.get("filename"), hash_later=True)


def _same_input(
    ctx: jobs.JobContext, version_id: int, fetched: sources.Fetched, mode: LoadMode
) -> int | None:
    """The earlier load this one repeats, if any: same bytes, same mode, nothing changed since."""
    with ctx.factory() as session:
        current = session.get(Version, version_id)
        assert current is not None
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


def _write_rejects(load: _Load, con: duckdb.DuckDBPyConnection) -> None:
    """Keep the refused rows; a retry of the same load replaces its own earlier rejects."""
    uri = load.lake.rejects_uri(load.code)
    exists = DeltaTable.is_deltatable(uri)
    if not exists and not con.execute("SELECT count(*) FROM __rejects").fetchall()[0][0]:
        return
    reader = con.sql("SELECT * FROM __rejects").to_arrow_reader(BATCH_ROWS).cast(REJECTS_SCHEMA)
    if exists:
        write_deltalake(uri, reader, mode="overwrite", predicate=f"load_id = {load.version_id}")
    else:
        write_deltalake(uri, reader, mode="append")


def _commit(
    load: _Load,
    mode: LoadMode,
    schema: TableSchema,
    data: pa.RecordBatchReader,
    meta: dict[str, str],
    *,
    bounds: dict[str, tuple[int, int]] | None = None,
) -> int:
    """Write the accepted rows as one Delta commit; its version.

    A merge (upsert, delete) is told the range of each integer key column of the load
    (`bounds`, from the written files' statistics): delta-rs then reads only the table's
    files whose statistics overlap it, instead of every file of the table (it streams
    the load's rows, so it cannot find that range itself).
    """
    uri = load.lake.table_uri(load.code)
    props = CommitProperties(
        custom_metadata=meta,
        app_transactions=[Transaction(app_id=_app_id(load.version_id), version=1)],
    )
    exists = DeltaTable.is_deltatable(uri)
    if mode == LoadMode.FULL or not exists:
        if mode == LoadMode.DELETE:
            raise Invalid(f"resource {load.code} has no data to delete from", field="mode")
        write_deltalake(
            uri, data, mode="overwrite" if exists else "append", schema_mode="overwrite" if exists else None,
            configuration=CDF, commit_properties=props,
        )  # fmt: skip
    elif mode == LoadMode.APPEND:
        write_deltalake(uri, data, mode="append", schema_mode="merge", commit_properties=props)
    else:
        on = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in schema.primary_key)
        for k in schema.primary_key:
            if bounds and k in bounds:
                low, high = bounds[k]
                on += f" AND t.{q(k)} >= {int(low)} AND t.{q(k)} <= {int(high)}"
        merger = DeltaTable(uri).merge(
            data, on, source_alias="s", target_alias="t", commit_properties=props,
            merge_schema=mode == LoadMode.UPSERT,
        )  # fmt: skip
        if mode == LoadMode.UPSERT:
            merger.when_matched_update_all().when_not_matched_insert_all().execute()
        else:
            merger.when_matched_delete().execute()
    found = _committed_version(DeltaTable(uri), load.version_id)
    assert found is not None, "the Delta commit of this load is missing"
    return found


def _commit_files(
    load: _Load,
    mode: LoadMode,
    target: pa.Schema,
    folder: Path,
    parts: list[sources.Part],
    meta: dict[str, str],
) -> int:
    """Commit Parquet files already written into the table folder as one Delta commit.

    A full load replaces every earlier file in the same commit (overwrite); the commit
    carries the load's metadata and app transaction like any other.
    """
    uri = load.lake.table_uri(load.code)
    props = CommitProperties(
        custom_metadata=meta,
        app_transactions=[Transaction(app_id=_app_id(load.version_id), version=1)],
    )
    adds = [
        AddAction(
            path=part.path.relative_to(folder).as_posix(),
            size=part.path.stat().st_size,
            partition_values={},
            modification_time=int(part.path.stat().st_mtime * 1000),
            data_change=True,
            stats=_delta_stats(part, target),
        )
        for part in parts
    ]
    if not DeltaTable.is_deltatable(uri):
        create_table_with_add_actions(
            uri, DeltaSchema.from_arrow(target), adds, mode="error", configuration=CDF,
            commit_properties=props,
        )  # fmt: skip
    else:
        actions: list[AddAction | RemoveAction] = list(adds)
        DeltaTable(uri).create_write_transaction(
            actions, mode="overwrite" if mode == LoadMode.FULL else "append", schema=target,
            commit_properties=props,
        )  # fmt: skip
    found = _committed_version(DeltaTable(uri), load.version_id)
    assert found is not None, "the Delta commit of this load is missing"
    return found


def _delta_stats(part: sources.Part, target: pa.Schema) -> str:
    """The Delta `stats` of a file from DuckDB's own statistics of it (for data skipping)."""
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for field in target:
        st = part.stats.get(field.name)
        if not st:
            continue
        if st.get("null_count") is not None:
            nulls[field.name] = int(st["null_count"])
        exact = st.get("min_is_exact") == "true" and st.get("max_is_exact") == "true"
        if not exact or st.get("min") is None or st.get("max") is None:
            continue
        low, high = (
            _stat_value(field.type, st["min"], up=False),
            _stat_value(field.type, st["max"], up=True),
        )
        if low is not None and high is not None:
            lows[field.name], highs[field.name] = low, high
    return json.dumps(
        {"numRecords": part.rows, "minValues": lows, "maxValues": highs, "nullCount": nulls},
        ensure_ascii=False,
    )


def _stat_value(kind: pa.DataType, text: str, *, up: bool) -> Any:
    """A statistic as Delta writes it; None where it is safer to give none."""
    if pa.types.is_integer(kind):
        return int(text)
    if pa.types.is_floating(kind):
        value = float(text)
        return value if math.isfinite(value) else None
    if pa.types.is_string(kind) or pa.types.is_date(kind):
        return text
    if pa.types.is_timestamp(kind):
        # Delta keeps milliseconds: round the bounds outwards so they stay bounds.
        moment = datetime.fromisoformat(text)
        micros = moment.microsecond
        millis = micros // 1000 + (1 if up and micros % 1000 else 0)
        stamp = moment.replace(microsecond=0).timestamp() + millis / 1000
        rounded = datetime.fromtimestamp(stamp, tz=UTC)
        return rounded.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rounded.microsecond // 1000:03d}Z"
    return None  # booleans and times: no bounds


def _app_id(version_id: int) -> str:
    return f"minyun-load-{version_id}"


def _committed_version(table: DeltaTable, version_id: int, depth: int = 100) -> int | None:
    """The Delta version committed by load `version_id`, if there is one."""
    if table.transaction_version(_app_id(version_id)) is None:
        return None
    for entry in table.history(depth):
        if str(entry.get("minyun.load_id")) == str(version_id):
            return int(entry["version"])
    return None


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
    errors = p.get("field_errors")
    if errors is None:
        errors = _field_errors(lake, p["code"], p["version_id"])
    ctx.progress(0, 1, "quality")
    con = duckdb.connect()
    con.sql("SET enable_progress_bar = false")
    files = DeltaTable(lake.table_uri(p["code"]), version=lake_version).file_uris()
    if all("://" not in f for f in files) and files:
        # A local table: DuckDB reads the version's files itself (several times faster
        # than through an Arrow dataset, and in less memory).
        table = f"read_parquet({_files_sql(files)})"
    else:
        con.register("v", lake.dataset(p["code"], version=lake_version))
        table = "v"
    cursor = con.execute(quality_query(schema, table))
    names = [d[0] for d in cursor.description or ()]
    found = dict(zip(names, cursor.fetchall()[0], strict=True))
    con.close()
    report = quality_report(schema, found, rows_read, errors)
    with ctx.factory.begin() as session:
        version = session.get(Version, p["version_id"])
        assert version is not None
        version.quality = report
    ctx.progress(1, 1, "quality")
    return {"version_id": p["version_id"], "lake_version": lake_version, "rows": report["rows"]}


def _field_errors(lake: Lake, code: str, version_id: int) -> dict[str, int]:
    """Rejected rows per field of one load, from the rejects table."""
    uri = lake.rejects_uri(code)
    if not DeltaTable.is_deltatable(uri):
        return {}
    con = duckdb.connect()
    con.register("r", DeltaTable(uri).to_pyarrow_dataset())
    found = con.execute(
        "SELECT field, count(DISTINCT row_number) FROM r WHERE load_id = ? GROUP BY field",
        [version_id],
    ).fetchall()
    con.close()
    return {str(f): int(n) for f, n in found}


def _row_count(lake: Lake, code: str, lake_version: int) -> int:
    """The rows of a table version, from the record counts its Delta log keeps per file."""
    table = DeltaTable(lake.table_uri(code), version=lake_version)
    counts = pa.table(table.get_add_actions(flatten=True)).column("num_records")
    if counts.null_count == 0:
        return int(pc.sum(counts).as_py() or 0)
    # A file without statistics (not written by minyun): count the rows themselves.
    return int(table.to_pyarrow_dataset().count_rows())


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
        version = session.get(Version, version_id)
        assert version is not None
        _apply(version, fetched, started)
        version.state = state
        version.error = error
        if rows is not None:
            version.rows_read, version.rows_accepted, version.rows_rejected = rows


def _settle_orphans(session: Session, lake: Lake, resource: Resource, *, keep: int | None) -> None:
    """Finish loads that died after their Delta commit; fail those that died before it."""
    running = list(
        session.scalars(
            select(Version).where(
                Version.resource_id == resource.id, Version.state == LoadState.RUNNING
            )
        )
    )
    if not running:
        return
    uri = lake.table_uri(resource.code)
    table = DeltaTable(uri) if DeltaTable.is_deltatable(uri) else None
    for version in running:
        found = _committed_version(table, version.id) if table is not None else None
        if found is not None:
            _adopt(session, lake, resource, version, table, found)  # type: ignore[arg-type]
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


def _adopt(
    session: Session,
    lake: Lake,
    resource: Resource,
    version: Version,
    table: DeltaTable,
    found: int,
) -> None:
    entry = next(e for e in table.history(100) if int(e["version"]) == found)
    version.state = LoadState.COMMITTED
    version.lake_version = found
    version.rows_read = int(entry.get("minyun.rows_read", 0))
    version.rows_accepted = int(entry.get("minyun.rows_accepted", 0))
    version.rows_rejected = int(entry.get("minyun.rows_rejected", 0))
    version.sha256 = entry.get("minyun.source_sha256") or version.sha256
    version.watermark = entry.get("minyun.watermark") or None
    version.committed_at = clock.now()
    if resource.lake_version is None or found > resource.lake_version:
        resource.lake_version = found
        resource.row_count = _row_count(lake, resource.code, found)
        submit_refresh(session, resource.code, found, lake_uri=lake.uri)
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
        }
        for v in versions
    ]


def lineage(session: Session, actor: Principal, code: str) -> list[dict[str, Any]]:
    """The loads of a resource with their lineage and quality (as the reader's plan shows it)."""
    found = list_versions(session, actor, code)
    resource = catalog.get_resource(session, code)
    out = versions_json(found)
    for row, version in zip(out, found, strict=True):
        row["quality"] = catalog.planned_quality_doc(session, actor, resource, version.quality)
    return out


def rejects_json(table: pa.Table) -> list[dict[str, Any]]:
    """Rejected rows as plain JSON, the raw record parsed back."""
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        row["record"] = json.loads(row["record"]) if row["record"] else None
    return rows
