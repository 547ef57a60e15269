"""The home page: each role's next step on its dashboard, and the public landing page.

A dashboard is cards named in order; each card's figures are real counts from the domain
services, read with the viewer's own rights. A card whose work a later issue brings (sharing
applications, grants, online services) says so instead of showing a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.accounts.models import AccountKind, User
from minyun.admin import service as admin
from minyun.apps.ecocloud import response as eco
from minyun.apps.ecocloud import views as air
from minyun.apps.ecocloud.aqi import LEVELS
from minyun.apps.ecocloud.models import AlertState
from minyun.catalog import service as catalog
from minyun.catalog.models import Resource, ResourceStatus, SharingType, UpdateCycle
from minyun.core import audit, clock, jobs
from minyun.core.audit import AuditRecord
from minyun.core.security import Principal, Role, decide
from minyun.exchange import service as exchange
from minyun.ingest.models import LoadState, Version
from minyun.opendata import service as opendata
from minyun.orgs.models import Division, Organization

HOME_JOBS = 5
HOME_AUDIT = 8
HOME_ALERTS = 3
# How long after its last load a resource is still fresh, by its declared update cycle; a
# day's grace on top, so a daily load that runs late is not called overdue at once.
CYCLE = {
    UpdateCycle.REALTIME: timedelta(hours=1),
    UpdateCycle.HOURLY: timedelta(hours=1),
    UpdateCycle.DAILY: timedelta(days=1),
    UpdateCycle.WEEKLY: timedelta(days=7),
    UpdateCycle.MONTHLY: timedelta(days=31),
    UpdateCycle.QUARTERLY: timedelta(days=92),
    UpdateCycle.YEARLY: timedelta(days=366),
}
GRACE = timedelta(days=1)
# Readings older than this are not called today's air (as the eco-cloud's pages say).
CURRENT_AIR = timedelta(hours=3)


@dataclass(frozen=True)
class ResourceStatusRow:
    """One of the steward's resources: where it stands and what its last load left."""

    code: str
    name: str
    status: str
    update_cycle: str
    last_load: datetime | None
    last_state: str | None  # the newest load's state, committed or not
    rows: int | None
    rejected: int  # rows the newest committed load refused
    version_id: int | None  # that load, whose rejects page lists them
    freshness: str  # fresh, overdue, never (no committed load), unscheduled (irregular)


@dataclass(frozen=True)
class DepartmentData:
    """The steward's department: its resources and the jobs of its that failed."""

    resources: list[ResourceStatusRow]
    failed_jobs: list[admin.JobView]
    failed_total: int

    @property
    def overdue(self) -> int:
        return sum(1 for r in self.resources if r.freshness in ("overdue", "never"))

    @property
    def rejected(self) -> int:
        return sum(1 for r in self.resources if r.rejected)


@dataclass(frozen=True)
class AuditSummary:
    """The last day of the audit log in figures, and its newest records (reads left out)."""

    last_day: int
    denied: int
    failed: int
    records: list[admin.AuditRow]


@dataclass(frozen=True)
class Dashboard:
    """What the home page shows a signed-in user; `cards` names the cards in order."""

    user: User
    organization: Organization | None
    cards: list[str]
    organizations: int = 0
    divisions: int = 0
    department: DepartmentData | None = None
    jobs: list[admin.JobView] = field(default_factory=list)
    audit: AuditSummary | None = None
    provided: int = 0  # resources the viewer's department provides (published)
    conditional: int = 0  # of those, shared on conditions: what applications will be about
    shareable: int = 0  # resources in the catalog other departments may share
    open_datasets: int = 0  # the open data portal's datasets
    inbox: int = 0  # sharing applications awaiting the approver's decision
    held: int = 0  # active data grants of the consumer's department
    alerts: list[Any] = field(default_factory=list)  # open pollution alerts routed here
    alerts_open: int = 0
    air: list[CityAir] = field(default_factory=list)


@dataclass(frozen=True)
class CityAir:
    """One city's AQI of the latest hour, with its level's colour and name (HJ 633)."""

    city: str
    aqi: int | None
    colour: str
    category: str | None
    hour: datetime
    stale: bool  # too old to be called today's air


def city_air(session: Session) -> list[CityAir]:
    """The cities' AQI of the latest hour, cleanest first: public data."""
    return [
        CityAir(
            city=c.city,
            aqi=c.aqi,
            colour=air.colour_of(c.level),
            category=LEVELS[c.level - 1].category if c.level else None,
            hour=c.hour,
            stale=clock.now() - c.hour > CURRENT_AIR,
        )
        for c in air.public_city_aqi(session)
    ]


@dataclass(frozen=True)
class Landing:
    """The public landing page: today's air in the cities and the open catalog."""

    air: list[CityAir]
    open_datasets: int  # the open data portal's datasets


def landing(session: Session, actor: Principal) -> Landing:
    """What an anonymous visitor is led to: the public air page and the open data catalog."""
    return Landing(air=city_air(session), open_datasets=opendata.count_listed(session))


