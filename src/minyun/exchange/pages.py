"""Sharing pages (共享): the marketplace, the application form, the approver's inbox, grants.

Every page calls the same service as the API (`minyun.exchange.service`). A form refused for
its input is shown again with what was typed and the error beside its field; the change ran
in a savepoint, so nothing of it is kept. A refusal of the actor is the audited error page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from minyun.core.errors import Conflict, Forbidden, Invalid
from minyun.core.security import Principal, Role, authorize
from minyun.exchange import online, service, usage
from minyun.exchange.models import Application
from minyun.web import wording
from minyun.web.deps import INT32_MAX, CsrfDep, IdPath, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import (
    ACTIONS,
    CHINA_TIME,
    LABELS,
    PageActorDep,
    render,
)

router = APIRouter(include_in_schema=False)

LABELS.update(
    submitted=N_("Awaiting decision"),
    approved=N_("Approved"),
    withdrawn=N_("Withdrawn"),
    active=N_("Active"),
    revoked=N_("Revoked by the provider"),
)
ACTIONS.update(
    {
        "exchange.apply": N_("Sharing application made"),
        "exchange.grant": N_("Data grant given"),
        "exchange.reject": N_("Sharing application rejected"),
        "exchange.withdraw": N_("Sharing application withdrawn"),
        "exchange.revoke": N_("Data grant revoked"),
        "exchange.rate-limit": N_("Grant rate limit set"),
        "exchange.proxy": N_("Proxy service called"),
        "exchange.proxy-register": N_("Proxy service registered"),
        "market.register": N_("Enterprise registered"),
        "market.change": N_("Enterprise registration changed"),
        "market.deregister": N_("Enterprise deregistered"),
    }
)
wording.sentence(
    r"a rate limit is (?:1 to (?P<max>\d+)|a whole number of) calls per minute",
    N_("Give a whole number of calls per minute (empty: no limit)."),
)
wording.sentence(
    r"give a key of 1 to (?P<n>\d+) characters", N_("Give a key of 1 to %(n)s characters.")
)
wording.sentence(
    r"over the rate limit of (?P<n>\d+) calls per minute; try again in (?P<s>\d+) s",
    N_("Over the grant's limit of %(n)s calls per minute: try again in %(s)s seconds."),
)
# The service's refusals, said in the page's language beside their field.
wording.sentence(r"choose at least one field", N_("Choose at least one field."))
wording.sentence(r"(?P<what>\w+) is required", N_("This is required."))
wording.sentence(r"give the end as a date", N_("Give the end as a date."))
wording.sentence(r"the end must be in the future", N_("The end date must be in the future."))
wording.sentence(r"a grant lasts at most three years", N_("A grant lasts at most three years."))
wording.sentence(
    r"(?P<name>\S+) was not asked for; a grant gives no more",
    N_("%(name)s was not asked for: a grant never gives more than was asked."),
)
wording.sentence(
    r"your department provides this resource",
    N_("Your department provides this resource: there is nothing to apply for."),
)
wording.sentence(
    r"resource (?P<code>\S+) is not shared \(不予共享\); it cannot be applied for",
    N_("This resource is not shared (不予共享): it cannot be applied for."),
)
wording.sentence(r"application (?P<id>\d+) is (?P<state>\w+)", N_("This application is %(state)s."))
wording.sentence(r"no application (?P<id>\d+)", N_("There is no application %(id)s."))
wording.sentence(r"no grant (?P<id>\d+)", N_("There is no grant %(id)s."))
wording.sentence(r"grant (?P<id>\d+) is already revoked", N_("This grant is already revoked."))
wording.sentence(r"unknown field '(?P<name>[^']*)'", N_("Unknown field: %(name)s"))
wording.sentence(
    r"(?P<detail>.+) at position (?P<pos>\d+)", N_("%(detail)s (at character %(pos)s)")
)

SHARING_NAMES = {"unconditional": N_("Unconditional"), "conditional": N_("Conditional"),
                 "none": N_("Not shared / not open")}  # fmt: skip
# Clearances by name (the catalog's sensitivity names).
LEVEL_NAMES = {"public": N_("Public"), "internal": N_("Internal"), "sensitive": N_("Sensitive"),
               "secret": N_("Secret")}  # fmt: skip
DEFAULT_TERM = timedelta(days=365)
USAGE_DAYS = 30


def _expires(text: str) -> datetime:
    """The end of the chosen day in China time."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise Invalid("give the end as a date", field="expires_on") from None
    return datetime.combine(day, time(23, 59, 59), CHINA_TIME)


