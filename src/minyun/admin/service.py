"""The operator's view: reading, exporting and verifying the audit log, watching jobs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session, sessionmaker

from minyun.accounts.models import ApiClient, User
from minyun.catalog.models import Resource
from minyun.core import audit, jobs
from minyun.core.audit import AuditRecord
from minyun.core.errors import NotFound
from minyun.core.keys import NodeKey
from minyun.core.security import Principal, Role, authorize

# The audit viewer's own reads: one record per query or export, hidden from the list unless
# asked for, so reading the log does not bury what it is read for.
AUDIT_READ = "audit.read"
AUDIT_EXPORT = "audit.export"
EXPORT_BATCH = 1000


@dataclass(frozen=True)
class AuditFilters:
    """What the audit log is narrowed to; None means any.

    `actor` is a label (`user:steward`) or a bare username; `action` is exact, or a prefix
    when it ends with `.*` (`resource.*`); `target` matches an object's id or its type;
    `since` / `until` bound the time (until excluded). The viewer's own reads (successful
    `audit.read`) are left out unless `include_reads`, or unless `action` asks for them.
    """

    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_reads: bool = False

    def where(self) -> list[ColumnElement[bool]]:
        """The filters as SQL conditions."""
        conditions: list[ColumnElement[bool]] = []
        if self.actor:
            labels = [self.actor] if ":" in self.actor else [self.actor, f"user:{self.actor}"]
            conditions.append(AuditRecord.actor.in_(labels))
        if self.action and self.action.endswith(".*"):
            conditions.append(AuditRecord.action.startswith(self.action[:-1], autoescape=True))
        elif self.action:
            conditions.append(AuditRecord.action == self.action)
        if not self.include_reads and self.action != AUDIT_READ:
            # The viewer's own reads go; a refused attempt to read the log stays in view.
            conditions.append(
                or_(AuditRecord.action != AUDIT_READ, AuditRecord.outcome != audit.Outcome.SUCCESS)
            )
        if self.outcome:
            conditions.append(AuditRecord.outcome == self.outcome)
        if self.target:
            conditions.append(
                or_(AuditRecord.object_id == self.target, AuditRecord.object_type == self.target)
            )
        if self.since is not None:
            conditions.append(AuditRecord.at >= self.since)
        if self.until is not None:
            conditions.append(AuditRecord.at < self.until)
        return conditions

    def describe(self) -> str:
        """The filters as the audit record of a query notes them."""
        shown = {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in dataclasses.asdict(self).items()
            if v not in (None, False, "")
        }
        return json.dumps(shown, ensure_ascii=False, sort_keys=True)


def read_audit(
    session: Session,
    actor: Principal,
    *,
    before: int | None = None,
    limit: int = 50,
    action: str | None = None,
    who: str | None = None,
    filters: AuditFilters | None = None,
) -> list[AuditRecord]:
    """Audit records, newest first, for auditors; each query is itself one audit record."""
    authorize(session, actor, AUDIT_READ, target_type="audit")
    if filters is None:
        filters = AuditFilters(actor=who, action=action, include_reads=True)
    query = (
        select(AuditRecord)
        .where(*filters.where())
        .order_by(AuditRecord.seq.desc())
        .limit(min(max(limit, 1), 500))
    )
    if before is not None:
        query = query.where(AuditRecord.seq < before)
    records = list(session.scalars(query))
    audit.record_read(
        session, actor, AUDIT_READ, target_type="audit", count=len(records),
        detail=filters.describe() if filters != AuditFilters() else None,
    )  # fmt: skip
    return records


def export_audit(session: Session, actor: Principal, filters: AuditFilters) -> AuditFilters:
    """Authorise an export of the records `filters` selects and audit it once, before any
    record leaves; the caller streams them with `iter_audit`."""
    authorize(session, actor, AUDIT_READ, target_type="audit")
    audit.record_read(session, actor, AUDIT_EXPORT, target_type="audit", detail=filters.describe())
    return filters


def iter_audit(
    factory: sessionmaker[Session], filters: AuditFilters, *, below: int | None = None
) -> Iterator[list[AuditRow]]:
    """The records `filters` selects, newest first, in batches read one short transaction at
    a time (an export of the whole log never holds one open). Call after `export_audit`."""
    while True:
        with factory() as session:
            query = (
                select(AuditRecord)
                .where(*filters.where())
                .order_by(AuditRecord.seq.desc())
                .limit(EXPORT_BATCH)
            )
            if below is not None:
                query = query.where(AuditRecord.seq < below)
            batch = list(session.scalars(query))
            if not batch:
                return
            rows = describe_audit(session, batch)
        yield rows
        below = batch[-1].seq


def audit_actions(session: Session, actor: Principal, *, recent: int = 20_000) -> list[str]:
    """The actions of the newest `recent` records, for the viewer's filter (a bounded scan:
    the log grows without end; the pages add the actions they know by name)."""
    authorize(session, actor, AUDIT_READ, target_type="audit")
    newest = select(AuditRecord.action).order_by(AuditRecord.seq.desc()).limit(recent).subquery()
    return list(session.scalars(select(newest.c.action).distinct().order_by(newest.c.action)))


@dataclass(frozen=True)
class AuditRow:
    """An audit record with the name of who acted, as the viewer and the export show it."""

    record: AuditRecord
    actor_name: str | None
    on_behalf_name: str | None = None


def describe_audit(session: Session, records: list[AuditRecord]) -> list[AuditRow]:
    """The records with their actors' display names (users and API clients)."""
    names = actor_names(
        session, {r.actor for r in records} | {r.on_behalf_of or "" for r in records}
    )
    return [AuditRow(r, names.get(r.actor), names.get(r.on_behalf_of or "")) for r in records]


def actor_names(session: Session, labels: set[str]) -> dict[str, str]:
    """Display names of principal labels: `user:NAME` users, `client:ID` API clients."""
    users = {label[5:] for label in labels if label.startswith("user:")}
    clients = {label[7:] for label in labels if label.startswith("client:")}
    names: dict[str, str] = {}
    if users:
        for username, display in session.execute(
            select(User.username, User.display_name).where(User.username.in_(users))
        ):
            names[f"user:{username}"] = display
    if clients:
        for client_id, name in session.execute(
            select(ApiClient.client_id, ApiClient.name).where(ApiClient.client_id.in_(clients))
        ):
            names[f"client:{client_id}"] = name
    return names


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


@dataclass(frozen=True)
class JobView:
    """A job as the pages show it: the resource it works on and who asked for it."""

    job: jobs.Job
    resource_code: str | None
    resource_name: str | None
    requester: str | None  # the display name of the user or client that asked


def describe_jobs(session: Session, found: list[jobs.Job]) -> list[JobView]:
    """The jobs with the names of their resources and of the people who asked."""
    codes = {
        str(j.params["code"]) for j in found if isinstance(j.params, dict) and j.params.get("code")
    }
    resources: dict[str, str] = {}
    if codes:
        resources = dict(
            session.execute(
                select(Resource.code, Resource.name).where(Resource.code.in_(codes))
            ).all()
        )
    names = actor_names(session, {j.created_by for j in found})
    views = []
    for j in found:
        code = j.params.get("code") if isinstance(j.params, dict) else None
        views.append(
            JobView(
                job=j,
                resource_code=str(code) if code else None,
                resource_name=resources.get(str(code)) if code else None,
                requester=names.get(j.created_by),
            )
        )
    return views