def home(session: Session, actor: Principal) -> Dashboard | None:
    """The signed-in user's cards by role (None for anonymous visitors: the public landing).

    The role's own work comes first (the steward's department, open alerts, applications,
    grants), then the directory, jobs and the audit log.
    """
    if actor.user_id is None:
        return None
    user = session.get(User, actor.user_id)
    if user is None:
        return None
    org = session.get(Organization, user.organization_id) if user.organization_id else None
    if user.kind != AccountKind.STAFF:
        return Dashboard(
            user=user, organization=org, cards=["account", "services"],
            open_datasets=opendata.count_listed(session), air=city_air(session),
        )  # fmt: skip
    cards: list[str] = ["account"]
    board: dict[str, Any] = {}
    if actor.has_role(Role.STEWARD) and org is not None:
        cards.insert(0, "department")
        board["department"] = department(session, actor, org)
    if org is not None and decide(session, actor, "eco.respond").allowed:
        inbox = [a for a in eco.list_alerts(session, actor) if a.state != AlertState.CLOSED]
        if inbox or actor.has_role(Role.OPERATOR):
            cards.append("alerts")
            board.update(alerts=inbox[:HOME_ALERTS], alerts_open=len(inbox))
    if actor.has_role(Role.APPROVER):
        cards.append("approvals")
        board.update(_provided(session, actor, org))
        board["inbox"] = exchange.inbox_count(session, actor)
    if actor.has_role(Role.CONSUMER):
        cards.append("grants")
        board["shareable"] = _shareable(session, actor)
        board["held"] = exchange.active_count(session, actor)
    cards.append("directory")
    board.update(_directory(session))
    if decide(session, actor, "jobs.submit").allowed:
        cards.append("jobs")
        recent = admin.read_jobs(session, actor, limit=HOME_JOBS)
        board["jobs"] = admin.describe_jobs(session, recent)
    if decide(session, actor, "audit.read").allowed:
        cards.append("audit")
        board["audit"] = audit_summary(session, actor)
    return Dashboard(user=user, organization=org, cards=cards, **board)


def _shareable(session: Session, actor: Principal) -> int:
    """Published resources other departments may share (unconditionally or on conditions)."""
    return sum(
        catalog.count_resources(
            session, actor, catalog.Filters(status="published", sharing_type=kind)
        )
        for kind in (SharingType.UNCONDITIONAL, SharingType.CONDITIONAL)
    )


def _directory(session: Session) -> dict[str, int]:
    """How many organisations, in how many administrative divisions."""
    return {
        "organizations": int(session.scalar(select(func.count()).select_from(Organization)) or 0),
        "divisions": int(session.scalar(select(func.count()).select_from(Division)) or 0),
    }


def _provided(session: Session, actor: Principal, org: Organization | None) -> dict[str, int]:
    """The approver's department's published resources, and those shared on conditions."""
    if org is None:
        return {"provided": 0, "conditional": 0}
    published = catalog.Filters(provider=org.code, status="published")
    conditional = replace(published, sharing_type=SharingType.CONDITIONAL)
    return {
        "provided": catalog.count_resources(session, actor, published),
        "conditional": catalog.count_resources(session, actor, conditional),
    }


def department(session: Session, actor: Principal, org: Organization) -> DepartmentData:
    """The steward's own resources with freshness, last load and rejects, and failed jobs."""
    resources = catalog.list_resources(
        session, actor, catalog.Filters(provider=org.code), limit=200
    )
    resources.sort(key=lambda r: (r.status == ResourceStatus.RETIRED, r.name))
    newest: dict[int, Version] = {}
    committed: dict[int, Version] = {}
    if resources:
        versions = session.scalars(
            select(Version)
            .where(Version.resource_id.in_([r.id for r in resources]))
            .order_by(Version.id.desc())
        )
        for v in versions:
            newest.setdefault(v.resource_id, v)
            if v.state == LoadState.COMMITTED:
                committed.setdefault(v.resource_id, v)
    now = clock.now()
    rows = [_status_row(r, newest.get(r.id), committed.get(r.id), now) for r in resources]
    failed = jobs.list_jobs(
        session, limit=HOME_JOBS, state=jobs.JobState.FAILED,
        organization_id=org.id, everyone=False,
    )  # fmt: skip
    total = int(
        session.scalar(
            select(func.count())
            .select_from(jobs.Job)
            .where(jobs.Job.state == jobs.JobState.FAILED, jobs.Job.organization_id == org.id)
        )
        or 0
    )
    return DepartmentData(rows, admin.describe_jobs(session, failed), total)


def _status_row(
    resource: Resource, newest: Version | None, committed: Version | None, now: datetime
) -> ResourceStatusRow:
    last = committed.committed_at if committed is not None else None
    cycle = CYCLE.get(UpdateCycle(resource.update_cycle)) if resource.update_cycle else None
    if resource.status == ResourceStatus.RETIRED:
        freshness = "retired"
    elif last is None:
        freshness = "never"
    elif cycle is None:
        freshness = "unscheduled"
    else:
        freshness = "fresh" if now - last <= cycle + GRACE else "overdue"
    return ResourceStatusRow(
        code=resource.code,
        name=resource.name,
        status=resource.status,
        update_cycle=resource.update_cycle,
        last_load=last,
        last_state=newest.state if newest is not None else None,
        rows=resource.row_count,
        rejected=committed.rows_rejected if committed is not None else 0,
        version_id=committed.id if committed is not None else None,
        freshness=freshness,
    )


def audit_summary(session: Session, actor: Principal) -> AuditSummary:
    """The last day's records, denials and failures, and the newest records but reads."""
    records = admin.read_audit(session, actor, limit=HOME_AUDIT, filters=admin.AuditFilters())
    since = clock.now() - timedelta(days=1)
    counts = dict(
        session.execute(
            select(AuditRecord.outcome, func.count())
            .where(AuditRecord.at >= since)
            .group_by(AuditRecord.outcome)
        ).all()
    )
    return AuditSummary(
        last_day=int(sum(counts.values())),
        denied=int(counts.get(audit.Outcome.DENIED, 0)),
        failed=int(counts.get(audit.Outcome.FAILED, 0)),
        records=admin.describe_audit(session, records),
    )
