"""HTTP for loads: upload a file into a resource, list its versions, read its rejects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from minyun.ingest import service, sources
from minyun.ingest.models import LoadMode
from minyun.web.deps import INT32_MAX, ActorDep, PlatformDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["loads"])


@router.post("/resources/{code}/loads", status_code=202)
def upload_load(
    code: str,
    request: Request,
    session: SessionDep,
    actor: ActorDep,
    platform: PlatformDep,
    file: UploadFile = File(...),
    mode: LoadMode = Form(LoadMode.FULL),
    encoding: str | None = Form(None),
    watermark: str | None = Form(None),
) -> dict[str, Any]:
    """Upload a file (multipart, size-limited) and queue its load; returns the job."""
    limit = platform.settings.upload_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise sources.SourceError(
            f"the upload is larger than the limit of {limit:,} bytes", code="too-large"
        )
    job = service.upload_load(
        session, actor, code, file.file, filename=file.filename, mode=mode, encoding=encoding,
        watermark=watermark, settings=platform.settings,
    )  # fmt: skip
    return {"job": job.id, "state": job.state, "kind": job.kind}


@router.get("/resources/{code}/versions")
def versions(code: str, session: SessionDep, actor: ActorDep) -> list[dict[str, Any]]:
    """The loads of a resource with their lineage and quality, newest first."""
    return service.lineage(session, actor, code)


@router.get("/resources/{code}/rejects")
def rejects(
    code: str,
    session: SessionDep,
    actor: ActorDep,
    platform: PlatformDep,
    version: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    reason: Annotated[str | None, Query(max_length=200, description="only this reason")] = None,
) -> list[dict[str, Any]]:
    """The rows a load refused (`version` = load id; default the newest load with any)."""
    table = service.read_rejects(
        session, platform.lake, actor, code, version=version, limit=min(max(limit, 1), 100_000),
        reason=reason or None,
    )  # fmt: skip
    return service.rejects_json(table)


@router.post("/samples/schema")
def sample_schema(
    session: SessionDep,
    actor: ActorDep,
    platform: PlatformDep,
    file: UploadFile = File(...),
    encoding: str | None = Form(None),
) -> dict[str, Any]:
    """A Table Schema proposed from a sample file (CSV, XLSX, JSON lines, Parquet): types,
    required, formats such as `cn-ric` and a primary key, to edit before `POST /resources`."""
    sample = service.infer_sample(
        session, actor, file.file, filename=file.filename, encoding=encoding or None,
        settings=platform.settings,
    )  # fmt: skip
    return {"schema": sample.descriptor, "rows": sample.rows}
