"""Sharing (共享申请): applications for another department's resource and the grants they give.

A consumer department applies for a published resource with a purpose, a legal basis, the
fields it needs, a row scope (a filter in the query filter language) and an end date. An
unconditionally shared resource is granted at once; a conditional one waits for the
provider's approvers, who approve (possibly fewer fields or narrower rows, never more than
asked), or reject with a reason; a resource that is not shared cannot be applied for.

A `Grant` is a policy of the access plan (`grant_verdict`, registered on
`core.policies.GRANTS`): a reader of the consumer department (a user with a data role, or an
API client with `resource.read`) holding an active, unexpired grant reads the granted fields
and rows, in clear up to the grant's clearance. Every approval, revocation and replacement
moves the plan epoch on, so cached plans are rebuilt on the next call. Every change writes its
audit record in the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource, ResourceStatus, SharingType
from minyun.core import audit, clock, policies
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound
from minyun.core.filters import compile_filter
from minyun.core.policies import DataResource, Verdict
from minyun.core.security import Principal, Role, authorize
from minyun.exchange.models import Application, ApplicationStatus, Grant, GrantStatus
from minyun.orgs.models import Organization

# Users of the consumer department who read through its grants.
DATA_ROLES = frozenset({Role.CONSUMER, Role.STEWARD})
# The clearances an approver may give (the grant's fields above it are masked or dropped).
CLEARANCES = ("public", "internal", "sensitive", "secret")
DEFAULT_CLEARANCE = "internal"
MAX_TERM = timedelta(days=3 * 366)
MAX_RATE_LIMIT = 1_000_000  # calls per minute
TEXT_LIMIT = 2000
_KINDS = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean",
          "date": "date", "datetime": "datetime"}  # fmt: skip


# --- who may -------------------------------------------------------------------------------


def _refuse(actor: Principal, action: str, target: str, reason: str) -> Forbidden:
    error = Forbidden(reason)
    error.audit = audit.Pending(
        actor=actor, action=action, target=target, target_type="application",
        outcome=audit.Outcome.DENIED, detail=reason,
    )  # fmt: skip
    return error


def _is_provider_approver(actor: Principal, provider_id: int) -> bool:
    return actor.organization_id == provider_id and actor.has_role(Role.APPROVER)


def access_application(session: Session, actor: Principal, application_id: int) -> Application:
    """The application if the actor's department applied or provides; one NotFound otherwise."""
    authorize(session, actor, "exchange.read")
    found = session.get(Application, application_id)
    if found is None or not _sees(actor, found.consumer_id, found.resource.provider_id):
        # Same error for missing and not yours: don't reveal another department's requests.
        raise NotFound(f"no application {application_id}")
    return found


def access_grant(session: Session, actor: Principal, grant_id: int) -> Grant:
    """The grant if the actor's department holds or provides it; one NotFound otherwise."""
    authorize(session, actor, "exchange.read")
    found = session.get(Grant, grant_id)
    if found is None or not _sees(actor, found.consumer_id, found.resource.provider_id):
        raise NotFound(f"no grant {grant_id}")
    return found


def _sees(actor: Principal, consumer_id: int, provider_id: int) -> bool:
    if actor.kind == "system" or actor.has_role(Role.ADMIN, Role.AUDITOR):
        return True
    return actor.organization_id in (consumer_id, provider_id)


# --- the request's parts -------------------------------------------------------------------


def _schema_kinds(session: Session, resource: Resource) -> dict[str, str]:
    """Field name → filter kind, in schema order."""
    row = catalog.current_schema(session, resource)
    descriptor: Mapping[str, Any] = row.descriptor if row is not None else {}
    return {
        str(f["name"]): _KINDS.get(str(f.get("type") or "string"), "other")
        for f in descriptor.get("fields") or []
        if isinstance(f, Mapping) and f.get("name")
    }


def _check_fields(kinds: Mapping[str, str], fields: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(f.strip() for f in fields if f.strip()))
    if not wanted:
        raise Invalid("choose at least one field", field="fields")
    unknown = [f for f in wanted if f not in kinds]
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", field="fields")
    return [f for f in kinds if f in wanted]  # schema order


def _check_filter(kinds: Mapping[str, str], text: str | None, *, field: str) -> str | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        compile_filter(text, kinds)  # names and literals checked against the schema
    except Invalid as exc:
        raise Invalid(str(exc), field=field) from None
    return text


