"""Grid governance rules: reports filed, routed to departments, worked, escalated and closed.

Each change is one function that checks the actor, changes the report, appends its timeline
step, publishes its event (`core.events`, read by the departments) and writes its audit record
in the caller's transaction. No function here commits.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, event, or_, select, update
from sqlalchemy.orm import Session

from minyun.accounts.models import User
from minyun.apps.grid import catalog, geo, layout
from minyun.apps.grid.models import (
    Area,
    AreaLevel,
    GridService,
    Photo,
    Report,
    ReportState,
    RoutingRule,
    Step,
    Task,
    TaskState,
)
from minyun.apps.grid.photos import PhotoStore, Processed, process
from minyun.core import audit, clock, events, identifiers
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from minyun.core.security import Principal, Role, authorize, decide
from minyun.orgs import service as orgs
from minyun.orgs.models import Level, Organization, OrgKind

DESCRIPTION_MAX = 4000  # Open311: description is at most 4,000 characters
PHOTOS_MAX = 4
# Anything that reads as a tag, a comment or a processing instruction: descriptions are text.
MARKUP = re.compile(r"<\s*[a-zA-Z!/?]|&#|javascript:", re.IGNORECASE)


# --- set-up ------------------------------------------------------------------------


def load_gulou(session: Session, actor: Principal) -> int:
    """Gulou's streets, communities and grids, its departments, services and rules (idempotent)."""
    authorize(session, actor, "grid.manage")
    orgs.load_divisions(session, orgs.packaged_divisions())
    specs = layout.gulou()
    orgs.load_divisions(session, [
        {"code": s.code, "name": s.name,
         "level": Level.TOWNSHIP if s.level == AreaLevel.STREET else Level.VILLAGE,
         "parent_code": s.parent_code or layout.DISTRICT}
        for s in specs if s.level != AreaLevel.GRID
    ])  # fmt: skip
    departments = {code: _department(session, actor, code, name, n)
                   for n, (code, name) in enumerate(catalog.DEPARTMENTS, start=1)}  # fmt: skip
    known = set(session.scalars(select(Area.code)))
    added = 0
    for n, spec in enumerate(specs, start=len(catalog.DEPARTMENTS) + 1):
        if spec.code in known:
            continue
        office = None
        if spec.level == AreaLevel.STREET:
            suffix = "人民政府" if spec.name.endswith("镇") else "办事处"
            office = _department(session, actor, f"gl-st-{spec.code[-3:]}",
                                 f"福州市鼓楼区{spec.name}{suffix}", n)  # fmt: skip
        x0, y0, x1, y1 = spec.outline.bounds
        session.add(Area(
            code=spec.code, name=spec.name, level=spec.level, parent_code=spec.parent_code,
            district_code=layout.DISTRICT, geometry=spec.geometry(), min_lon=x0, min_lat=y0,
            max_lon=x1, max_lat=y1, office_org_id=office.id if office else None,
        ))  # fmt: skip
        added += 1
    for entry in catalog.SERVICES:
        if session.get(GridService, entry["code"]) is None:
            values = {k: v for k, v in entry.items() if k != "departments"}
            session.add(GridService(**values))
            session.flush()
            for dept in entry["departments"]:
                session.add(RoutingRule(service_code=entry["code"], area_code=layout.DISTRICT,
                                        org_id=departments[dept].id))  # fmt: skip
    session.flush()
    audit.record(session, actor, "grid.setup", target=layout.DISTRICT, target_type="division",
                 count=added, detail=f"{added} areas added")  # fmt: skip
    return added


def _department(session: Session, actor: Principal, code: str, name: str, n: int) -> Organization:
    found = session.scalars(select(Organization).where(Organization.code == code)).first()
    if found is not None:
        return found
    uscc = identifiers.make_uscc("1", "1", layout.DISTRICT, f"{35100000 + n:08d}")
    return orgs.create_organization(session, actor, code=code, name=name, uscc=uscc,
                                    division_code=layout.DISTRICT, kind=OrgKind.DEPARTMENT)  # fmt: skip


