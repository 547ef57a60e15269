"""Load pages: upload a file into a resource, follow its load, its rejects, a data preview.

The upload goes through `ingest.service.upload_load`, as the API's does: options checked
before a byte is written, the file streamed to disk under the size limit, the load queued
as a job. Rejects and the preview are data: they are read through the reader's access plan
(`ingest.service.rejects_view`, `query.service.query_rows`), masked as rows are, and their
reads audited.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource
from minyun.catalog.pages import CATALOG_LABELS, ENCODINGS, FormErrors
from minyun.core.errors import Invalid
from minyun.core.security import Principal
from minyun.ingest import service
from minyun.ingest.models import LoadMode
from minyun.query import service as query
from minyun.web.deps import CsrfDep, IdPath, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import PageActorDep, gettext_for, render

router = APIRouter(include_in_schema=False)
REJECTS_SHOWN = 500
REJECTS_CSV = 100_000
PREVIEW_ROWS = 20

MODE_HELP: dict[str, str] = {
    "full": N_("Replace every row with the file's"),
    "append": N_("Add the file's rows"),
    "upsert": N_("Add new keys, replace the rows of known ones (needs a primary key)"),
    "delete": N_("Delete the rows whose keys the file lists (needs a primary key)"),
}
# What a load job says while it runs (`ingest.service._run`), in the page's language.
STEPS: tuple[tuple[str, str], ...] = (
    (r"fetching", N_("Fetching the file")),
    (r"reading", N_("Reading the file")),
    (r"validating (?P<n>[\d,]+) rows", N_("Checking %(n)s rows")),
    (r"writing", N_("Writing the new version")),
    (r"recording", N_("Recording the version")),
    (r"version (?P<n>\d+)", N_("Version %(n)s committed")),
    (r"quality", N_("Quality report")),
)
# The reasons of rejects (`ingest.validate`), in the page's language; numbers kept.
REASONS: tuple[tuple[str, str], ...] = (
    (r"required", N_("Required value missing")),
    (r"not a valid (?P<t>integer|number|boolean|date|datetime|time|year)", N_("Not a valid %(t)s")),
    (r"not a year", N_("Not a year")),
    (r"not one of the allowed values", N_("Not one of the allowed values")),
    (r"not in the code list", N_("Not in the code list")),
    (r"does not match the pattern", N_("Does not match the pattern")),
    (r"below the minimum (?P<v>.+)", N_("Below the minimum %(v)s")),
    (r"above the maximum (?P<v>.+)", N_("Above the maximum %(v)s")),
    (r"shorter than (?P<v>\d+)", N_("Shorter than %(v)s characters")),
    (r"longer than (?P<v>\d+)", N_("Longer than %(v)s characters")),
    (r"not a valid identity number \(GB 11643\)", N_("Not a valid identity number (GB 11643)")),
    (r"not a valid credit code \(GB 32100\)", N_("Not a valid credit code (GB 32100)")),
    (r"not an e-mail address", N_("Not an e-mail address")),
    (r"duplicate primary key", N_("Duplicate primary key")),
    (r"duplicate primary key \(first at row (?P<v>\d+)\)", N_("Duplicate primary key (first at row %(v)s)")),
    (r"duplicate value", N_("Duplicate value")),
    (r"duplicate value \(first at row (?P<v>\d+)\)", N_("Duplicate value (first at row %(v)s)")),
)  # fmt: skip
# Why a load failed or was refused (`ingest.service`, `ingest.sources`), in the page's language.
LOAD_ERRORS: tuple[tuple[str, str], ...] = (
    (r"(?P<r>[\d,]+) of (?P<n>[\d,]+) rows broke the schema \((?P<p>[^)]+)\), more than the "
     r"(?P<t>\S+) allowed for \S+; nothing was committed",
     N_("%(r)s of %(n)s rows broke the schema (%(p)s), more than the %(t)s allowed: "
        "nothing was committed.")),
    (r"the file is not valid (?P<e>\S+) \(bad bytes at offset (?P<o>\d+)\)",
     N_("The file is not valid %(e)s (bad bytes at offset %(o)s): choose its encoding.")),
    (r"cannot read the source: the file is not valid UTF-8.*",
     N_("The file is not UTF-8 text: upload it again and choose its encoding (GBK or GB18030 "
        "for most files saved by Excel or WPS).")),
    (r"the header does not match the schema: missing (?P<m>.+?) \(the file has (?P<h>.*)\); .*",
     N_("The header does not match the schema: %(m)s missing (the file has %(h)s). Check the "
        "delimiter, the encoding and the header row.")),
    (r"the input has no data rows.*",
     N_("The file has no data rows: a full load would empty the resource.")),
    (r"same input as load (?P<v>\d+)",
     N_("The same file as load %(v)s: no new version.")),
)  # fmt: skip
TYPE_NAMES = {
    "integer": N_("integer"),
    "number": N_("number"),
    "boolean": N_("yes / no value"),
    "date": N_("date"),
    "datetime": N_("date and time"),
    "time": N_("time of day"),
    "year": N_("year"),
}
NO_SCHEMA = N_("The resource has no schema yet: set its schema before loading data.")
CSV_HEADER = (N_("Row"), N_("Field"), N_("Reason"), N_("Record"))


def _translated(
    gettext: Callable[[str], str], table: tuple[tuple[str, str], ...], text: str | None
) -> str:
    """`text` in the page's language when one of `table`'s patterns says it whole."""
    if not text:
        return ""
    for pattern, message in table:
        found = re.fullmatch(pattern, text)
        if found:
            args = {k: gettext(TYPE_NAMES.get(v, v)) for k, v in found.groupdict().items()}
            return gettext(message) % args if args else gettext(message)
    return text


@dataclass(frozen=True)
class Texts:
    """What the load pages say of the service's words (reasons, steps, errors), translated."""

    gettext: Callable[[str], str]

    def reason(self, text: str | None) -> str:
        return _translated(self.gettext, REASONS, text)

    def step(self, text: str | None) -> str:
        return _translated(self.gettext, STEPS, text)

    def error(self, text: str | None) -> str:
        return _translated(self.gettext, LOAD_ERRORS, text)


