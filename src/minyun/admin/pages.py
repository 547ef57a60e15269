"""Operator pages: the audit log (filters, CSV export, chain verification), and jobs with live
progress."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from minyun.admin import service
from minyun.core import audit, clock
from minyun.core.errors import Invalid
from minyun.web.deps import INT64_MAX, CsrfDep, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import (
    ACTIONS,
    CHINA_TIME,
    PageActorDep,
    gettext_for,
    is_htmx,
    render,
)
from minyun.web.wording import sentence

router = APIRouter(include_in_schema=False)
AUDIT_PAGE = 50

# What running jobs report, as the pages say it (see minyun.web.wording).
JOB_MESSAGES = [
    N_("fetching"), N_("reading"), N_("writing"), N_("recording"), N_("quality"),
    N_("published"), N_("departments and accounts"),
]  # fmt: skip
for _pattern, _message in (
    (r"validating (?P<rows>[\d,]+) rows", N_("validating %(rows)s rows")),
    (r"version (?P<version>\d+)", N_("version %(version)s committed")),
    (r"persons: (?P<done>[\d,]+) / (?P<total>[\d,]+)", N_("persons: %(done)s / %(total)s")),
    (r"enterprises: (?P<done>[\d,]+) / (?P<total>[\d,]+)",
     N_("enterprises: %(done)s / %(total)s")),
    (r"resources (?P<done>\d+) / (?P<total>\d+): (?P<code>\S+)",
     N_("resources %(done)s / %(total)s: %(code)s")),
):  # fmt: skip
    sentence(_pattern, _message)


# The audit viewer's filters, as the form sends them and the export link repeats them.
FILTERS = ("actor", "action", "outcome", "object", "since", "until", "reads")


def _china_time(value: str | None) -> datetime | None:
    """A date or date-and-time typed in China time (the form's datetime-local), or None."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"not a date or time: {text}", field="time") from None
    return moment.replace(tzinfo=CHINA_TIME) if moment.tzinfo is None else moment


def _audit_filters(request: Request) -> tuple[service.AuditFilters, dict[str, str]]:
    """The filters of the query string, and the form's values to show back."""
    form = {name: request.query_params.get(name, "").strip()[:100] for name in FILTERS}
    outcome = form["outcome"] if form["outcome"] in set(audit.Outcome) else ""
    form["outcome"] = outcome
    filters = service.AuditFilters(
        actor=form["actor"] or None,
        action=form["action"] or None,
        outcome=outcome or None,
        target=form["object"] or None,
        since=_china_time(form["since"]),
        until=_china_time(form["until"]),
        include_reads=form["reads"] == "1",
    )
    return filters, form


@router.get("/audit")
def audit_log(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    before: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
) -> HTMLResponse:
    """Audit records, newest first, 50 a page; filtered by actor, action, outcome, object and
    time; the viewer's own reads hidden unless asked for. Each page view is one audit record."""
    try:
        filters, form = _audit_filters(request)
        problem = None
    except Invalid as exc:
        filters, form, problem = service.AuditFilters(), {n: "" for n in FILTERS}, str(exc)
    records = service.read_audit(session, actor, before=before, limit=AUDIT_PAGE, filters=filters)
    older = records[-1].seq if len(records) == AUDIT_PAGE else None
    query = {k: v for k, v in form.items() if v}
    return render(
        request,
        "admin/audit.html",
        status_code=422 if problem else 200,
        rows=service.describe_audit(session, records),
        actions=sorted({*service.audit_actions(session, actor), *ACTIONS}),
        form=form,
        query=query,
        problem=problem,
        before=before,
        older=older,
        outcomes=list(audit.Outcome),
    )


@router.get("/audit/export.csv")
def audit_export(
    request: Request, session: SessionDep, actor: PageActorDep, platform: PlatformDep
) -> StreamingResponse:
    """The records the filters select as CSV, streamed in batches: one audit record for the
    whole export, written before the first byte leaves."""
    filters, _form = _audit_filters(request)
    service.export_audit(session, actor, filters)
    gettext = gettext_for(request)
    header = [gettext(h) for h in CSV_HEADER]

    def lines() -> Iterator[bytes]:
        yield "\ufeff".encode()  # a BOM: spreadsheet programs then read the file as UTF-8
        yield _csv_line(header)
        for batch in service.iter_audit(platform.factory, filters):
            yield b"".join(_csv_line(_csv_row(row)) for row in batch)

    stamp = clock.now().astimezone(CHINA_TIME).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


CSV_HEADER = (
    N_("Sequence"), N_("Time"), N_("Actor"), N_("Name"), N_("On behalf of"), N_("Action"),
    N_("Object type"), N_("Object"), N_("Records"), N_("Purpose"), N_("Outcome"), N_("Detail"),
    N_("Request"), N_("Client address"),
)  # fmt: skip


def _csv_row(row: service.AuditRow) -> list[Any]:
    r = row.record
    return [
        r.seq, r.at.astimezone(CHINA_TIME).isoformat(timespec="seconds"), r.actor,
        row.actor_name or "", r.on_behalf_of or "", r.action, r.object_type or "",
        r.object_id or "", "" if r.record_count is None else r.record_count, r.purpose or "",
        r.outcome, r.detail or "", r.request_id or "", r.client_ip or "",
    ]  # fmt: skip


def _csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode("utf-8")


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
    """Recent jobs with their state and progress, the resource each works on and who asked."""
    found = service.read_jobs(session, actor, limit=50)
    return render(request, "admin/jobs.html", jobs=service.describe_jobs(session, found))


@router.get("/jobs/{job_id}")
def job_page(
    request: Request, job_id: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """One job; while it runs the progress part refreshes itself every second."""
    job = service.read_job(session, actor, job_id)
    return render(request, "admin/job.html", job=job, view=service.describe_jobs(session, [job])[0])


@router.get("/jobs/{job_id}/progress")
def job_progress(
    request: Request, job_id: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """The progress part of a job page (htmx polls it)."""
    return render(request, "admin/_job_progress.html", job=service.read_job(session, actor, job_id))