def _errors(exc: Invalid | Conflict, fallback: str = "form") -> dict[str, str]:
    field = str(exc.extra.get("field") or fallback)
    return {"expires_on" if field == "expires_at" else field: str(exc)}


@router.get("/sharing")
def marketplace(
    request: Request, session: SessionDep, actor: PageActorDep, q: str | None = None
) -> HTMLResponse:
    """The sharing catalog (共享目录): other departments' shared resources, with an apply button."""
    authorize(session, actor, "exchange.read")
    offers = service.marketplace(session, actor, q=(q or "").strip()[:200] or None)
    may_apply = actor.has_role(Role.CONSUMER) and actor.organization_id is not None
    return render(
        request, "exchange/marketplace.html", offers=offers, q=q or "", may_apply=may_apply,
        sharing=SHARING_NAMES,
        inbox=service.inbox_count(session, actor),
    )  # fmt: skip


@router.get("/sharing/{code}/apply")
def apply_form(request: Request, code: str, session: SessionDep, actor: PageActorDep) -> Response:
    """The application form: fields to tick, purpose, legal basis, rows, end date."""
    resource, fields = service.resource_fields(session, actor, code)
    values = {"expires_on": (date.today() + DEFAULT_TERM).isoformat(), "fields": []}
    return _apply_page(request, resource, fields, values, {})