def _check_text(value: str | None, *, field: str) -> str:
    text = (value or "").strip()
    if not text:
        raise Invalid(f"{field} is required", field=field)
    if len(text) > TEXT_LIMIT:
        raise Invalid(f"{field} is longer than {TEXT_LIMIT} characters", field=field)
    return text


def _check_expiry(expires_at: datetime) -> datetime:
    now = clock.now()
    if expires_at.tzinfo is None:
        raise Invalid("give the end with its time zone", field="expires_at")
    if expires_at <= now:
        raise Invalid("the end must be in the future", field="expires_at")
    if expires_at > now + MAX_TERM:
        raise Invalid("a grant lasts at most three years", field="expires_at")
    return expires_at


def _narrowed(requested: str | None, extra: str | None) -> str | None:
    """The requested row scope ANDed with the approver's: never wider than asked."""
    if requested and extra:
        return f"({requested}) and ({extra})"
    return requested or extra


# --- changes -------------------------------------------------------------------------------


def apply(
    session: Session,
    actor: Principal,
    *,
    resource: str,
    purpose: str,
    legal_basis: str,
    fields: Sequence[str],
    expires_at: datetime,
    row_filter: str | None = None,
) -> Application:
    """Apply for another department's resource; unconditionally shared ones are granted at once."""
    found = catalog.access_resource(session, actor, resource)
    authorize(session, actor, "exchange.apply", target=resource, target_type="resource")
    if actor.organization_id is None:
        raise _refuse(actor, "exchange.apply", resource, "only a department can apply")
    if found.provider_id == actor.organization_id:
        raise Invalid("your department provides this resource", field="resource")
    if found.status != ResourceStatus.PUBLISHED:
        raise Conflict(f"resource {resource} is not published", code="not-published")
    if found.sharing_type == SharingType.NONE:
        raise Invalid(
            f"resource {resource} is not shared (不予共享); it cannot be applied for",
            field="resource", code="not-shared",
        )  # fmt: skip
    kinds = _schema_kinds(session, found)
    application = Application(
        consumer=session.get(Organization, actor.organization_id),
        resource=found,
        applicant=actor.label,
        purpose=_check_text(purpose, field="purpose"),
        legal_basis=_check_text(legal_basis, field="legal_basis"),
        fields=_check_fields(kinds, fields),
        row_filter=_check_filter(kinds, row_filter, field="row_filter"),
        expires_at=_check_expiry(expires_at),
        status=ApplicationStatus.SUBMITTED,
    )
    session.add(application)
    session.flush()
    _record(session, actor, "exchange.apply", application, fields=application.fields,
            row_filter=application.row_filter, sharing_type=found.sharing_type)  # fmt: skip
    if found.sharing_type == SharingType.UNCONDITIONAL:
        _decide(application, actor, ApplicationStatus.APPROVED, "unconditional sharing")
        _grant(session, actor, application, application.fields, application.row_filter,
               DEFAULT_CLEARANCE)  # fmt: skip
    return application


def approve_application(
    session: Session,
    actor: Principal,
    application_id: int,
    *,
    fields: Sequence[str] | None = None,
    row_filter: str | None = None,
    clearance: str = DEFAULT_CLEARANCE,
    reason: str | None = None,
    rate_limit: int | None = None,
) -> Grant:
    """Approve a submitted application: all its fields or fewer, its rows or fewer (ANDed)."""
    application = _pending(session, actor, application_id, "exchange.approve")
    kinds = _schema_kinds(session, application.resource)
    granted = application.fields if fields is None else _check_fields(kinds, fields)
    more = sorted(set(granted) - set(application.fields))
    if more:
        raise Invalid(f"{more[0]} was not asked for; a grant gives no more", field="fields")
    extra = _check_filter(kinds, row_filter, field="row_filter")
    if clearance not in CLEARANCES:
        raise Invalid(f"unknown clearance {clearance!r}", field="clearance")
    limit = _check_rate_limit(rate_limit)
    _decide(application, actor, ApplicationStatus.APPROVED, reason)
    return _grant(session, actor, application, granted, _narrowed(application.row_filter, extra),
                  clearance, rate_limit=limit)  # fmt: skip