def assign_worker(session: Session, actor: Principal, grid_code: str, user_id: int | None) -> Area:
    """Put a grid worker (网格员) on duty in a grid, or take them off."""
    authorize(session, actor, "grid.manage", target=grid_code, target_type="grid")
    area = session.get(Area, grid_code)
    if area is None or area.level != AreaLevel.GRID:
        raise NotFound(f"no grid {grid_code}", code="unknown-grid")
    before = area.worker_user_id
    area.worker_user_id = user_id
    audit.record(session, actor, "grid.assign", target=grid_code, target_type="grid",
                 detail=f"worker {before} -> {user_id}")  # fmt: skip
    return area


# --- filing ------------------------------------------------------------------------


@dataclass
class NewReport:
    """What a reporter sends: the Open311 POST fields, or the report page's form."""

    service_code: str
    description: str = ""
    lat: float | None = None
    long: float | None = None
    address_string: str = ""
    attributes: dict[str, list[str]] = field(default_factory=dict)
    # Uploads as sent, or photos already checked (`photos.process`, done by the caller before
    # its transaction so the decode holds no database lock).
    photos: Sequence[bytes | Processed] = ()
    contact: dict[str, str] = field(default_factory=dict)
    api_key_id: int | None = None


def get_service(session: Session, code: str) -> GridService:
    service = session.get(GridService, code)
    if service is None or not service.active:
        raise NotFound(f"service_code {code} not found", code="unknown-service")
    return service


def list_services(session: Session) -> list[GridService]:
    return list(
        session.scalars(select(GridService).where(GridService.active).order_by(GridService.code))
    )


def check_description(text: str) -> str:
    """A description is plain text of at most 4,000 characters."""
    text = text.strip()
    if len(text) > DESCRIPTION_MAX:
        raise Invalid(f"description is longer than {DESCRIPTION_MAX} characters",
                      field="description", code="description-too-long")  # fmt: skip
    if MARKUP.search(text):
        raise Invalid("description may not contain markup", field="description", code="markup")
    return text


def check_attributes(service: GridService, given: dict[str, list[str]]) -> dict[str, Any]:
    """The answers to the service's attributes, checked against its definition."""
    defined = {a["code"]: a for a in service.attributes}
    # An unknown attribute sent empty is what a generic form sends: ignored, not refused.
    unknown = sorted(c for c, v in given.items() if c not in defined and any(x.strip() for x in v))
    if unknown:
        raise Invalid(f"unknown attribute {unknown[0]}", field=f"attribute[{unknown[0]}]",
                      code="unknown-attribute")  # fmt: skip
    answers: dict[str, Any] = {}
    for code, spec in sorted(defined.items(), key=lambda kv: kv[1].get("order", 0)):
        values = [v.strip() for v in given.get(code, []) if v.strip()]
        if not values:
            if spec.get("required"):
                raise Invalid(f"attribute {code} is required", field=f"attribute[{code}]",
                              code="attribute-required")  # fmt: skip
            continue
        answers[code] = _attribute_value(code, spec, values)
    return answers


def _attribute_value(code: str, spec: dict[str, Any], values: list[str]) -> Any:
    datatype = spec.get("datatype", "string")
    keys = {str(v["key"]) for v in spec.get("values", [])}
    if datatype in ("singlevaluelist", "multivaluelist"):
        bad = [v for v in values if v not in keys]
        if bad or (datatype == "singlevaluelist" and len(values) > 1):
            raise Invalid(f"attribute {code}: {bad[0] if bad else values[1]} is not one of its values",
                          field=f"attribute[{code}]", code="attribute-value")  # fmt: skip
        return values if datatype == "multivaluelist" else values[0]
    value = values[0]
    if datatype == "number":
        try:
            return float(value)
        except ValueError:
            raise Invalid(f"attribute {code} is not a number", field=f"attribute[{code}]",
                          code="attribute-value") from None  # fmt: skip
    if MARKUP.search(value) or len(value) > 1000:
        raise Invalid(f"attribute {code} is not plain text of at most 1000 characters",
                      field=f"attribute[{code}]", code="attribute-value")  # fmt: skip
    return value


