"""Grid pages: the phone-first report form, a report's timeline, the department worklist,
the map and the statistics. Each route calls the grid service once and renders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from minyun.apps.grid import apikeys, catalog, open311, photos, rules, schedule, service, stats
from minyun.apps.grid.models import Report, TaskState
from minyun.apps.grid.photos import PhotoStore
from minyun.apps.grid.service import NewReport
from minyun.core.errors import Conflict, DomainError, Invalid, NotFound
from minyun.core.platform import Platform
from minyun.core.security import Principal, decide
from minyun.orgs.models import Organization
from minyun.web.deps import CsrfDep, IdPath, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import PageActorDep, render
from minyun.web.wording import sentence


@asynccontextmanager
async def _escalation(app: FastAPI) -> AsyncIterator[None]:
    """The SLA ticker runs while the web app runs (not where jobs run in the caller)."""
    platform = app.state.platform
    ticker = None
    if platform.dispatcher.mode in ("inline", "worker"):
        ticker = schedule.Escalator(platform.factory)
        ticker.start()
    app.state.grid_escalator = ticker
    try:
        yield
    finally:
        if ticker is not None:
            await run_in_threadpool(ticker.stop)


router = APIRouter(include_in_schema=False, lifespan=_escalation)

# The service's refusals as the pages say them (see minyun.web.wording).
for _pattern, _message in (
    (r"attribute (?P<code>\w+) is required", N_("Please answer: %(code)s")),
    (r"the photo has (?P<size>\d+) bytes, more than (?P<limit>\d+)",
     N_("The photo is too large (%(size)s bytes; at most %(limit)s)")),
    (r"unknown department (?P<code>.*)", N_("Unknown department %(code)s")),
    (r"(?P<code>\S+) does not work on this report", N_("%(code)s does not work on this report")),
    (r"(?P<code>\S+) already receives (?P<service>\S+) in (?P<area>\S+)",
     N_("%(code)s already receives %(service)s in %(area)s")),
    (r"a key named (?P<name>.+) exists", N_("A key named %(name)s exists")),
    (r"bad rate limit '(?P<rate>.*)'", N_("Not a rate limit: %(rate)s (e.g. 60/minute)")),
    (r"arrive within 1 to (?P<max>\d+) minutes", N_("Arrive within 1 to %(max)s minutes")),
    (r"close within 0.25 to (?P<max>\S+) hours", N_("Close within 0.25 to %(max)s hours")),
    (r"the key (?P<name>.+) is already revoked", N_("The key %(name)s is already revoked")),
    (r"unknown place (?P<code>.*)", N_("Unknown place %(code)s")),
    (r"task (?P<id>\d+) is (?P<state>\w+); .*",
     N_("This task has already moved on: reload the page to see where it stands.")),
):  # fmt: skip
    sentence(_pattern, _message)
GRID_MESSAGES = [
    N_("a location is required: lat and long"),
    N_("the location is outside Fujian province"),
    N_("no grid of this node covers the location"),
    N_("description may not contain markup"),
    N_("the photo is not a readable image"),
    N_("the photo is not a JPEG, PNG or WebP image"),
    N_("the photo has too many pixels"),
    N_("the photo is empty"),
    N_("say what was done"),
    N_("a photo of the result is required"),
    N_("name a department to add or withdraw"),
    N_("sign in to report an issue"),
    N_("only the grid centre's stewards and administrators configure the grid"),
    N_("arrive within a whole number of minutes"),
    N_("close within a number of hours"),
    N_("the arrival time must not be later than the close time"),
    N_("a key needs a name of at most 100 characters"),
]
STEP_LABELS = {
    "reported": N_("Reported"),
    "routed": N_("Sent to"),
    "accepted": N_("On the way"),
    "closed": N_("Done"),
    "resolved": N_("Resolved"),
    "withdrawn": N_("Withdrawn from"),
    "escalated": N_("Escalated"),
    "note": N_("Note"),
}
# What the departments may see of how to reach the reporter (Open311 contact fields).
CONTACT_SHOWN = ("first_name", "last_name", "phone", "email")
STATE_LABELS = {
    "routed": N_("Routed"),
    "in_progress": N_("In progress"),
    "closed": N_("Closed"),
    "accepted": N_("Accepted"),
    "withdrawn": N_("Withdrawn"),
}


def _store(request: Request) -> PhotoStore:
    return photos.store_for(request.app.state.platform.settings.lake_uri)


def _form_page(
    request: Request, session: Session, actor: Principal, *, error: Invalid | NotFound | None = None,
    values: dict[str, Any] | None = None,
) -> HTMLResponse:  # fmt: skip
    return render(
        request,
        "grid/report.html",
        status_code=422 if error is not None else 200,
        services=service.list_services(session),
        error={"field": error.extra.get("field"), "message": str(error)} if error else None,
        values=values or {},
        signed_in_user=actor.authenticated,
    )


@router.get("/grid/report")
def report_form(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """Report an issue: category, photo, place, a few words — one thumb on a phone."""
    if not actor.authenticated:
        return RedirectResponse("/login?next=/grid/report", 303)  # type: ignore[return-value]
    return _form_page(request, session, actor)


@router.post("/grid/report", dependencies=[CsrfDep])
async def report_post(request: Request, session: SessionDep, actor: PageActorDep) -> Response:
    """File the report; on a refusal the form comes back with what was typed."""
    form = await request.form()
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    uploads = [await v.read() for k, v in form.multi_items()
              if k == "photo" and isinstance(v, StarletteUpload) and v.filename]  # fmt: skip
    attributes = open311.attributes_of(form.multi_items())

    def file() -> Response:
        try:
            new = NewReport(
                service_code=fields.get("service_code", ""),
                description=fields.get("description", ""),
                lat=_number(fields.get("lat", ""), "lat"),
                long=_number(fields.get("long", ""), "long"),
                attributes=attributes,
                photos=uploads,
            )
            with session.begin_nested():
                report = service.file_report(session, actor, _store(request), new)
        except (Invalid, NotFound) as exc:
            return _form_page(request, session, actor, error=exc,
                              values={**fields, "attributes": attributes})  # fmt: skip
        return RedirectResponse(f"/grid/reports/{report.id}", 303)

    return await run_in_threadpool(file)


def _number(value: str, field: str) -> float | None:
    if not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise Invalid(f"{field} is not a number", field=field) from None


@router.get("/grid/reports")
def reports(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The viewer's reports (a citizen's own; every report for civil servants)."""
    found = service.list_reports(session, actor)
    return render(request, "grid/reports.html", reports=found, **_names(session, found),
                  state_labels=STATE_LABELS)  # fmt: skip