def _texts(request: Request) -> Texts:
    return Texts(gettext_for(request))


# --- uploading ----------------------------------------------------------------------------------


def _upload_page(
    request: Request,
    resource: Resource,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    *,
    status_code: int = 200,
    limit: int,
) -> HTMLResponse:
    return render(
        request,
        "catalog/upload.html",
        status_code=status_code,
        resource=resource,
        values=values,
        errors=errors,
        modes=[m.value for m in LoadMode],
        mode_help=MODE_HELP,
        encodings=ENCODINGS,
        limit_mib=f"{limit / (1 << 20):,.0f}",
        labels=CATALOG_LABELS,
    )


def _managed(session: Session, actor: Principal, code: str) -> Resource:
    """The resource if the actor may load into it (its provider's stewards, admins)."""
    return catalog.access_managed(session, actor, code, "resource.load")


def _place(errors: FormErrors, exc: Invalid) -> None:
    if exc.extra.get("field") == "schema":
        errors["form"] = errors.gettext(NO_SCHEMA)
    else:
        errors.place(exc, default="file")


@router.get("/catalog/{code}/loads/new")
def upload_form(
    request: Request,
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
) -> HTMLResponse:
    """Upload a file for a load: the load mode and the text encoding to read it with."""
    resource = _managed(session, actor, code)
    errors = FormErrors(gettext_for(request))
    try:
        service.check_can_load(session, actor, code)
    except Invalid as exc:  # no schema yet: the form says so
        _place(errors, exc)
    values = {"mode": "full", "encoding": ""}
    return _upload_page(request, resource, values, errors, limit=platform.settings.upload_max_bytes)


