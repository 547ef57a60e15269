"""The steward's work on the web: register a resource, its metadata and schema versions, loads,
rejects, a data preview, retire and restore.

Pages only translate HTTP: every change and every read is a call of the same service
functions as the API and the CLI (`catalog.service`, `ingest.service`, `query.service`). A
form refused for its input comes back with what was typed and the error beside its field;
the refused change is rolled back to a savepoint first, so nothing of it is kept. A refusal
of the actor (403) is not a form error: it is the error page, and it is audited. Rejects and
the preview are data: they are read through the reader's access plan, masked as rows are,
and their reads audited.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as Upload

from minyun.catalog import service
from minyun.catalog.models import OpenType, Resource, SharingType, UpdateCycle
from minyun.catalog.pages import CATALOG_LABELS
from minyun.catalog.themes import BASE_LIBRARY_BY_CODE, THEMES
from minyun.core.errors import Conflict, DomainError, Invalid, NotFound
from minyun.core.security import Principal
from minyun.ingest import service as ingest
from minyun.ingest.models import LoadMode
from minyun.query import service as query
from minyun.steward import forms
from minyun.web.deps import CsrfDep, IdPath, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import (
    CHINA_TIME,
    PageActorDep,
    gettext_for,
    render,
    request_locale,
)

router = APIRouter(include_in_schema=False)

# A schema editor posts some ten inputs per field (at most forms.MAX_ROWS fields).
EDITOR_FIELDS = 12 * forms.MAX_ROWS + 100


async def form_data(request: Request) -> FormData:
    """The posted form as parsed for the route (parsed once; cached by the request)."""
    return await request.form()


FormDep = Annotated[FormData, Depends(form_data)]

TYPE_LABELS: dict[str, str] = {
    "string": N_("Text"),
    "integer": N_("Integer"),
    "number": N_("Number"),
    "boolean": N_("Yes / no"),
    "date": N_("Date"),
    "datetime": N_("Date and time"),
    "time": N_("Time of day"),
    "year": N_("Year"),
}
FORMAT_LABELS: dict[str, str] = {
    "": N_("Any"),
    "cn-ric": N_("Resident identity number (GB 11643)"),
    "cn-uscc": N_("Unified social credit code (GB 32100)"),
    "email": N_("E-mail address"),
    "uri": N_("Web address"),
    "uuid": N_("UUID"),
}
MASK_LABELS: dict[str, str] = {
    "": N_("No mask"),
    "keep(3,4)": N_("Keep first 3 and last 4"),
    "keep(6,4)": N_("Keep first 6 and last 4"),
    "keep(1,1)": N_("Keep first and last"),
    "name": N_("Name: surname kept"),
    "address(city)": N_("Address to the city"),
    "address(county)": N_("Address to the county"),
    "date(year)": N_("Year only"),
    "date(month)": N_("Year and month only"),
    "pseudonym": N_("Pseudonym"),
    "null": N_("Hidden"),
}
SHARING_LABELS: dict[str, str] = {
    "unconditional": N_("Unconditional sharing"),
    "conditional": N_("Conditional sharing"),
    "none": N_("Not shared"),
}
OPEN_LABELS: dict[str, str] = {
    "unconditional": N_("Unconditionally open"),
    "conditional": N_("Conditionally open"),
    "none": N_("Not open"),
}
RESOURCE_FORMAT_LABELS: dict[str, str] = {
    "table": N_("Table"),
    "file": N_("File"),
    "api": N_("Interface"),
    "stream": N_("Stream"),
}
ENCODINGS: dict[str, str] = {
    "": N_("UTF-8 (default)"),
    "gb18030": "GB18030",
    "gbk": "GBK",
    "big5": "Big5",
    "utf-16": "UTF-16",
}
# The errors of the steward's forms, by (error code, field): what the page says beside the
# field. Any other error is shown as the service wrote it.
FORM_ERRORS: dict[tuple[str, str | None], str] = {
    ("invalid", "code"): N_("2 to 64 of a-z 0-9 . _ -, starting with a letter or digit."),
    ("conflict", "code"): N_("A resource with this code exists."),
    ("not-found", "provider"): N_("Choose the providing organisation."),
    ("invalid", "name"): N_("At least 2 characters."),
    ("invalid", "theme"): N_("Choose a domain from the list."),
    ("invalid", "base_library"): N_("Choose a base library from the list."),
    ("invalid", "sharing_type"): N_("Choose a value from the list."),
    ("invalid", "open_type"): N_(
        "A resource that is not shared with other departments cannot be opened to the public."
    ),
    ("invalid", "update_cycle"): N_("Choose a value from the list."),
    ("invalid", "legal_basis"): N_(
        "Conditional or no sharing or opening needs its legal basis (laws and regulations)."
    ),
    ("invalid", "sample"): N_("Choose a sample file."),
    ("empty", "sample"): N_("The sample file is empty."),
    ("empty-sample", "sample"): N_("The sample has a header but no rows."),
    ("too-many-columns", "sample"): N_("The sample has too many columns (at most 500)."),
    ("wrong-encoding", "encoding"): N_(
        "The file is not UTF-8 text: choose its encoding (GBK or GB18030 for most files "
        "saved by Excel or WPS)."
    ),
    ("bad-source", "encoding"): N_("Unknown text encoding."),
    ("too-large", None): N_("The file is larger than the limit of %(limit)s."),
    ("schema-incompatible", None): N_(
        "This change is incompatible with schema %(version)s (a field dropped, a type or a "
        "rule narrowed): tick “New major version” to save it as one."
    ),
    ("invalid", "reason"): N_("Give the reason."),
    ("invalid", "file"): N_("Choose a file."),
    ("empty-file", "file"): N_("The file is empty."),
    ("invalid", "mode"): N_("This load mode needs a primary key in the schema."),
}
SAMPLE_UNREADABLE = N_("The sample cannot be read: %(detail)s")
FIELD_PROBLEM = N_("Check this field: %(detail)s")


# --- the steward's forms ---------------------------------------------------------------------


def form_error(gettext: Callable[[str], str], exc: DomainError) -> tuple[str | None, str]:
    """The field an error belongs to and what the page says of it, in the page's language."""
    field = exc.extra.get("field")
    field = str(field) if field is not None else None
    template = FORM_ERRORS.get((exc.code, field)) or FORM_ERRORS.get((exc.code, None))
    if template is not None:
        return field, gettext(template) % _error_args(exc)
    if field == "sample":
        return field, gettext(SAMPLE_UNREADABLE) % {"detail": str(exc)}
    return field, gettext(str(exc))


