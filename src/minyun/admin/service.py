"""The operator's view: reading and verifying the audit log, watching jobs, the home page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.accounts.models import AccountKind, User
from minyun.core import audit, jobs
from minyun.core.audit import AuditRecord
from minyun.core.errors import NotFound
from minyun.core.keys import NodeKey
from minyun.core.security import Principal, Role, authorize, decide
from minyun.orgs.models import Division, Organization


def read_audit(
    session: Session,
    actor: Principal,
    *,
    before: int | None = None,
    limit: int = 50,
    action: str | None = None,
    who: str | None = None,
) -> list[AuditRecord]:
    """Audit records, newest first, for auditors; reading the log is itself audited."""
    authorize(session, actor, "audit.read", target_type="audit")
    query = select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(min(max(limit, 1), 500))
    if before is not None:
        query = query.where(AuditRecord.seq < before)
    if action:
        query = query.where(AuditRecord.action == action)
    if who:
        query = query.where(AuditRecord.actor == who)
    records = list(session.scalars(query))
    audit.record_read(session, actor, "audit.read", target_type="audit", count=len(records))
    return records


def verify_audit(session: Session, actor: Principal, key: NodeKey) -> audit.VerifyReport:
    """Walk the whole chain (auditors)."""
    authorize(session, actor, "audit.verify", target_type="audit")
    report = audit.verify(session, key)
    audit.record(
        session,
        actor,
        "audit.verify",
        target_type="audit",
        count=report.records,
        outcome=audit.Outcome.SUCCESS if report.ok else audit.Outcome.FAILED,
        detail=None if report.ok else str(report.first_problem),
    )
    return report


def _sees_every_job(actor: Principal) -> bool:
    return actor.kind == "system" or actor.has_role(Role.ADMIN)


def read_jobs(session: Session, actor: Principal, *, limit: int = 50) -> list[jobs.Job]:
    """Recent jobs: an admin's all of them, a steward's or auditor's their department's."""
    authorize(session, actor, "jobs.read", target_type="job")
    return jobs.list_jobs(
        session,
        limit=limit,
        organization_id=actor.organization_id,
        everyone=_sees_every_job(actor),
    )


def read_job(session: Session, actor: Principal, job_id: str) -> jobs.Job:
    """One job with its progress (NotFound for another department's job)."""
    authorize(session, actor, "jobs.read", target=job_id, target_type="job")
    job = jobs.find_job(session, job_id)
    if not _sees_every_job(actor) and not (
        job.organization_id is not None and job.organization_id == actor.organization_id
    ):
        raise NotFound(f"no job {job_id}")
    return job


def cancel_job(session: Session, actor: Principal, job_id: str) -> jobs.Job:
    """Cancel a job of one's department (admins: any); audited. A queued job never runs; a
    running one stops at its next progress report or heartbeat."""
    authorize(session, actor, "jobs.submit", target=job_id, target_type="job")
    job = read_job(session, actor, job_id)
    return jobs.cancel(session, actor, job)


# --- the home page ---------------------------------------------------------------------

HOME_JOBS = 5
HOME_AUDIT = 8


@dataclass(frozen=True)
class Dashboard:
    """What the home page shows a signed-in user; `cards` names the cards in order."""

    user: User
    organization: Organization | None
    cards: list[str]
    organizations: int = 0
    divisions: int = 0
    jobs: list[jobs.Job] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)


def home(session: Session, actor: Principal) -> Dashboard | None:
    """The signed-in user's cards by role (None for anonymous visitors: the public landing)."""
    if actor.user_id is None:
        return None
    user = session.get(User, actor.user_id)
    if user is None:
        return None
    org = session.get(Organization, user.organization_id) if user.organization_id else None
    cards = ["account"]
    board: dict[str, Any] = {}
    if user.kind != AccountKind.STAFF:
        cards.append("services")
    else:
        cards.append("directory")
        board["organizations"] = int(
            session.scalar(select(func.count()).select_from(Organization)) or 0
        )
        board["divisions"] = int(session.scalar(select(func.count()).select_from(Division)) or 0)
    if actor.has_role(Role.APPROVER):
        cards.append("approvals")
    if actor.has_role(Role.CONSUMER):
        cards.append("grants")
    if decide(session, actor, "jobs.submit").allowed:
        cards.append("jobs")
        board["jobs"] = read_jobs(session, actor, limit=HOME_JOBS)
    if decide(session, actor, "audit.read").allowed:
        cards.append("audit")
        board["audit"] = read_audit(session, actor, limit=HOME_AUDIT)
    return Dashboard(user=user, organization=org, cards=cards, **board)
