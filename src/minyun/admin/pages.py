"""Operator pages: the audit log with chain verification, and jobs with live progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from minyun.admin import service
from minyun.web.deps import INT64_MAX, CsrfDep, PlatformDep, SessionDep
from minyun.web.templating import PageActorDep, is_htmx, render

router = APIRouter(include_in_schema=False)
AUDIT_PAGE = 50


@router.get("/audit")
def audit_log(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    before: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """Audit records, newest first, 50 a page; older pages by `before`, filtered by action."""
    action = (action or "").strip() or None
    records = service.read_audit(session, actor, before=before, limit=AUDIT_PAGE, action=action)
    older = records[-1].seq if len(records) == AUDIT_PAGE else None
    return render(
        request, "admin/audit.html", records=records, before=before, action=action, older=older
    )


@router.post("/audit/verify", dependencies=[CsrfDep])
def audit_verify(
    request: Request, session: SessionDep, actor: PageActorDep, platform: PlatformDep
) -> HTMLResponse:
    """Walk the hash chain and show the report."""
    report = service.verify_audit(session, actor, platform.node_key)
    template = "admin/_verify.html" if is_htmx(request) else "admin/verify.html"
    return render(request, template, report=report)


@router.get("/jobs")
def job_list(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """Recent jobs with their state and progress."""
    return render(request, "admin/jobs.html", jobs=service.read_jobs(session, actor, limit=50))


@router.get("/jobs/{job_id}")
def job_page(
    request: Request, job_id: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """One job; while it runs the progress part refreshes itself every second."""
    return render(request, "admin/job.html", job=service.read_job(session, actor, job_id))


@router.get("/jobs/{job_id}/progress")
def job_progress(
    request: Request, job_id: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """The progress part of a job page (htmx polls it)."""
    return render(request, "admin/_job_progress.html", job=service.read_job(session, actor, job_id))