def _names(session: Session, reports: list[Report]) -> dict[str, Any]:
    services = {s.code: s.name for s in service.list_services(session)}
    org_ids = {t.org_id for r in reports for t in r.tasks} | {
        s.org_id for r in reports for s in r.steps if s.org_id
    }
    orgs = dict(session.query(Organization.id, Organization.name)
                .filter(Organization.id.in_(org_ids)).all()) if org_ids else {}  # fmt: skip
    return {"service_names": services, "org_names": orgs}


@router.get("/grid/reports/{report_id}")
def report_page(
    request: Request, report_id: IdPath, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """A report's timeline, photos and departments; the viewer's own next step."""
    return _report_page(request, session, actor, report_id)


def _report_page(
    request: Request, session: Session, actor: Principal, report_id: int, *,
    error: Invalid | Conflict | None = None, form: str | None = None,
) -> HTMLResponse:  # fmt: skip
    found = service.access_report(session, actor, report_id)
    names = _names(session, [found])
    mine = [t for t in found.tasks if actor.organization_id is not None
            and t.org_id == actor.organization_id and t.state in (TaskState.ROUTED, TaskState.ACCEPTED)]  # fmt: skip
    may_route = found.state != "closed" and service.may_reroute(session, actor, found)
    departments = [(code, name) for code, name in catalog.DEPARTMENTS]
    own = actor.user_id is not None and found.reporter_user_id == actor.user_id
    contact = ({k: v for k, v in found.contact.items() if k in CONTACT_SHOWN}
               if not own and service.sees_contact(session, actor, found) else None)  # fmt: skip
    return render(
        request,
        "grid/report_page.html",
        status_code=422 if error is not None else 200,
        report=found,
        place=service.place_names(session, found),
        mine=mine,
        may_route=may_route,
        contact=contact,
        departments=departments,
        step_labels=STEP_LABELS,
        state_labels=STATE_LABELS,
        error={"form": form, "message": str(error)} if error else None,
        **names,
    )


@router.post("/grid/tasks/{task_id}/accept", dependencies=[CsrfDep])
def accept(
    request: Request, task_id: IdPath, session: SessionDep, actor: PageActorDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:  # fmt: skip
    """The department takes the task (the arrival clock stops)."""
    task = service.access_task(session, actor, task_id)
    try:
        with session.begin_nested():
            service.accept_task(session, actor, task_id, note=note)
    except (Invalid, Conflict) as exc:
        return _report_page(
            request, session, actor, task.report_id, error=exc, form=f"task-{task_id}"
        )
    return RedirectResponse(f"/grid/reports/{task.report_id}", 303)


@router.post("/grid/tasks/{task_id}/close", dependencies=[CsrfDep])
def close(
    request: Request, task_id: IdPath, session: SessionDep, actor: PageActorDep,
    note: Annotated[str, Form(max_length=2000)] = "",
    photo: Annotated[UploadFile | None, File()] = None,
) -> Response:  # fmt: skip
    """The department's part is done, with a note and a photo of the result."""
    task = service.access_task(session, actor, task_id)
    data = photo.file.read(photos.MAX_BYTES + 1) if photo is not None and photo.filename else b""
    try:
        with session.begin_nested():
            service.close_task(session, actor, _store(request), task_id, note=note, photo=data)
    except (Invalid, Conflict) as exc:
        return _report_page(
            request, session, actor, task.report_id, error=exc, form=f"task-{task_id}"
        )
    return RedirectResponse(f"/grid/reports/{task.report_id}", 303)


@router.post("/grid/reports/{report_id}/reroute", dependencies=[CsrfDep])
def reroute(
    request: Request, report_id: IdPath, session: SessionDep, actor: PageActorDep,
    add: Annotated[list[str] | None, Form(max_length=64)] = None,
    remove: Annotated[list[str] | None, Form(max_length=64)] = None,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:  # fmt: skip
    """The street office adds or withdraws departments."""
    try:
        with session.begin_nested():
            service.reroute(
                session, actor, report_id, add=add or [], remove=remove or [], note=note
            )
    except (Invalid, Conflict) as exc:
        return _report_page(request, session, actor, report_id, error=exc, form="reroute")
    return RedirectResponse(f"/grid/reports/{report_id}", 303)


@router.get("/grid/work")
def work(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The department's open tasks, the most urgent first, with their clocks."""
    tasks = service.worklist(session, actor)
    found = [t.report for t in tasks]
    return render(request, "grid/work.html", tasks=tasks, state_labels=STATE_LABELS,
                  **_names(session, found))  # fmt: skip


@router.get("/grid")
def overview(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The district's grids and reports on a map (no tiles), and the numbers of the month."""
    numbers = stats.summary(session, actor)
    data = {
        "areas": service.outlines(session),
        "reports": stats.map_points(session, actor),
        "services": {s.code: s.name for s in service.list_services(session)},
    }
    charts = {
        "categories": [r.name for r in numbers.by_category],
        "arrive": [r.arrive_minutes for r in numbers.by_category],
        "close": [r.close_minutes for r in numbers.by_category],
        "tasks": [r.tasks for r in numbers.by_category],
    }
    may_work = actor.organization_id is not None and decide(session, actor, "grid.work").allowed
    return render(request, "grid/overview.html", numbers=numbers, data=data, charts=charts,
                  may_work=may_work, may_configure=rules.may_configure(session, actor))  # fmt: skip


def _keys_page(
    request: Request, session: Session, actor: Principal, platform: Platform, *,
    created: apikeys.NewKey | None = None, error: DomainError | None = None, form: str = "",
    values: dict[str, str] | None = None,
) -> HTMLResponse:  # fmt: skip
    may = rules.may_configure(session, actor)
    return render(
        request, "grid/keys.html", status_code=422 if error is not None else 200,
        # A page that shows a new key once is never kept by a cache or the back button.
        headers={"Cache-Control": "no-store"} if created else None,
        root=platform.settings.base_url.rstrip("/") + "/open311/v2", may_configure=may,
        keys=apikeys.list_keys(session, actor) if may else [], created=created,
        error={"form": form, "message": str(error)} if error else None, values=values or {},
    )  # fmt: skip


@router.get("/grid/keys")
def keys_page(
    request: Request, session: SessionDep, actor: PageActorDep, platform: PlatformDep
) -> HTMLResponse:
    """How an Open311 client gets a key (the discovery's key_service); the grid centre's
    stewards and administrators create, list and revoke keys here."""
    return _keys_page(request, session, actor, platform)


@router.post("/grid/keys", dependencies=[CsrfDep])
def key_create(
    request: Request, session: SessionDep, actor: PageActorDep, platform: PlatformDep,
    name: Annotated[str, Form(max_length=200)] = "",
    rate: Annotated[str, Form(max_length=40)] = "60/minute",
) -> HTMLResponse:  # fmt: skip
    """A new key for a client, shown on this answer only."""
    try:
        with session.begin_nested():
            made = apikeys.create_key(session, actor, name, rate_limit=rate.strip() or "60/minute")
    except (Invalid, Conflict) as exc:
        return _keys_page(request, session, actor, platform, error=exc, form="create",
                          values={"name": name, "rate": rate})  # fmt: skip
    return _keys_page(request, session, actor, platform, created=made)


@router.post("/grid/keys/revoke", dependencies=[CsrfDep])
def key_revoke(
    request: Request, session: SessionDep, actor: PageActorDep, platform: PlatformDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:  # fmt: skip
    """Revoke a key: its client's next request is refused."""
    try:
        with session.begin_nested():
            apikeys.revoke_key(session, actor, name)
    except (NotFound, Conflict) as exc:
        return _keys_page(request, session, actor, platform, error=exc, form="revoke")
    return RedirectResponse("/grid/keys", 303)


def _rules_page(
    request: Request, session: Session, actor: Principal, *, error: DomainError | None = None,
    form: str = "",
) -> HTMLResponse:  # fmt: skip
    found = rules.list_rules(session, actor)
    by_service: dict[str, list[rules.RuleRead]] = {}
    for rule in found:
        by_service.setdefault(rule.service_code, []).append(rule)
    names = rules.area_names(session)
    places = sorted(names.items(), key=lambda kv: (len(kv[0]), kv[0]))
    may = rules.may_configure(session, actor)
    return render(
        request, "grid/rules.html", status_code=422 if error is not None else 200,
        services=service.list_services(session), rules=by_service, may_configure=may,
        places=[(c, n) for c, n in places if len(c) <= 12] if may else [],
        departments=rules.departments(session) if may else [],
        error={"form": form, "message": str(error)} if error else None,
    )  # fmt: skip


@router.get("/grid/rules")
def rules_page(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The routing rules (category × place → departments) and each category's due times."""
    return _rules_page(request, session, actor)


@router.post("/grid/rules", dependencies=[CsrfDep])
def rule_add(
    request: Request, session: SessionDep, actor: PageActorDep,
    service_code: Annotated[str, Form(max_length=40)] = "",
    area_code: Annotated[str, Form(max_length=16)] = "",
    org_code: Annotated[str, Form(max_length=64)] = "",
) -> Response:  # fmt: skip
    """Add a department to a category in a place."""
    try:
        with session.begin_nested():
            rules.add_rule(session, actor, service_code=service_code, area_code=area_code,
                           org_code=org_code)  # fmt: skip
    except (Invalid, Conflict) as exc:
        return _rules_page(request, session, actor, error=exc, form=service_code)
    return RedirectResponse(f"/grid/rules#service-{service_code}", 303)


@router.post("/grid/rules/{rule_id}/delete", dependencies=[CsrfDep])
def rule_remove(
    request: Request, rule_id: IdPath, session: SessionDep, actor: PageActorDep
) -> Response:
    """Remove a rule (reports already routed keep their tasks)."""
    rules.remove_rule(session, actor, rule_id)
    return RedirectResponse("/grid/rules", 303)


@router.post("/grid/services/{code}/times", dependencies=[CsrfDep])
def service_times(
    request: Request, code: str, session: SessionDep, actor: PageActorDep,
    arrive_minutes: Annotated[str, Form(max_length=12)] = "",
    close_hours: Annotated[str, Form(max_length=12)] = "",
) -> Response:  # fmt: skip
    """Change a category's due times (for reports filed from now on)."""
    try:
        with session.begin_nested():
            rules.set_due_times(session, actor, code[:40],
                                arrive_minutes=_whole(arrive_minutes, "arrive_minutes"),
                                close_hours=_hours(close_hours))  # fmt: skip
    except (Invalid, NotFound) as exc:
        return _rules_page(request, session, actor, error=exc, form=code[:40])
    return RedirectResponse(f"/grid/rules#service-{code[:40]}", 303)


def _whole(value: str, field: str) -> int:
    if not value.strip().isdigit():
        raise Invalid("arrive within a whole number of minutes", field=field)
    return int(value.strip()[:9])


def _hours(value: str) -> float:
    try:
        hours = float(value.strip())
    except ValueError:
        raise Invalid("close within a number of hours", field="close_hours") from None
    if hours != hours:
        raise Invalid("close within a number of hours", field="close_hours")
    return hours


@router.get("/grid/photos/{photo_id}")
def photo_page(
    request: Request, photo_id: IdPath, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """One photo at the screen's width (the stored copy: no location, no camera data)."""
    found = service.get_photo(session, actor, photo_id)
    return render(request, "grid/photo.html", photo=found)