@router.post("/sharing/{code}/apply", dependencies=[CsrfDep])
def apply(
    request: Request,
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    fields: Annotated[list[str] | None, Form(max_length=500)] = None,
    purpose: Annotated[str, Form(max_length=2000)] = "",
    legal_basis: Annotated[str, Form(max_length=2000)] = "",
    row_filter: Annotated[str, Form(max_length=2000)] = "",
    expires_on: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Apply; an unconditionally shared resource is granted at once."""
    resource, names = service.resource_fields(session, actor, code)
    values: dict[str, Any] = {
        "fields": fields or [], "purpose": purpose, "legal_basis": legal_basis,
        "row_filter": row_filter, "expires_on": expires_on,
    }  # fmt: skip
    try:
        with session.begin_nested():
            application = service.apply(
                session, actor, resource=code, purpose=purpose, legal_basis=legal_basis,
                fields=fields or [], row_filter=row_filter, expires_at=_expires(expires_on),
            )  # fmt: skip
    except (Invalid, Conflict) as exc:
        return _apply_page(request, resource, names, values, _errors(exc), status_code=422)
    return RedirectResponse(f"/sharing/mine?applied={application.id}", 303)


def _apply_page(
    request: Request,
    resource: Any,
    fields: Mapping[str, str],
    values: Mapping[str, Any],
    errors: Mapping[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request, "exchange/apply.html", status_code=status_code, resource=resource,
        fields=fields, values=values, errors=errors, sharing=SHARING_NAMES,
    )  # fmt: skip


@router.get("/sharing/inbox")
def inbox(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The approver's inbox: applications for the department's resources awaiting a decision."""
    return _inbox_page(request, session, actor, {}, {})


def _inbox_page(
    request: Request,
    session: SessionDep,
    actor: Principal,
    values: Mapping[int, Mapping[str, Any]],
    errors: Mapping[int, Mapping[str, str]],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    waiting = service.list_applications(session, actor, side="provider", status="submitted")
    decided = [
        a
        for a in service.list_applications(session, actor, side="provider", limit=50)
        if a.status != "submitted"
    ]
    return render(
        request, "exchange/inbox.html", status_code=status_code, waiting=waiting,
        decided=decided, values=values, errors=errors, clearances=service.CLEARANCES,
        levels=LEVEL_NAMES,
        may_decide=actor.has_role(Role.APPROVER),
    )  # fmt: skip


@router.post("/sharing/applications/{application_id}/approve", dependencies=[CsrfDep])
def approve(
    request: Request,
    application_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    fields: Annotated[list[str] | None, Form(max_length=500)] = None,
    row_filter: Annotated[str, Form(max_length=2000)] = "",
    clearance: Annotated[str, Form(max_length=12)] = service.DEFAULT_CLEARANCE,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Approve with the ticked fields (never more than asked) and an optional narrower filter."""
    try:
        with session.begin_nested():
            service.approve_application(
                session, actor, application_id, fields=fields or [], row_filter=row_filter,
                clearance=clearance, reason=reason.strip() or None,
            )  # fmt: skip
    except (Invalid, Conflict) as exc:
        typed = {"fields": fields or [], "row_filter": row_filter, "clearance": clearance}
        return _inbox_page(
            request, session, actor, {application_id: typed},
            {application_id: _errors(exc)}, status_code=422,
        )  # fmt: skip
    return RedirectResponse("/sharing/inbox", 303)


@router.post("/sharing/applications/{application_id}/reject", dependencies=[CsrfDep])
def reject(
    request: Request,
    application_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Reject with a reason, which the applying department sees."""
    try:
        with session.begin_nested():
            service.reject_application(session, actor, application_id, reason=reason)
    except (Invalid, Conflict) as exc:
        return _inbox_page(
            request, session, actor, {application_id: {"reason": reason}},
            {application_id: _errors(exc)}, status_code=422,
        )  # fmt: skip
    return RedirectResponse("/sharing/inbox", 303)


@router.post("/sharing/applications/{application_id}/withdraw", dependencies=[CsrfDep])
def withdraw(application_id: IdPath, session: SessionDep, actor: PageActorDep) -> Response:
    """Take back an application not yet decided."""
    service.withdraw_application(session, actor, application_id)
    return RedirectResponse("/sharing/mine", 303)


@router.get("/sharing/mine")
def mine(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    applied: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
) -> HTMLResponse:
    """My department's grants and applications (consumer), and the grants it gave (provider)."""
    return _mine_page(request, session, actor, applied=applied)


def _mine_page(
    request: Request,
    session: Session,
    actor: Principal,
    *,
    applied: int | None = None,
    errors: Mapping[int, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    applications = service.list_applications(session, actor, side="consumer", limit=50)
    just: Application | None = next((a for a in applications if a.id == applied), None)
    held = service.list_grants(session, actor, side="consumer")
    given = service.list_grants(session, actor, side="provider")
    return render(
        request, "exchange/mine.html", status_code=status_code, held=held, given=given,
        applications=applications, just=just, may_revoke=actor.has_role(Role.APPROVER),
        errors=errors or {}, levels=LEVEL_NAMES,
        usage={g.id: usage.grant_usage(session, actor, g.id, days=USAGE_DAYS)
               for g in [*held, *given] if g.status == "active"},
    )  # fmt: skip


@router.get("/sharing/grants/{grant_id}")
def grant_page(
    request: Request,
    grant_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    days: Annotated[int, Query(ge=1, le=usage.MAX_DAYS)] = USAGE_DAYS,
) -> HTMLResponse:
    """One grant, for its holder and its provider: its terms and its use per day (chart)."""
    return _grant_page(request, session, actor, grant_id, days=days)


def _grant_page(
    request: Request,
    session: Session,
    actor: Principal,
    grant_id: int,
    *,
    days: int = USAGE_DAYS,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found = usage.grant_usage(session, actor, grant_id, days=days)
    g = found.grant
    may_limit = actor.has_role(Role.APPROVER) and actor.organization_id == g.resource.provider_id
    return render(
        request, "exchange/grant.html", status_code=status_code, usage=found,
        chart=found.chart(), levels=LEVEL_NAMES, is_holder=actor.organization_id == g.consumer_id,
        may_limit=may_limit and g.status == "active", errors=errors or {},
        values=values or {"rate_limit": "" if g.rate_limit is None else str(g.rate_limit)},
    )  # fmt: skip


@router.post("/sharing/grants/{grant_id}/rate-limit", dependencies=[CsrfDep])
def set_rate_limit(
    request: Request,
    grant_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    rate_limit: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    """Set or lift the grant's calls per minute (the provider's approvers)."""
    text = rate_limit.strip()
    try:
        with session.begin_nested():
            if text and not text.isdigit():
                raise Invalid("a rate limit is a whole number of calls per minute",
                              field="rate_limit")  # fmt: skip
            service.set_rate_limit(session, actor, grant_id,
                                   rate_limit=int(text) if text else None)  # fmt: skip
    except (Invalid, Conflict) as exc:
        return _grant_page(request, session, actor, grant_id, values={"rate_limit": text},
                           errors={"rate_limit": str(exc)}, status_code=422)  # fmt: skip
    return RedirectResponse(f"/sharing/grants/{grant_id}", 303)


@router.post("/sharing/grants/{grant_id}/revoke", dependencies=[CsrfDep])
def revoke(
    request: Request,
    grant_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Revoke a grant the department gave: the consumer's next call is refused."""
    try:
        with session.begin_nested():
            service.revoke_grant(session, actor, grant_id, reason=reason)
    except (Invalid, Conflict) as exc:
        return _mine_page(
            request, session, actor, errors={grant_id: _errors(exc, "reason")}, status_code=422
        )
    return RedirectResponse("/sharing/mine", 303)


@router.get("/sharing/lookup/{code}")
def lookup_page(
    request: Request,
    code: str,
    session: SessionDep,
    platform: PlatformDep,
    actor: PageActorDep,
    key: Annotated[str | None, Query(max_length=online.KEY_MAX)] = None,
    purpose: Annotated[str | None, Query(max_length=online.PURPOSE_MAX)] = None,
) -> HTMLResponse:
    """Look up one record by its key (在线核验), shown as the department's grant allows."""
    form = online.prepare(session, actor, code)
    found, errors = None, {}
    if key:  # an empty key is the form not yet filled in
        try:
            with session.begin_nested():
                found = online.lookup(session, platform.lake, actor, code, key, purpose=purpose)
        except Invalid as exc:
            # The key becomes the query's filter: a key the filter refuses is a wrong key.
            errors = {"purpose" if exc.extra.get("field") == "purpose" else "key": str(exc)}
    return render(
        request, "exchange/lookup.html", form=form, found=found, errors=errors,
        values={"key": key or "", "purpose": purpose or ""},
        status_code=422 if errors else 200,
    )  # fmt: skip


@router.get("/sharing/query/{code}")
def query_page(
    request: Request,
    code: str,
    session: SessionDep,
    platform: PlatformDep,
    actor: PageActorDep,
    filter: Annotated[str | None, Query(max_length=2000)] = None,
    sort: Annotated[str | None, Query(max_length=200)] = None,
    purpose: Annotated[str | None, Query(max_length=online.PURPOSE_MAX)] = None,
) -> HTMLResponse:
    """Query a resource's rows with a filter (在线查询), as the department's grant allows."""
    form = online.prepare(session, actor, code)
    found, errors = None, {}
    if filter or sort:  # an empty form is the form not yet filled in
        try:
            with session.begin_nested():
                found = online.query_page(session, platform.lake, actor, code, filter=filter or "",
                                          sort=sort, purpose=purpose)  # fmt: skip
        except (Invalid, Forbidden) as exc:
            where = exc.extra.get("field")
            errors = {where if where in ("sort", "purpose") else "filter": str(exc)}
    return render(
        request, "exchange/query.html", form=form, found=found, errors=errors,
        values={"filter": filter or "", "sort": sort or "", "purpose": purpose or ""},
        status_code=422 if errors else 200,
    )  # fmt: skip