def file_report(session: Session, actor: Principal, store: PhotoStore, new: NewReport) -> Report:
    """Check everything first, then store the report and its photos and route it at once."""
    if not actor.authenticated:
        raise Unauthenticated("sign in to report an issue")
    service = get_service(session, new.service_code)
    description = check_description(new.description)
    address = new.address_string.strip()
    if MARKUP.search(address) or len(address) > 300:
        raise Invalid("address_string is not plain text of at most 300 characters",
                      field="address_string", code="markup")  # fmt: skip
    answers = check_attributes(service, new.attributes)
    if len(new.photos) > PHOTOS_MAX:
        raise Invalid(f"at most {PHOTOS_MAX} photos", field="media", code="photo-count")
    processed = [p if isinstance(p, Processed) else process(p) for p in new.photos]
    lat, long = new.lat, new.long
    if lat is None or long is None:
        located = next((p for p in processed if p.lat is not None and p.long is not None), None)
        if located is None:
            raise Invalid("a location is required: lat and long", field="lat",
                          code="location-missing")  # fmt: skip
        lat, long = located.lat, located.long
    if lat is None or long is None:  # for the type checker: both were set above
        raise Invalid("a location is required: lat and long", field="lat", code="location-missing")
    if not geo.in_province(lat, long):
        raise Invalid("the location is outside Fujian province", field="lat",
                      code="location-outside")  # fmt: skip
    place = geo.locate(session, lat, long, district_code=layout.DISTRICT)
    if place.grid_code is None:
        raise Invalid("no grid of this node covers the location", field="lat",
                      code="location-ungridded")  # fmt: skip
    now = clock.now()
    report = Report(
        token=secrets.token_urlsafe(12), service_code=service.code, description=description,
        attributes=answers, lat=lat, long=long,
        address=address or place.address,
        grid_code=place.grid_code, community_code=place.community_code,
        street_code=place.street_code, district_code=place.district_code,
        state=ReportState.ROUTED, reporter_user_id=actor.user_id, reporter=actor.label[:120],
        contact={k: v[:200] for k, v in new.contact.items() if v}, api_key_id=new.api_key_id,
        requested_at=now, updated_at=now, expected_at=now + timedelta(hours=service.close_hours),
        tasks=[], photos=[], steps=[],  # new and empty: never loaded from the database
    )  # fmt: skip
    session.add(report)
    session.flush()
    for item in processed:
        add_photo(session, store, report, item, kind="report")
    _step(session, actor, report, "reported", service.name)
    tasks = route(session, actor, report, service)
    # One record for the filing and its routing: the departments are in it.
    codes = ",".join(sorted(str(t.org_id) for t in tasks))
    audit.record(session, actor, "grid.report", target=str(report.id), target_type="grid-report",
                 detail=f"{service.code} at {place.grid_code} to orgs {codes}")  # fmt: skip
    return report


def add_photo(
    session: Session, store: PhotoStore, report: Report, item: Processed, *, kind: str
) -> Photo:
    """Store a checked photo; its objects are removed again if the transaction rolls back.
    The row is written with the transaction's next flush (one INSERT for all its rows)."""
    key, thumb_key = store.put(item)
    _forget_on_rollback(session, store, [key, thumb_key])
    photo = Photo(kind=kind, key=key, thumb_key=thumb_key, width=item.width,
                  height=item.height, size=len(item.jpeg), had_location=item.lat is not None)  # fmt: skip
    report.photos.append(photo)
    return photo


def _forget_on_rollback(session: Session, store: PhotoStore, keys: list[str]) -> None:
    written: list[str] | None = session.info.get("grid_written")
    if written is None:
        written = session.info["grid_written"] = []

        @event.listens_for(session, "after_rollback", once=True)
        def _remove(_session: Session) -> None:
            for key in session.info.pop("grid_written", []):
                store.delete(key)

        @event.listens_for(session, "after_commit", once=True)
        def _keep(_session: Session) -> None:
            session.info.pop("grid_written", None)

    written.extend(keys)


# --- routing -----------------------------------------------------------------------


def responsible(session: Session, report: Report) -> list[Organization]:
    """The departments of the most specific rules covering the report's place and category."""
    places = [c for c in (report.grid_code, report.community_code, report.street_code,
                          report.district_code) if c]  # fmt: skip
    rules = list(session.scalars(
        select(RoutingRule).where(RoutingRule.service_code == report.service_code)
        .where(RoutingRule.area_code.in_(places))
    ))  # fmt: skip
    if not rules:
        return []
    best = max(len(r.area_code) for r in rules)
    ids = sorted({r.org_id for r in rules if len(r.area_code) == best})
    return list(
        session.scalars(
            select(Organization).where(Organization.id.in_(ids)).order_by(Organization.code)
        )
    )