@router.post("/catalog/{code}/loads", dependencies=[CsrfDep])
def upload(
    request: Request,
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
    file: Annotated[UploadFile | None, File()] = None,
    mode: Annotated[str, Form(max_length=16)] = "full",
    encoding: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Stream the file to disk and queue its load; then follow it on the load's page."""
    resource = _managed(session, actor, code)
    values = {"mode": mode, "encoding": encoding}
    errors = FormErrors(gettext_for(request))
    try:
        with session.begin_nested():
            if mode not in {m.value for m in LoadMode}:
                raise Invalid(f"unknown load mode {mode!r}", field="mode")
            job = service.upload_load(
                session, actor, code, file.file if file else None,
                filename=file.filename if file else None, mode=LoadMode(mode),
                encoding=encoding.strip() or None, settings=platform.settings,
            )  # fmt: skip
    except Invalid as exc:
        _place(errors, exc)
        return _upload_page(request, resource, values, errors, status_code=422,
                            limit=platform.settings.upload_max_bytes)  # fmt: skip
    return RedirectResponse(f"/catalog/{code}/loads/{job.id}", 303)


@router.get("/catalog/{code}/loads/{job_id}")
def load_page(
    request: Request, code: str, job_id: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """One load: its progress, live while it runs (the part below refreshes itself)."""
    status = service.access_load(session, actor, code, job_id[:64])
    resource = catalog.get_resource(session, code)
    return render(
        request, "catalog/load.html", resource=resource, load=status, code=code,
        labels=CATALOG_LABELS, texts=_texts(request),
    )  # fmt: skip


@router.get("/catalog/{code}/loads/{job_id}/progress")
def load_progress(
    request: Request, code: str, job_id: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """The progress part of a load's page (htmx polls it every second until the load ends)."""
    status = service.access_load(session, actor, code, job_id[:64])
    return render(
        request, "catalog/_load_progress.html", load=status, code=code, labels=CATALOG_LABELS,
        texts=_texts(request),
    )  # fmt: skip


# --- rejects and preview --------------------------------------------------------------------------


@router.get("/catalog/{code}/versions/{version}/rejects")
def rejects_page(
    request: Request,
    code: str,
    version: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
    reason: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """The rows one load refused: row number, field, reason; filtered by reason."""
    view = service.rejects_view(
        session, platform.lake, actor, code, version, reason=reason or None, limit=REJECTS_SHOWN
    )
    rows = service.rejects_json(view.table)
    return render(
        request, "catalog/rejects.html", resource=catalog.get_resource(session, code),
        view=view, rows=rows, shown=REJECTS_SHOWN, labels=CATALOG_LABELS, texts=_texts(request),
    )  # fmt: skip


@router.get("/catalog/{code}/versions/{version}/rejects.csv")
def rejects_csv(
    request: Request,
    code: str,
    version: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
    reason: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The same rejects as a CSV file (UTF-8 with a byte-order mark, for Excel and WPS)."""
    table = service.read_rejects(
        session, platform.lake, actor, code, version=version, limit=REJECTS_CSV,
        reason=reason or None,
    )  # fmt: skip
    gettext = gettext_for(request)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([gettext(h) for h in CSV_HEADER])
    columns = table.to_pydict()
    for row_number, field, why, record in zip(
        columns["row_number"], columns["field"], columns["reason"], columns["record"],
        strict=True,
    ):  # fmt: skip
        writer.writerow([row_number, field or "", _translated(gettext, REASONS, why), record])
    name = f"{code}-load-{version}-rejects.csv"
    return Response(
        out.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/catalog/{code}/preview")
def preview(
    request: Request,
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
) -> HTMLResponse:
    """The first rows of the newest version, as the reader's access plan shows them."""
    resource = catalog.access_resource(session, actor, code)
    page = None
    empty = resource.lake_version is None
    if not empty:
        page = query.query_rows(
            session, platform.lake, actor, code, limit=PREVIEW_ROWS, purpose="preview"
        )
    rows = [
        {k: _cell(v) for k, v in row.items()} for row in (page.table.to_pylist() if page else [])
    ]
    return render(
        request, "catalog/preview.html", resource=resource, columns=page.table.column_names
        if page else [], rows=rows, version=page.version if page else None,
        limit=PREVIEW_ROWS, labels=CATALOG_LABELS,
    )  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
