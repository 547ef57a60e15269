"""Applications for conditionally open datasets (开放申请): a developer applies, the publisher decides.

A conditionally open (有条件开放) dataset is listed and described to everyone, but its rows
are read only with an approved application. Any signed-in account applies for one dataset
with a purpose; an approver of the publishing department approves it (for a term) or
rejects it with a reason, which the applicant sees. While approved, the account — in the
portal, and through every API key of it — reads the dataset through the access plan: the
policy `application_verdict` (registered on `core.policies.GRANTS`, as the sharing grants
are) opens the released views of the datasets the account was approved for, at clearance
public, so the release check's dropped and aggregated fields stay out of reach. The read
itself checks that the approval names its dataset (`service.read_plan`).

The sharing applications of `minyun.exchange` are a department's, for a resource, with a
legal basis and fields; these are a person's, for a released view, with a purpose: the same
workflow (submitted → approved / rejected / withdrawn, audited at each step), its own table.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from minyun.catalog.models import OpenType, ResourceStatus
from minyun.core import audit, clock, policies
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from minyun.core.policies import DataResource, OpenRelease, Verdict
from minyun.core.security import Principal, Role, authorize
from minyun.opendata import service
from minyun.opendata.models import ApplicationStatus, DatasetState, OpenApplication, OpenDataset

POLICY = service.APPLICATION_POLICY
PURPOSE_MIN = 5
PURPOSE_MAX = 2000
TERM_DAYS = 365
MAX_TERM_DAYS = 3 * 366


def _applicant(actor: Principal) -> int:
    if actor.kind != "user" or actor.user_id is None:
        raise Unauthenticated("sign in to apply for a conditionally open dataset")
    return actor.user_id


def _refuse(actor: Principal, action: str, target: str, reason: str) -> Forbidden:
    error = Forbidden(reason)
    error.audit = audit.Pending(
        actor=actor, action=action, target=target, target_type="open-application",
        outcome=audit.Outcome.DENIED, detail=reason,
    )  # fmt: skip
    return error


def _record(session: Session, actor: Principal, action: str, app: OpenApplication,
            **extra: Any) -> None:  # fmt: skip
    detail = {"dataset": app.dataset.name, "applicant": app.applicant, **extra}
    audit.record(
        session, actor, action, target=str(app.id), target_type="open-application",
        purpose=app.purpose,
        detail=json.dumps({k: v for k, v in detail.items() if v is not None}, ensure_ascii=False,
                          sort_keys=True),
    )  # fmt: skip


def apply(session: Session, actor: Principal, ident: str, *, purpose: str) -> OpenApplication:
    """Apply for a conditionally open dataset with a purpose (signed-in accounts)."""
    user_id = _applicant(actor)
    dataset = service.access_dataset(session, actor, ident)
    if dataset.resource.open_type != OpenType.CONDITIONAL:
        raise Invalid(f"{dataset.name} is open to everyone: no application needed",
                      field="dataset", code="not-conditional")  # fmt: skip
    text = " ".join((purpose or "").split())
    if not PURPOSE_MIN <= len(text) <= PURPOSE_MAX:
        raise Invalid(f"purpose: {PURPOSE_MIN} to {PURPOSE_MAX} characters", field="purpose")
    standing = session.scalars(
        select(OpenApplication).where(
            OpenApplication.dataset_id == dataset.id, OpenApplication.user_id == user_id,
            OpenApplication.status.in_([ApplicationStatus.SUBMITTED, ApplicationStatus.APPROVED]),
        )
    ).all()  # fmt: skip
    for earlier in standing:
        if earlier.status == ApplicationStatus.SUBMITTED or _in_force(earlier):
            raise Conflict(f"application {earlier.id} for {dataset.name} is {earlier.status}",
                           code="already-applied")  # fmt: skip
    app = OpenApplication(dataset=dataset, user_id=user_id, applicant=actor.label, purpose=text,
                          status=ApplicationStatus.SUBMITTED)  # fmt: skip
    session.add(app)
    session.flush()
    _record(session, actor, "opendata.apply", app)
    return app


def _in_force(app: OpenApplication) -> bool:
    return app.status == ApplicationStatus.APPROVED and (
        app.expires_at is None or app.expires_at > clock.now()
    )


def access_application(session: Session, actor: Principal, application_id: int) -> OpenApplication:
    """The application if the actor applied or works for its publisher; one NotFound else."""
    found = session.get(OpenApplication, application_id)
    if found is not None and (
        (actor.kind == "user" and found.user_id == actor.user_id)
        or actor.organization_id == found.dataset.publisher_id
    ):
        return found
    # Same error for missing and not yours: don't reveal who applied for what.
    raise NotFound(f"no application {application_id}")


def _decides(actor: Principal, app: OpenApplication) -> bool:
    return actor.organization_id == app.dataset.publisher_id and actor.has_role(Role.APPROVER)


def _pending(
    session: Session, actor: Principal, application_id: int, action: str
) -> OpenApplication:
    app = access_application(session, actor, application_id)
    authorize(session, actor, "exchange.approve", target=str(application_id),
              target_type="open-application", provider_id=app.dataset.publisher_id)  # fmt: skip
    if not _decides(actor, app):
        raise _refuse(actor, action, str(application_id), "only the publisher's approvers decide")
    if app.status != ApplicationStatus.SUBMITTED:
        raise Conflict(f"application {application_id} is {app.status}", code="decided")
    return app


def _decide(app: OpenApplication, actor: Principal, status: str, reason: str | None) -> None:
    app.status = status
    app.decision_reason = reason
    app.decided_by = actor.label
    app.decided_at = clock.now()


def approve(
    session: Session, actor: Principal, application_id: int, *, reason: str | None = None,
    days: int = TERM_DAYS,
) -> OpenApplication:  # fmt: skip
    """Approve a submitted application for `days`; the applicant's keys read the dataset then."""
    app = _pending(session, actor, application_id, "opendata.approve")
    if not 1 <= days <= MAX_TERM_DAYS:
        raise Invalid(f"an approval lasts 1 to {MAX_TERM_DAYS} days", field="days")
    _decide(app, actor, ApplicationStatus.APPROVED, (reason or "").strip() or None)
    app.expires_at = clock.now() + timedelta(days=days)
    policies.bump_epoch(session)  # cached plans of the applicant are stale
    _record(session, actor, "opendata.approve", app, reason=app.decision_reason,
            expires_at=app.expires_at.isoformat())  # fmt: skip
    return app