def route(session: Session, actor: Principal, report: Report, service: GridService) -> list[Task]:
    """Send the report to every responsible department, each with its SLA clocks."""
    departments = responsible(session, report)
    if not departments:
        centre = _org(session, catalog.GRID_CENTRE)
        departments = [centre] if centre else []
    tasks = [_add_task(session, actor, report, service, org, audited=False) for org in departments]
    events.publish(session, kind="grid.report.routed", subject=f"grid-report:{report.id}",
                   data={"report": report.id, "service": service.code, "grid": report.grid_code,
                         "street": report.street_code, "departments": [o.code for o in departments],
                         "lat": report.lat, "long": report.long})  # fmt: skip
    return tasks


def _add_task(
    session: Session, actor: Principal, report: Report, service: GridService, org: Organization,
    *, audited: bool = True,
) -> Task:  # fmt: skip
    now = clock.now()
    task = Task(org_id=org.id, state=TaskState.ROUTED, routed_at=now,
                arrive_by=now + timedelta(minutes=service.arrive_minutes),
                close_by=now + timedelta(hours=service.close_hours))  # fmt: skip
    report.tasks.append(task)
    _step(session, actor, report, "routed", org.name, org_id=org.id)
    if audited:
        audit.record(session, actor, "grid.route", target=str(report.id),
                     target_type="grid-report", detail=f"to {org.code}")  # fmt: skip
    return task


def _org(session: Session, code: str) -> Organization | None:
    return session.scalars(select(Organization).where(Organization.code == code)).first()


def reroute(
    session: Session,
    actor: Principal,
    report_id: int,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    note: str = "",
) -> Report:
    """The street office (or the grid centre, or an admin) adds and withdraws departments."""
    report = _get_report(session, report_id)
    if not may_reroute(session, actor, report):
        raise NotFound(f"no report {report_id}", code="unknown-report")
    if report.state == ReportState.CLOSED:
        raise Conflict(f"report {report_id} is closed", code="report-closed")
    if not add and not remove:
        raise Invalid("name a department to add or withdraw", field="add")
    service = get_service(session, report.service_code)
    current = {t.org_id: t for t in report.tasks if t.state != TaskState.WITHDRAWN}
    for code in remove:
        org = _org(session, code)
        task = current.get(org.id) if org else None
        if org is None or task is None:
            raise Invalid(f"{code} does not work on this report", field="remove")
        if task.state == TaskState.CLOSED:
            raise Conflict(f"{code} has already closed its part", code="task-closed")
        task.state = TaskState.WITHDRAWN
        _step(session, actor, report, "withdrawn", org.name, org_id=org.id)
    for code in add:
        org = _org(session, code)
        if org is None:
            raise Invalid(f"unknown department {code}", field="add")
        if org.id not in current:
            _add_task(session, actor, report, service, org)
    clean = check_description(note) if note else ""
    if clean:
        _step(session, actor, report, "note", clean)
    report.updated_at = clock.now()
    _settle(session, actor, report)
    audit.record(session, actor, "grid.reroute", target=str(report.id), target_type="grid-report",
                 detail=f"add {','.join(add) or '-'}; remove {','.join(remove) or '-'}")  # fmt: skip
    events.publish(session, kind="grid.report.rerouted", subject=f"grid-report:{report.id}",
                   data={"report": report.id, "added": list(add), "removed": list(remove)})  # fmt: skip
    return report


def may_reroute(session: Session, actor: Principal, report: Report) -> bool:
    """Whether the actor may reroute: the report's street office, the grid centre, an admin."""
    if actor.kind == "system" or actor.has_role(Role.ADMIN):
        return True
    if actor.organization_id is None or not decide(session, actor, "grid.work").allowed:
        return False
    street = session.get(Area, report.street_code) if report.street_code else None
    centre = _org(session, catalog.GRID_CENTRE)
    return actor.organization_id in {
        street.office_org_id if street else None,
        centre.id if centre else None,
    }