def _error_args(exc: DomainError) -> dict[str, str]:
    limit = exc.extra.get("limit")
    size = file_size(limit) if isinstance(limit, int) else ""
    return {"limit": size, "version": str(exc.extra.get("current_version") or "")}


def file_size(n: int) -> str:
    """A size as people read it: 1 GiB, 32 MiB, 9.77 KiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


class FormErrors(dict[str, str]):
    """Errors by form field; `place` puts a domain error beside the field it names."""

    def __init__(self, gettext: Callable[[str], str]) -> None:
        super().__init__()
        self.gettext = gettext

    def place(
        self, exc: DomainError, editor: forms.SchemaForm | None = None, *, default: str = "form"
    ) -> None:
        field, message = form_error(self.gettext, exc)
        if field in forms.METADATA or field in ("sample", "encoding", "reason", "file", "mode"):
            self[field] = message
        elif editor is not None and field is not None:
            editor.blame(field, self.gettext(FIELD_PROBLEM) % {"detail": message})
        elif editor is not None and exc.code == "schema-incompatible":
            editor.error = message
        else:
            self[default] = message


def _choices(locale: str) -> dict[str, Any]:
    """What the metadata form's selects offer, with their labels."""
    return {
        **forms.choices(),
        "themes": [(t.code, t.name(locale)) for t in THEMES],
        "libraries": [(t.code, t.name(locale)) for t in BASE_LIBRARY_BY_CODE.values()],
        "cycles": [c.value for c in UpdateCycle],
        "sharing_types": [t.value for t in SharingType],
        "open_types": [t.value for t in OpenType],
        "encodings": ENCODINGS,
        "type_labels": TYPE_LABELS,
        "format_labels": FORMAT_LABELS,
        "mask_labels": MASK_LABELS,
        "resource_format_labels": RESOURCE_FORMAT_LABELS,
        "sharing_labels": SHARING_LABELS,
        "open_labels": OPEN_LABELS,
    }


