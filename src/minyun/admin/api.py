"""Audit log and jobs API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from minyun.admin import service
from minyun.admin.schemas import AuditRecordRead, FindingRead, JobRead, VerifyRead
from minyun.web.deps import INT64_MAX, ActorDep, PlatformDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["audit and jobs"])


@router.get("/audit", response_model=list[AuditRecordRead])
def audit_records(
    session: SessionDep,
    actor: ActorDep,
    before: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    action: str | None = None,
    actor_label: str | None = None,
) -> list[AuditRecordRead]:
    """Audit records, newest first; page with `before` = the smallest seq you have."""
    records = service.read_audit(
        session, actor, before=before, limit=limit, action=action, who=actor_label
    )
    return [AuditRecordRead.model_validate(r) for r in records]


@router.post("/audit/verify", response_model=VerifyRead)
def audit_verify(session: SessionDep, actor: ActorDep, platform: PlatformDep) -> VerifyRead:
    """Verify the whole hash chain and its signed checkpoints."""
    report = service.verify_audit(session, actor, platform.node_key)
    finding = report.first_problem
    return VerifyRead(
        ok=report.ok,
        records=report.records,
        checkpoints=report.checkpoints,
        first_problem=FindingRead(problem=finding.problem, seq=finding.seq, detail=finding.detail)
        if finding
        else None,
    )


@router.get("/jobs", response_model=list[JobRead])
def jobs(
    session: SessionDep, actor: ActorDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[JobRead]:
    """Recent jobs, newest first."""
    return [JobRead.model_validate(j) for j in service.read_jobs(session, actor, limit=limit)]


@router.get("/jobs/{job_id}", response_model=JobRead)
def job(job_id: str, session: SessionDep, actor: ActorDep) -> JobRead:
    """One job with its progress."""
    return JobRead.model_validate(service.read_job(session, actor, job_id))
