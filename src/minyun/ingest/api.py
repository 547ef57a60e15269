"""HTTP for loads: upload a file into a resource, list its versions, read its rejects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from minyun.core.errors import Invalid
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
    # Authorise and check the options before the file is written: a refused upload
    # leaves nothing on disk.
    service.check_can_load(session, actor, code, mode=mode, encoding=encoding, watermark=watermark)
    if not file.filename:
        raise Invalid("the upload needs a file name", field="file")
    path, _, _ = service.save_upload(file.file, platform.settings)
    job = service.submit_load(
        session, actor, code, str(path), mode=mode, encoding=encoding, watermark=watermark,
        filename=file.filename, settings=platform.settings,
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
) -> list[dict[str, Any]]:
    """The rows a load refused (`version` = load id; default the newest load with any)."""
    table = service.read_rejects(
        session, platform.lake, actor, code, version=version, limit=min(max(limit, 1), 100_000)
    )
    return service.rejects_json(table)
