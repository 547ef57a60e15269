"""Catalog pages: browse and search, one resource, and the steward's work on it.

The steward's forms (register a resource with a schema inferred from a sample, edit its
metadata, a new schema version, retire and restore) call the same service functions as the
API and the CLI. A form refused for its input comes back with what was typed and the error
beside its field; the refused change is rolled back to a savepoint first, so nothing of it
is kept. A refusal of the actor (403) is not a form error: it is the error page, audited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from minyun.catalog import forms, service
from minyun.catalog.models import OpenType, Resource, SharingType, UpdateCycle
from minyun.catalog.themes import BASE_LIBRARY_BY_CODE, THEMES
from minyun.core.errors import Conflict, DomainError, Invalid, NotFound
from minyun.core.security import Principal, decide
from minyun.ingest import service as ingest
from minyun.web.deps import CsrfDep, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import (
    PageActorDep,
    gettext_for,
    is_htmx,
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

# Display names of the catalog's stored values; translated where they are shown.
CATALOG_LABELS: dict[str, str] = {
    "draft": N_("Draft"),
    "published": N_("Published"),
    "retired": N_("Retired"),
    "unconditional": N_("Unconditional"),
    "conditional": N_("Conditional"),
    "none": N_("Not shared / not open"),
    "realtime": N_("Real time"),
    "hourly": N_("Hourly"),
    "daily": N_("Daily"),
    "weekly": N_("Weekly"),
    "monthly": N_("Monthly"),
    "quarterly": N_("Quarterly"),
    "yearly": N_("Yearly"),
    "irregular": N_("Irregular"),
    "public": N_("Public"),
    "internal": N_("Internal"),
    "sensitive": N_("Sensitive"),
    "secret": N_("Secret"),
    "committed": N_("Committed"),
    "rejected": N_("Rejected"),
    "failed": N_("Failed"),
    "noop": N_("Unchanged"),
    "running": N_("Running"),
    "initial": N_("Initial"),
    "compatible": N_("Compatible"),
    "major": N_("Major"),
    "full": N_("Full"),
    "append": N_("Append"),
    "upsert": N_("Upsert"),
    "delete": N_("Delete"),
}
CHART_LABELS = (N_("Completeness"), N_("Validity"), N_("Uniqueness"), N_("Accepted"))
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


@router.get("/catalog")
def browse(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    q: str | None = None,
    theme: str | None = None,
    provider: str | None = None,
    library: str | None = None,
    status: str | None = None,
) -> HTMLResponse:
    """The catalog by domain, department and base library, with a search box."""
    filters = service.Filters(
        q=q,
        theme=theme or None,
        provider=provider or None,
        base_library=library or None,
        status=status or None,
    )
    view = service.browse(session, actor, filters)
    template = "catalog/_results.html" if is_htmx(request) else "catalog/index.html"
    may_create = decide(session, actor, "resource.create").allowed
    return render(request, template, view=view, labels=CATALOG_LABELS, may_create=may_create)


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
    size = f"{int(limit) / (1 << 20):.3g} MiB" if isinstance(limit, int) else ""
    return {"limit": size, "version": str(exc.extra.get("current_version") or "")}


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
    }


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
    return render(
        request,
        "catalog/new.html",
        encoding=encoding,
        status_code=status_code,
        providers=service.providers_for(session, actor),
        values=values,
        editor=editor,
        errors=errors,
        sample_rows=sample_rows,
        labels=CATALOG_LABELS,
        choices=_choices(request_locale(request)),
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
    if len(providers) == 1 or (providers and actor.organization_id is not None):
        own = [o for o in providers if o.id == actor.organization_id] or providers
        values["provider"] = own[0].code
    return _new_page(request, session, actor, values, forms.SchemaForm(), {})


def _encoding(form: FormData) -> str:
    value = form.get("encoding")
    return value.strip() if isinstance(value, str) else ""


def _upload(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    return value if isinstance(value, UploadFile) and value.filename else None


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
    return render(
        request,
        "catalog/edit.html",
        status_code=status_code,
        resource=resource,
        values=values,
        errors=errors,
        labels=CATALOG_LABELS,
        choices=_choices(request_locale(request)),
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
    return render(
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
        labels=CATALOG_LABELS,
        choices=_choices(request_locale(request)),
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


# --- reading ------------------------------------------------------------------------------------


@router.get("/catalog/{code}")
def resource(request: Request, code: str, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """One resource: metadata, schema fields, versions, quality charts and lineage."""
    page = service.resource_page(session, actor, code)
    return render(
        request,
        "catalog/resource.html",
        page=page,
        labels=CATALOG_LABELS,
        chart=_chart_data(request, page),
    )


@router.post("/catalog/{code}/publish", dependencies=[CsrfDep])
def publish(
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Publish the draft (the provider's stewards, or admins)."""
    service.publish_resource(session, actor, code, reason=reason.strip() or None)
    return RedirectResponse(f"/catalog/{code}", 303)


def _chart_data(request: Request, page: service.ResourcePage) -> dict[str, Any]:
    """What catalog.js draws: per-field quality in percent and rows per load."""
    gettext = gettext_for(request)

    def pct(value: float | None) -> float | None:
        return None if value is None else round(100 * value, 2)

    loads = [v for v in reversed(page.versions) if v.lake_version is not None]
    series = [
        {"name": gettext("Completeness"), "data": [pct(f.completeness) for f in page.quality]},
        {"name": gettext("Validity"), "data": [pct(f.validity) for f in page.quality]},
    ]
    # Uniqueness is a quality figure only where repeats are an error (keys, unique fields).
    if any(f.uniqueness is not None for f in page.quality):
        series.append(
            {"name": gettext("Uniqueness"), "data": [pct(f.uniqueness) for f in page.quality]}
        )
    return {
        "fields": [f.name for f in page.quality],
        "series": series,
        "loads": {
            "versions": [f"v{v.lake_version}" for v in loads],
            "accepted": [v.rows_accepted for v in loads],
            "rejected": [v.rows_rejected for v in loads],
            "accepted_name": gettext("Accepted"),
            "rejected_name": gettext("Rejected"),
        },
    }