# --- departments at work -----------------------------------------------------------


def access_task(session: Session, actor: Principal, task_id: int) -> Task:
    """A task of the actor's own department; the same error for missing and not yours."""
    authorize(session, actor, "grid.work", target=str(task_id), target_type="grid-task")
    task = session.get(Task, task_id)
    if task is None or (actor.kind != "system" and task.org_id != actor.organization_id):
        raise NotFound(f"no task {task_id}", code="unknown-task")
    return task


def accept_task(session: Session, actor: Principal, task_id: int, *, note: str = "") -> Task:
    """The department has the report in hand and is on its way (the arrival clock stops)."""
    task = access_task(session, actor, task_id)
    if task.state != TaskState.ROUTED:
        raise Conflict(f"task {task_id} is {task.state}; accepting needs it routed",
                       code="task-state")  # fmt: skip
    task.state = TaskState.ACCEPTED
    task.accepted_at = clock.now()
    task.note = check_description(note) if note else task.note
    report = task.report
    org = session.get(Organization, task.org_id)
    _step(session, actor, report, "accepted", org.name if org else "", org_id=task.org_id)
    _settle(session, actor, report)
    audit.record(session, actor, "grid.accept", target=str(report.id), target_type="grid-report",
                 detail=f"task {task.id}")  # fmt: skip
    events.publish(session, kind="grid.task.accepted", subject=f"grid-report:{report.id}",
                   data={"report": report.id, "task": task.id,
                         "department": org.code if org else None})  # fmt: skip
    return task


def close_task(
    session: Session, actor: Principal, store: PhotoStore, task_id: int, *, note: str,
    photo: bytes,
) -> Task:  # fmt: skip
    """The department's part is done: a note and a photo of the result are required."""
    task = access_task(session, actor, task_id)
    if task.state != TaskState.ACCEPTED:
        raise Conflict(f"task {task_id} is {task.state}; closing needs it accepted",
                       code="task-state")  # fmt: skip
    clean = check_description(note)
    if not clean:
        raise Invalid("say what was done", field="note", code="note-required")
    if not photo:
        raise Invalid("a photo of the result is required", field="media", code="photo-required")
    processed = process(photo)
    report = task.report
    result = add_photo(session, store, report, processed, kind="result")
    session.flush()  # the result photo's id
    task.state = TaskState.CLOSED
    task.closed_at = clock.now()
    task.note = clean
    task.result_photo_id = result.id
    org = session.get(Organization, task.org_id)
    _step(session, actor, report, "closed", clean, org_id=task.org_id)
    audit.record(session, actor, "grid.close", target=str(report.id), target_type="grid-report",
                 detail=f"task {task.id}")  # fmt: skip
    events.publish(session, kind="grid.task.closed", subject=f"grid-report:{report.id}",
                   data={"report": report.id, "task": task.id,
                         "department": org.code if org else None})  # fmt: skip
    _settle(session, actor, report, closing_note=clean)
    return task


def _settle(session: Session, actor: Principal, report: Report, closing_note: str = "") -> None:
    """The report's state from its tasks: closed when every live task is closed."""
    live = [t for t in report.tasks if t.state != TaskState.WITHDRAWN]
    report.updated_at = clock.now()
    if live and all(t.state == TaskState.CLOSED for t in live):
        if report.state != ReportState.CLOSED:
            report.state = ReportState.CLOSED
            report.closed_at = report.updated_at
            report.status_notes = closing_note or report.status_notes
            _step(session, actor, report, "resolved", "")
            events.publish(session, kind="grid.report.closed", subject=f"grid-report:{report.id}",
                           data={"report": report.id})  # fmt: skip
    elif any(t.state in (TaskState.ACCEPTED, TaskState.CLOSED) for t in live):
        report.state = ReportState.IN_PROGRESS
    else:
        report.state = ReportState.ROUTED


# --- SLA clocks ----------------------------------------------------------------------


def overdue(now: datetime) -> Any:
    """The condition of a task whose next escalation is due at `now` (one SQL test)."""
    live = Task.state.in_([TaskState.ROUTED, TaskState.ACCEPTED])
    late_arrival = and_(Task.state == TaskState.ROUTED, Task.escalation < 1, Task.arrive_by < now)
    late_close = and_(Task.escalation < 2, Task.close_by < now)
    return and_(live, or_(late_arrival, late_close))