def set_rate_limit(
    session: Session, actor: Principal, grant_id: int, *, rate_limit: int | None
) -> Grant:
    """Set (or lift, None) an active grant's calls per minute; the next call counts under it."""
    grant = access_grant(session, actor, grant_id)
    authorize(session, actor, "exchange.approve", target=str(grant_id), target_type="grant")
    if not _is_provider_approver(actor, grant.resource.provider_id):
        raise _refuse(actor, "exchange.rate-limit", str(grant_id), "only the provider's approvers")
    if grant.status != GrantStatus.ACTIVE:
        raise Conflict(f"grant {grant_id} is already revoked", code="revoked")
    before, grant.rate_limit = grant.rate_limit, _check_rate_limit(rate_limit)
    policies.bump_epoch(session)  # cached plans carry the limit
    audit.record(
        session, actor, "exchange.rate-limit", target=str(grant.id), target_type="grant",
        detail=json.dumps({"before": before, "after": grant.rate_limit}),
    )  # fmt: skip
    return grant


def _check_rate_limit(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= MAX_RATE_LIMIT:
        raise Invalid(f"a rate limit is 1 to {MAX_RATE_LIMIT} calls per minute",
                      field="rate_limit")  # fmt: skip
    return value


def reject_application(
    session: Session, actor: Principal, application_id: int, *, reason: str
) -> Application:
    """Reject a submitted application; the reason is required and shown to the applicant."""
    application = _pending(session, actor, application_id, "exchange.reject")
    _decide(application, actor, ApplicationStatus.REJECTED, _check_text(reason, field="reason"))
    _record(session, actor, "exchange.reject", application, reason=application.decision_reason)
    return application


def withdraw_application(session: Session, actor: Principal, application_id: int) -> Application:
    """The consumer department takes back an application not yet decided."""
    application = access_application(session, actor, application_id)
    if actor.organization_id != application.consumer_id or not actor.has_role(Role.CONSUMER):
        raise _refuse(actor, "exchange.withdraw", str(application_id),
                      "only the applying department withdraws")  # fmt: skip
    if application.status != ApplicationStatus.SUBMITTED:
        raise Conflict(f"application {application_id} is {application.status}", code="decided")
    _decide(application, actor, ApplicationStatus.WITHDRAWN, None)
    _record(session, actor, "exchange.withdraw", application)
    return application


def revoke_grant(session: Session, actor: Principal, grant_id: int, *, reason: str) -> Grant:
    """End a grant now: the consumer's next call is refused (cached plans are rebuilt)."""
    grant = access_grant(session, actor, grant_id)
    authorize(session, actor, "exchange.approve", target=str(grant_id), target_type="grant")
    if not _is_provider_approver(actor, grant.resource.provider_id):
        raise _refuse(actor, "exchange.revoke", str(grant_id), "only the provider's approvers")
    if grant.status != GrantStatus.ACTIVE:
        raise Conflict(f"grant {grant_id} is already revoked", code="revoked")
    _end(grant, actor, _check_text(reason, field="reason"))
    policies.bump_epoch(session)
    audit.record(
        session, actor, "exchange.revoke", target=str(grant.id), target_type="grant",
        purpose=grant.revoke_reason, detail=f"resource={grant.resource.code}",
    )  # fmt: skip
    return grant


def _pending(session: Session, actor: Principal, application_id: int, action: str) -> Application:
    """A submitted application the actor decides: an approver of the providing department."""
    application = access_application(session, actor, application_id)
    authorize(session, actor, "exchange.approve", target=str(application_id),
              target_type="application")  # fmt: skip
    if not _is_provider_approver(actor, application.resource.provider_id):
        raise _refuse(actor, action, str(application_id), "only the provider's approvers decide")
    if application.status != ApplicationStatus.SUBMITTED:
        raise Conflict(f"application {application_id} is {application.status}", code="decided")
    return application


def _decide(application: Application, actor: Principal, status: str, reason: str | None) -> None:
    application.status = status
    application.decision_reason = reason
    application.decided_by = actor.label
    application.decided_at = clock.now()


def _end(grant: Grant, actor: Principal, reason: str) -> None:
    grant.status = GrantStatus.REVOKED
    grant.revoked_by = actor.label
    grant.revoked_at = clock.now()
    grant.revoke_reason = reason


def _grant(
    session: Session,
    actor: Principal,
    application: Application,
    fields: Sequence[str],
    row_filter: str | None,
    clearance: str,
    *,
    rate_limit: int | None = None,
) -> Grant:
    """The grant of an approved application; it replaces the department's earlier one."""
    earlier = session.scalars(
        select(Grant).where(
            Grant.consumer_id == application.consumer_id,
            Grant.resource_id == application.resource_id,
            Grant.status == GrantStatus.ACTIVE,
        )
    ).all()
    grant = Grant(
        consumer=application.consumer,
        resource=application.resource,
        application_id=application.id,
        fields=list(fields),
        row_filter=row_filter,
        clearance=clearance,
        purpose=application.purpose,
        expires_at=application.expires_at,
        rate_limit=rate_limit,
        status=GrantStatus.ACTIVE,
        granted_by=actor.label,
    )
    session.add(grant)
    session.flush()
    for old in earlier:
        _end(old, actor, f"replaced by grant {grant.id}")
    policies.bump_epoch(session)  # cached plans of this consumer are stale
    audit.record(
        session, actor, "exchange.grant", target=str(grant.id), target_type="grant",
        purpose=application.purpose,
        detail=_detail(application=application.id, resource=application.resource.code,
                       consumer=application.consumer.code, fields=list(fields),
                       row_filter=row_filter, clearance=clearance,
                       expires_at=grant.expires_at.isoformat(), rate_limit=rate_limit,
                       replaced=[g.id for g in earlier]),
    )  # fmt: skip
    return grant


def _record(
    session: Session, actor: Principal, action: str, application: Application, **extra: Any
) -> None:
    audit.record(
        session, actor, action, target=str(application.id), target_type="application",
        purpose=application.purpose,
        detail=_detail(resource=application.resource.code, consumer=application.consumer.code,
                       **extra),
    )  # fmt: skip


def _detail(**values: Any) -> str:
    shown = {k: v for k, v in values.items() if v not in (None, [], "")}
    return json.dumps(shown, ensure_ascii=False, sort_keys=True)


# --- lists ---------------------------------------------------------------------------------


def _side(actor: Principal, side: str, consumer: Any, provider: Any) -> Any:
    if side == "consumer":
        return consumer == actor.organization_id
    if side == "provider":
        return provider == actor.organization_id
    raise Invalid("side is consumer or provider", field="side")


def list_applications(
    session: Session,
    actor: Principal,
    *,
    side: str = "consumer",
    status: str | None = None,
    limit: int = 200,
) -> list[Application]:
    """The department's applications (consumer side) or those for its resources (provider)."""
    authorize(session, actor, "exchange.read")
    query: Select[Any] = (
        select(Application)
        .join(Resource, Resource.id == Application.resource_id)
        .where(_side(actor, side, Application.consumer_id, Resource.provider_id))
    )
    if status:
        query = query.where(Application.status == status)
    return list(session.scalars(query.order_by(Application.id.desc()).limit(limit)).unique())


def list_grants(
    session: Session, actor: Principal, *, side: str = "consumer", limit: int = 200
) -> list[Grant]:
    """The department's grants (consumer side) or those on its resources (provider side)."""
    authorize(session, actor, "exchange.read")
    query = (
        select(Grant)
        .join(Resource, Resource.id == Grant.resource_id)
        .where(_side(actor, side, Grant.consumer_id, Resource.provider_id))
        .order_by(Grant.status, Grant.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query).unique())


def inbox_count(session: Session, actor: Principal) -> int:
    """Applications waiting for the actor's decision (0 unless an approver)."""
    if actor.organization_id is None or not actor.has_role(Role.APPROVER):
        return 0
    return int(
        session.scalar(
            select(func.count())
            .select_from(Application)
            .join(Resource, Resource.id == Application.resource_id)
            .where(
                Resource.provider_id == actor.organization_id,
                Application.status == ApplicationStatus.SUBMITTED,
            )
        )
        or 0
    )


def active_count(session: Session, actor: Principal) -> int:
    """Active, unexpired grants the actor's department holds."""
    return len(_active(session, actor.organization_id))


@dataclass(frozen=True)
class Offer:
    """A shareable resource in the marketplace, with the department's standing on it."""

    resource: Resource
    fields: list[str]
    grant: Grant | None
    pending: int


def marketplace(
    session: Session, actor: Principal, *, q: str | None = None, limit: int = 200
) -> list[Offer]:
    """Published resources of other departments that are shared (无条件/有条件共享)."""
    filters = catalog.Filters(q=q, status=ResourceStatus.PUBLISHED)
    offers = []
    for resource in catalog.list_resources(session, actor, filters, limit=limit, offset=0):
        if resource.sharing_type == SharingType.NONE:
            continue
        if actor.organization_id is not None and resource.provider_id == actor.organization_id:
            continue
        offers.append(resource)
    mine = {g.resource_id: g for g in _active(session, actor.organization_id)}
    waiting = _waiting(session, actor.organization_id)
    return [
        Offer(r, list(_schema_kinds(session, r)), mine.get(r.id), waiting.get(r.id, 0))
        for r in offers
    ]


def _active(session: Session, consumer_id: int | None) -> list[Grant]:
    if consumer_id is None:
        return []
    return list(
        session.scalars(
            select(Grant).where(
                Grant.consumer_id == consumer_id,
                Grant.status == GrantStatus.ACTIVE,
                Grant.expires_at > clock.now(),
            )
        ).unique()
    )


def _waiting(session: Session, consumer_id: int | None) -> dict[int, int]:
    if consumer_id is None:
        return {}
    rows = session.execute(
        select(Application.resource_id, func.count())
        .where(
            Application.consumer_id == consumer_id,
            Application.status == ApplicationStatus.SUBMITTED,
        )
        .group_by(Application.resource_id)
    ).all()
    return {int(r): int(n) for r, n in rows}


def resource_fields(
    session: Session, actor: Principal, code: str
) -> tuple[Resource, dict[str, str]]:
    """A resource the actor may see and its fields (name → title), for the application form."""
    resource = catalog.access_resource(session, actor, code)
    return resource, field_titles(session, resource)


def field_titles(session: Session, resource: Resource) -> dict[str, str]:
    """Field name → its title (the name when it has none), in schema order."""
    row = catalog.current_schema(session, resource)
    descriptor: Mapping[str, Any] = row.descriptor if row is not None else {}
    return {
        str(f["name"]): str(f.get("title") or f["name"])
        for f in descriptor.get("fields") or []
        if isinstance(f, Mapping) and f.get("name")
    }


# --- the policy ----------------------------------------------------------------------------


def _reader(actor: Principal) -> bool:
    """A reader of a department: a staff user with a data role, or a client with resource.read."""
    if actor.organization_id is None:
        return False
    if actor.kind == "user":
        return actor.account_kind in (None, "staff") and bool(actor.roles & DATA_ROLES)
    return actor.kind == "client" and policies.READ in actor.scopes


def grant_verdict(
    session: Session, actor: Principal, action: str, resource: DataResource
) -> Verdict | None:
    """The grant policy: an active, unexpired grant of the reader's department opens its part."""
    if (
        action != policies.READ
        or not _reader(actor)
        or resource.status != ResourceStatus.PUBLISHED
        or resource.sharing_type == SharingType.NONE
        or resource.provider_id == actor.organization_id
    ):
        return None
    grant = session.scalars(
        select(Grant)
        .where(
            Grant.consumer_id == actor.organization_id,
            Grant.resource_id == resource.id,
            Grant.status == GrantStatus.ACTIVE,
            Grant.expires_at > clock.now(),
        )
        .order_by(Grant.id.desc())
        .limit(1)
    ).first()
    if grant is None:
        return None  # deny by default: no grant, a revoked one, or an expired one
    return Verdict(
        "grant",
        grant.clearance,
        fields=frozenset(grant.fields),
        row_filter=grant.row_filter,
        reason=f"grant={grant.id}",  # named in the read's audit record
        valid_until=grant.expires_at,
        rate_limit=grant.rate_limit,
        # The grant's window; its time of issue keeps it apart from a same-numbered grant
        # of another database sharing the storage (a restored or a test database).
        quota=f"grant:{grant.id}:{grant.created_at.timestamp():.6f}",
        purpose=grant.purpose,  # a call that names no purpose is recorded with the grant's
    )


if grant_verdict not in policies.GRANTS.checks:
    policies.GRANTS.register(grant_verdict)