def reject(
    session: Session, actor: Principal, application_id: int, *, reason: str
) -> OpenApplication:
    """Reject a submitted application; the reason is required and shown to the applicant."""
    app = _pending(session, actor, application_id, "opendata.reject")
    text = (reason or "").strip()
    if not text:
        raise Invalid("give a reason", field="reason")
    _decide(app, actor, ApplicationStatus.REJECTED, text[:PURPOSE_MAX])
    _record(session, actor, "opendata.reject", app, reason=app.decision_reason)
    return app


def withdraw(session: Session, actor: Principal, application_id: int) -> OpenApplication:
    """The applicant takes back an application (submitted, or approved: the reads stop)."""
    app = access_application(session, actor, application_id)
    if app.user_id != actor.user_id:
        raise _refuse(actor, "opendata.withdraw", str(application_id), "only the applicant")
    if app.status not in (ApplicationStatus.SUBMITTED, ApplicationStatus.APPROVED):
        raise Conflict(f"application {application_id} is {app.status}", code="decided")
    was = app.status
    app.status = ApplicationStatus.WITHDRAWN
    if was == ApplicationStatus.APPROVED:
        policies.bump_epoch(session)
    _record(session, actor, "opendata.withdraw", app, before=was)
    return app


def mine(session: Session, actor: Principal, *, limit: int = 200) -> list[OpenApplication]:
    """The signed-in account's applications, newest first."""
    user_id = _applicant(actor)
    query = (
        select(OpenApplication).where(OpenApplication.user_id == user_id)
        .order_by(OpenApplication.id.desc()).limit(limit)
    )  # fmt: skip
    return list(session.scalars(query).unique())


def inbox(
    session: Session, actor: Principal, *, status: str | None = None, limit: int = 200
) -> list[OpenApplication]:
    """Applications for the approver's department's datasets, waiting ones first."""
    if actor.organization_id is None or not actor.has_role(Role.APPROVER):
        raise _refuse(actor, "opendata.inbox", "open-applications", "approvers only")
    query: Select[Any] = (
        select(OpenApplication)
        .join(OpenDataset, OpenDataset.id == OpenApplication.dataset_id)
        .where(OpenDataset.publisher_id == actor.organization_id)
    )
    if status:
        query = query.where(OpenApplication.status == status)
    waiting = OpenApplication.status != ApplicationStatus.SUBMITTED  # False sorts first
    return list(
        session.scalars(query.order_by(waiting, OpenApplication.id.desc()).limit(limit)).unique()
    )


def waiting_count(session: Session, actor: Principal) -> int:
    """Applications waiting for the approver's decision (0 unless an approver)."""
    if actor.organization_id is None or not actor.has_role(Role.APPROVER):
        return 0
    return int(
        session.scalar(
            select(func.count()).select_from(OpenApplication)
            .join(OpenDataset, OpenDataset.id == OpenApplication.dataset_id)
            .where(OpenDataset.publisher_id == actor.organization_id,
                   OpenApplication.status == ApplicationStatus.SUBMITTED)
        ) or 0
    )  # fmt: skip


# --- the policy ----------------------------------------------------------------------------


def application_verdict(
    session: Session, actor: Principal, action: str, resource: DataResource
) -> Verdict | None:
    """An account's approved, unexpired applications open their datasets' views (public only)."""
    if (
        action != policies.READ
        or actor.kind != "user"
        or actor.user_id is None
        or resource.status != ResourceStatus.PUBLISHED
        or resource.open_type != OpenType.CONDITIONAL
    ):
        return None
    rows = session.execute(
        select(OpenApplication.id, OpenApplication.expires_at, OpenDataset.name,
               OpenDataset.fields, OpenDataset.row_filter, OpenDataset.aggregates)
        .join(OpenDataset, OpenDataset.id == OpenApplication.dataset_id)
        .where(service.approved_for(actor.user_id), OpenDataset.resource_id == resource.id,
               OpenDataset.state == DatasetState.PUBLISHED)
        .order_by(OpenApplication.id)
    ).all()  # fmt: skip
    if not rows:
        return None  # deny by default: none applied for, none approved, or all expired
    release: OpenRelease = service.union_of([(r.name, r.fields, r.row_filter, r.aggregates)
                                             for r in rows])  # fmt: skip
    ids = ",".join(str(r.id) for r in rows)
    return Verdict(
        POLICY, "public", fields=release.fields, row_filter=release.row_filter,
        aggregate=release.aggregate, reason=f"open application {ids}",
        valid_until=min(r.expires_at for r in rows if r.expires_at is not None),
        purpose=service.PURPOSE,
    )  # fmt: skip


if application_verdict not in policies.GRANTS.checks:
    policies.GRANTS.register(application_verdict)