def escalate_overdue(session: Session, actor: Principal, *, now: datetime | None = None) -> int:
    """Tasks past their arrival time go up to the street office, past their close time to
    the district's grid centre; each step once, even with two runs at the same time.
    Returns how many tasks moved up."""
    authorize(session, actor, "grid.manage")
    now = now or clock.now()
    moved = 0
    for task in session.scalars(select(Task).where(overdue(now)).order_by(Task.id)).all():
        level = 2 if task.close_by < now else 1
        # Conditional on the level read: a concurrent run that moved it first wins, this one
        # skips (PostgreSQL re-reads the row after the other commits; SQLite serialises).
        won = session.execute(
            update(Task).where(Task.id == task.id, Task.escalation == task.escalation)
            .values(escalation=level).execution_options(synchronize_session=False)
        )  # fmt: skip
        if not _rowcount(won):
            continue
        session.refresh(task, ["escalation"])
        _escalation_step(session, actor, task, level)
        moved += 1
    if moved:
        audit.record(session, actor, "grid.escalate", target_type="grid-task", count=moved,
                     detail=f"due at {now.isoformat(timespec='seconds')}")  # fmt: skip
    return moved


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _escalation_step(session: Session, actor: Principal, task: Task, level: int) -> None:
    """The timeline step and event of a task moved up to `level`."""
    report = task.report
    street = session.get(Area, report.street_code) if report.street_code else None
    to = _org(session, catalog.GRID_CENTRE) if level == 2 else (
        session.get(Organization, street.office_org_id) if street and street.office_org_id else None
    )  # fmt: skip
    org = session.get(Organization, task.org_id)
    _step(session, actor, report, "escalated",
          f"{org.code if org else task.org_id} → {to.code if to else '-'}",
          org_id=to.id if to else None)  # fmt: skip
    events.publish(session, kind="grid.task.escalated", subject=f"grid-report:{report.id}",
                   data={"report": report.id, "task": task.id, "level": level,
                         "to": to.code if to else None})  # fmt: skip


# --- reading -------------------------------------------------------------------------


def _get_report(session: Session, report_id: int) -> Report:
    report = session.get(Report, report_id)
    if report is None:
        raise NotFound(f"no report {report_id}", code="unknown-report")
    return report


def access_report(session: Session, actor: Principal, report_id: int) -> Report:
    """The reporter's own report, or any report for civil servants; the same error otherwise.

    A civil servant's opening is a read of personal data (the reporter, their photos and,
    for those who work the report, their contact): it is audited before the page is sent.
    """
    report = session.get(Report, report_id)
    mine = (
        report is not None
        and actor.user_id is not None
        and report.reporter_user_id == actor.user_id
    )
    if report is None or not (mine or decide(session, actor, "grid.read").allowed):
        if not actor.authenticated:
            raise Unauthenticated("sign in to see this report")
        raise NotFound(f"no report {report_id}", code="unknown-report")
    if not mine:
        shown = {"contact": sees_contact(session, actor, report),
                 "photos": [p.id for p in report.photos]}  # fmt: skip
        audit.record_read(session, actor, "grid.report.read", target=str(report.id),
                          target_type="grid-report", keys=[str(report.id)],
                          purpose="grid.follow", detail=json.dumps(shown))  # fmt: skip
    return report


def sees_contact(session: Session, actor: Principal, report: Report) -> bool:
    """Who may see how to reach the reporter: the departments working the report, its street
    office and the grid centre (who reroute), administrators."""
    if actor.kind == "system" or actor.has_role(Role.ADMIN):
        return True
    working = {t.org_id for t in report.tasks if t.state != TaskState.WITHDRAWN}
    return actor.organization_id in working or may_reroute(session, actor, report)


def list_reports(
    session: Session, actor: Principal, *, state: str | None = None, limit: int = 200
) -> list[Report]:
    """Newest reports: every report for civil servants, a citizen's own otherwise."""
    if not actor.authenticated:
        raise Unauthenticated("sign in to see reports")
    query = select(Report).order_by(Report.id.desc()).limit(limit)
    if not decide(session, actor, "grid.read").allowed:
        query = query.where(Report.reporter_user_id == actor.user_id)
    if state:
        query = query.where(Report.state == state)
    return list(session.scalars(query))