def _form_page(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A steward's form: the catalog's labels and what its selects offer come with it."""
    return render(
        request,
        template,
        status_code=status_code,
        labels=CATALOG_LABELS,
        choices=_choices(request_locale(request)),
        **context,
    )


def _new_page(
    request: Request,
    session: Session,
    actor: Principal,
    values: Mapping[str, str],
    editor: forms.SchemaForm,
    errors: Mapping[str, str],
    *,
    status_code: int = 200,
    sample_rows: int | None = None,
    encoding: str = "",
) -> HTMLResponse:
    return _form_page(
        request,
        "catalog/new.html",
        encoding=encoding,
        status_code=status_code,
        providers=service.providers_for(session, actor),
        values=values,
        editor=editor,
        errors=errors,
        sample_rows=sample_rows,
    )


NEW_DEFAULTS = {
    "format": "table",
    "update_cycle": str(UpdateCycle.IRREGULAR),
    "sharing_type": str(SharingType.CONDITIONAL),
    "open_type": str(OpenType.NONE),
}


@router.get("/catalog/new")
def new_resource(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """Register a resource: metadata, and a schema that starts from a sample file."""
    providers = service.providers_for(session, actor)
    values = {name: "" for name in forms.METADATA} | NEW_DEFAULTS
    own = [o for o in providers if o.id == actor.organization_id]
    if own or len(providers) == 1:  # a steward registers for their own department
        values["provider"] = (own or providers)[0].code
    return _new_page(request, session, actor, values, forms.SchemaForm(), {})


def _encoding(form: FormData) -> str:
    value = form.get("encoding")
    return value.strip() if isinstance(value, str) else ""


def _upload(form: FormData, name: str) -> Upload | None:
    """A file the form carries (a parsed form holds Starlette's uploads, not FastAPI's)."""
    value = form.get(name)
    return value if isinstance(value, Upload) and value.filename else None


def _read_sample(
    session: Session,
    actor: Principal,
    form: FormData,
    platform: PlatformDep,
    errors: FormErrors,
) -> tuple[forms.SchemaForm | None, int | None]:
    """The editor's rows inferred from the posted sample, or None with the error placed."""
    upload = _upload(form, "sample")
    encoding = _encoding(form) or None
    try:
        sample = ingest.infer_sample(
            session, actor, upload.file if upload else None,
            filename=upload.filename if upload else None, encoding=encoding,
            settings=platform.settings,
        )  # fmt: skip
    except Invalid as exc:
        errors.place(exc, default="sample")
        return None, None
    examples = {c.name: c.example for c in sample.columns}
    return forms.SchemaForm(forms.rows_from_descriptor(sample.descriptor, examples)), sample.rows


@router.post("/catalog/new", dependencies=[CsrfDep], form_limits={"max_fields": EDITOR_FIELDS})
def create_resource(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
    form: FormDep,
) -> Response:
    """Read a sample into the editor, add a field, or register the resource (by `op`)."""
    values = forms.metadata_from_form(form)
    editor = forms.rows_from_form(form)
    errors = FormErrors(gettext_for(request))
    op = form.get("op")
    if op == "sample":
        inferred, rows = _read_sample(session, actor, form, platform, errors)
        status = 422 if errors else 200
        return _new_page(
            request,
            session,
            actor,
            values,
            inferred or editor,
            errors,
            status_code=status,
            sample_rows=rows,
            encoding=_encoding(form),
        )
    if op == "add":
        editor.rows.append(forms.FieldRow())
        return _new_page(request, session, actor, values, editor, errors)
    kept = [r for r in editor.rows if r.keep]
    try:
        with session.begin_nested():
            service.create_resource(
                session, actor, code=values["code"], name=values["name"],
                provider=values["provider"], summary=values["summary"],
                theme=values["theme"] or None, base_library=values["base_library"] or None,
                format=values["format"] or "table", update_cycle=values["update_cycle"],
                sharing_type=values["sharing_type"],
                sharing_condition=values["sharing_condition"] or None,
                open_type=values["open_type"], open_condition=values["open_condition"] or None,
                legal_basis=values["legal_basis"] or None,
                schema=editor.descriptor() if kept else None,
            )  # fmt: skip
    except (Invalid, Conflict, NotFound) as exc:
        if isinstance(exc, NotFound):  # the only thing looked up is the provider
            exc.extra.setdefault("field", "provider")
        errors.place(exc, editor)
        return _new_page(request, session, actor, values, editor, errors, status_code=422)
    return RedirectResponse(f"/catalog/{values['code']}", 303)


def _metadata_of(resource: Resource) -> dict[str, str]:
    values = {name: str(getattr(resource, name, "") or "") for name in forms.METADATA}
    values["provider"] = resource.provider.code
    return values


def _edit_page(
    request: Request,
    resource: Resource,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return _form_page(
        request,
        "catalog/edit.html",
        status_code=status_code,
        resource=resource,
        values=values,
        errors=errors,
    )


@router.get("/catalog/{code}/edit")
def edit_form(
    request: Request, code: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """The resource's metadata, to edit (its provider's stewards, or admins)."""
    resource = service.access_managed(session, actor, code, "resource.edit")
    return _edit_page(request, resource, _metadata_of(resource), {})


@router.post("/catalog/{code}/edit", dependencies=[CsrfDep])
def edit(
    request: Request, code: str, session: SessionDep, actor: PageActorDep, form: FormDep
) -> Response:
    """Save the metadata; the form comes back with the error beside its field."""
    resource = service.access_managed(session, actor, code, "resource.edit")
    values = forms.metadata_from_form(form) | {"code": code, "provider": resource.provider.code}
    changes: dict[str, Any] = {name: values[name] for name in service.EDITABLE}
    for name in ("theme", "base_library"):
        changes[name] = changes[name] or None
    errors = FormErrors(gettext_for(request))
    try:
        with session.begin_nested():
            service.update_resource(session, actor, code, changes)
    except (Invalid, Conflict) as exc:
        errors.place(exc)
        session.refresh(resource)
        return _edit_page(request, resource, values, errors, status_code=422)
    return RedirectResponse(f"/catalog/{code}", 303)


def _schema_page(
    request: Request,
    session: Session,
    resource: Resource,
    editor: forms.SchemaForm,
    errors: Mapping[str, str],
    *,
    major: bool = False,
    status_code: int = 200,
    sample_rows: int | None = None,
    encoding: str = "",
) -> HTMLResponse:
    return _form_page(
        request,
        "catalog/schema.html",
        encoding=encoding,
        status_code=status_code,
        resource=resource,
        schemas=service.schema_history(session, resource),
        editor=editor,
        errors=errors,
        major=major,
        sample_rows=sample_rows,
    )


@router.get("/catalog/{code}/schema")
def schema_form(
    request: Request, code: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """The schema in force in the editor, for a new version."""
    resource = service.access_managed(session, actor, code, "resource.edit")
    row = service.current_schema(session, resource)
    editor = forms.SchemaForm(forms.rows_from_descriptor(row.descriptor if row else None))
    return _schema_page(request, session, resource, editor, {})


@router.post(
    "/catalog/{code}/schema", dependencies=[CsrfDep], form_limits={"max_fields": EDITOR_FIELDS}
)
def save_schema(
    request: Request,
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
    form: FormDep,
) -> Response:
    """Read a sample into the editor, add a field, or save a new schema version (by `op`)."""
    resource = service.access_managed(session, actor, code, "resource.edit")
    editor = forms.rows_from_form(form)
    major = form.get("major") is not None
    errors = FormErrors(gettext_for(request))
    op = form.get("op")
    if op == "sample":
        inferred, rows = _read_sample(session, actor, form, platform, errors)
        return _schema_page(
            request,
            session,
            resource,
            inferred or editor,
            errors,
            major=major,
            status_code=422 if errors else 200,
            sample_rows=rows,
            encoding=_encoding(form),
        )
    if op == "add":
        editor.rows.append(forms.FieldRow())
        return _schema_page(request, session, resource, editor, errors, major=major)
    try:
        with session.begin_nested():
            service.set_schema(session, actor, code, editor.descriptor(), major=major)
    except (Invalid, Conflict) as exc:
        errors.place(exc, editor)
        session.refresh(resource)
        return _schema_page(
            request,
            session,
            resource,
            editor,
            errors,
            major=major,
            status_code=422 if isinstance(exc, Invalid) else 409,
        )
    return RedirectResponse(f"/catalog/{code}#schema", 303)


def _confirm_page(
    request: Request,
    resource: Resource,
    what: str,
    reason: str,
    errors: Mapping[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "catalog/confirm.html",
        status_code=status_code,
        resource=resource,
        what=what,
        reason=reason,
        errors=errors,
        labels=CATALOG_LABELS,
    )


@router.get("/catalog/{code}/retire")
def retire_form(
    request: Request, code: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """Ask for a confirmation and the reason before a resource is retired."""
    resource = service.access_managed(session, actor, code, "resource.retire")
    return _confirm_page(request, resource, "retire", "", {})


@router.get("/catalog/{code}/restore")
def restore_form(
    request: Request, code: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """Ask for a confirmation and the reason before a retired resource comes back."""
    resource = service.access_managed(session, actor, code, "resource.restore")
    return _confirm_page(request, resource, "restore", "", {})


def _change_status(
    request: Request, session: Session, actor: Principal, code: str, what: str, reason: str
) -> Response:
    action = f"resource.{what}"
    resource = service.access_managed(session, actor, code, action)
    reason = reason.strip()
    if not reason:
        errors = FormErrors(gettext_for(request))
        errors.place(Invalid("give the reason", field="reason"))
        return _confirm_page(request, resource, what, reason, errors, status_code=422)
    change = service.retire_resource if what == "retire" else service.restore_resource
    change(session, actor, code, reason=reason)
    return RedirectResponse(f"/catalog/{code}", 303)


@router.post("/catalog/{code}/retire", dependencies=[CsrfDep])
def retire(
    request: Request,
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Retire the resource with a reason (the provider's stewards, or admins)."""
    return _change_status(request, session, actor, code, "retire", reason)


@router.post("/catalog/{code}/restore", dependencies=[CsrfDep])
def restore(
    request: Request,
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Bring the retired resource back, with a reason (the provider's stewards, or admins)."""
    return _change_status(request, session, actor, code, "restore", reason)


# --- loads ----------------------------------------------------------------------------------------

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
        limit=file_size(limit),
        limit_bytes=limit,
        labels=CATALOG_LABELS,
    )


def _managed(session: Session, actor: Principal, code: str) -> Resource:
    """The resource if the actor may load into it (its provider's stewards, admins)."""
    return service.access_managed(session, actor, code, "resource.load")


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
        ingest.check_can_load(session, actor, code)
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
            job = ingest.upload_load(
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
    status = ingest.access_load(session, actor, code, job_id[:64])
    resource = service.get_resource(session, code)
    return render(
        request, "catalog/load.html", resource=resource, load=status, code=code,
        labels=CATALOG_LABELS, texts=_texts(request),
    )  # fmt: skip


@router.get("/catalog/{code}/loads/{job_id}/progress")
def load_progress(
    request: Request, code: str, job_id: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """The progress part of a load's page (htmx polls it every second until the load ends)."""
    status = ingest.access_load(session, actor, code, job_id[:64])
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
    view = ingest.rejects_view(
        session, platform.lake, actor, code, version, reason=reason or None, limit=REJECTS_SHOWN
    )
    rows = ingest.rejects_json(view.table)
    return render(
        request, "catalog/rejects.html", resource=service.get_resource(session, code),
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
    table = ingest.read_rejects(
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
    resource = service.access_resource(session, actor, code)
    if resource.lake_version is None:  # nothing to read yet
        return render(request, "catalog/preview.html", resource=resource, columns=[], rows=[],
                      version=None, limit=PREVIEW_ROWS, labels=CATALOG_LABELS)  # fmt: skip
    page = query.query_rows(
        session, platform.lake, actor, code, limit=PREVIEW_ROWS, purpose="preview"
    )
    rows = [{k: _cell(v) for k, v in row.items()} for row in page.table.to_pylist()]
    return render(
        request, "catalog/preview.html", resource=resource, columns=page.table.column_names,
        rows=rows, version=page.version, limit=PREVIEW_ROWS, labels=CATALOG_LABELS,
    )  # fmt: skip


def _cell(value: Any) -> str:
    """A value as the preview shows it: times in China time, nested values as JSON."""
    if value is None:
        return ""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