def worklist(session: Session, actor: Principal, *, open_only: bool = True) -> list[Task]:
    """The tasks of the actor's department, most urgent first."""
    authorize(session, actor, "grid.work")
    if actor.organization_id is None:
        raise Forbidden("only a department's staff have a worklist")
    query = select(Task).where(Task.org_id == actor.organization_id)
    if open_only:
        query = query.where(Task.state.in_([TaskState.ROUTED, TaskState.ACCEPTED]))
    return list(session.scalars(query.order_by(Task.close_by, Task.id).limit(500)))


def get_photo(session: Session, actor: Principal | None, photo_id: int) -> Photo:
    """A stored (stripped) photo; public like the Open311 request it belongs to."""
    photo = session.get(Photo, photo_id)
    if photo is None:
        raise NotFound(f"no photo {photo_id}", code="unknown-photo")
    return photo


def areas(session: Session, level: str) -> list[Area]:
    return list(session.scalars(select(Area).where(Area.level == level).order_by(Area.code)))


def _step(
    session: Session, actor: Principal, report: Report, kind: str, note: str,
    *, org_id: int | None = None,
) -> Step:  # fmt: skip
    step = Step(kind=kind, note=note, org_id=org_id, actor=actor.label[:120],
                at=clock.now())  # fmt: skip
    report.steps.append(step)
    return step


def find_requests(
    session: Session,
    *,
    ids: Sequence[int] = (),
    service_codes: Sequence[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    statuses: Sequence[str] = (),
    limit: int = 1000,
    default_days: int = 90,
) -> list[Report]:
    """Open311 GET requests: by ids (then nothing else counts), else by the filters; newest
    first; without dates, the last `default_days` days."""
    query = select(Report).order_by(Report.requested_at.desc(), Report.id.desc()).limit(limit)
    if ids:
        return list(session.scalars(query.where(Report.id.in_(list(ids)))))
    unknown = sorted(set(statuses) - {"open", "closed"})
    if unknown:
        raise Invalid(f"status {unknown[0]} is not open or closed", field="status")
    if service_codes:
        query = query.where(Report.service_code.in_(list(service_codes)))
    if start is None and end is None:
        start = clock.now() - timedelta(days=default_days)
    if start is not None:
        query = query.where(Report.requested_at >= start)
    if end is not None:
        query = query.where(Report.requested_at <= end)
    if set(statuses) == {"closed"}:
        query = query.where(Report.state == ReportState.CLOSED)
    elif set(statuses) == {"open"}:
        query = query.where(Report.state != ReportState.CLOSED)
    return list(session.scalars(query))


def find_by_token(session: Session, token: str) -> Report:
    report = session.scalars(select(Report).where(Report.token == token)).first()
    if report is None:
        raise NotFound(f"token {token} not found", code="unknown-token")
    return report


def place_names(session: Session, report: Report) -> dict[str, str]:
    """The names of the report's street, community and grid."""
    codes = [c for c in (report.street_code, report.community_code, report.grid_code) if c]
    found = dict(session.execute(select(Area.code, Area.name).where(Area.code.in_(codes))).all())
    grid = session.get(Area, report.grid_code) if report.grid_code else None
    worker = session.get(User, grid.worker_user_id) if grid and grid.worker_user_id else None
    return {
        "street": found.get(report.street_code or "", ""),
        "community": found.get(report.community_code or "", ""),
        "grid": found.get(report.grid_code or "", ""),
        "worker": worker.display_name if worker else "",
    }


def outlines(session: Session) -> dict[str, Any]:
    """The streets and grids as one GeoJSON FeatureCollection (for the map)."""
    rows = session.execute(
        select(Area.code, Area.name, Area.level, Area.geometry)
        .where(Area.level.in_([AreaLevel.STREET, AreaLevel.GRID]))
        .order_by(Area.level.desc(), Area.code)
    ).all()  # fmt: skip
    return {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": g,
                      "properties": {"code": c, "name": n, "level": lv}} for c, n, lv, g in rows],
    }  # fmt: skip
