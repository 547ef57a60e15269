"""Open data portal pages (公共数据开放平台): search with facets, a dataset, domains, the API.

Public: anonymous visitors browse, search, preview and download what is open. The pages call
the same functions as the CKAN-compatible API (`minyun.opendata.ckan`, `service`), so the
portal and `ckanapi` see the same catalogue; a preview is an audited read like any other.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from minyun.catalog.themes import THEME_BY_CODE, THEMES
from minyun.core import clock
from minyun.core.errors import Conflict, Forbidden, Invalid, Unauthenticated
from minyun.opendata import applications, ckan, developers, service
from minyun.opendata.models import OpenDataset
from minyun.orgs.models import Organization
from minyun.web.deps import CsrfDep, IdPath, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import PageActorDep, render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 20
PREVIEW_ROWS = 10
FREQUENCY_NAMES = {"realtime": N_("Real time"), "daily": N_("Daily"), "weekly": N_("Weekly"),
                   "monthly": N_("Monthly"), "quarterly": N_("Quarterly"), "yearly": N_("Yearly"),
                   "irregular": N_("Irregular")}  # fmt: skip
FACET_TITLES = {"groups": N_("Domains"), "organization": N_("Publishers"),
                "res_format": N_("Formats"), "frequency": N_("Update frequency")}  # fmt: skip
PARAMS = {"groups": "domain", "organization": "publisher", "res_format": "format",
          "frequency": "frequency"}  # fmt: skip
Short = Annotated[str | None, Query(max_length=100)]


def _org_names(session: Any) -> dict[str, str]:
    return dict(session.execute(select(Organization.code, Organization.name)).all())


@router.get("/opendata")
def portal(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    q: Short = None,
    domain: Short = None,
    publisher: Short = None,
    format: Short = None,
    frequency: Short = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """Search the open datasets, narrowed by domain, publisher, format and frequency."""
    chosen = {"domain": domain, "publisher": publisher, "format": format, "frequency": frequency}
    fq = " ".join(
        f'{field}:"{chosen[param]}"' for field, param in PARAMS.items() if chosen[param]
        and '"' not in (chosen[param] or "")
    )  # fmt: skip
    found = ckan.search(
        session, q=q or "", fq=fq, rows=PAGE_SIZE, start=(page - 1) * PAGE_SIZE,
        facet_fields=list(PARAMS), facet_limit=30,
    )  # fmt: skip
    names = _org_names(session)
    facets = []
    for field, counter in found.facets.items():
        param = PARAMS[field]
        items = []
        for value, count in counter.most_common():
            if field == "groups":
                label = THEME_BY_CODE[value].zh if value in THEME_BY_CODE else value
            elif field == "organization":
                label = names.get(value, value)
            else:
                label = value
            args = {k: v for k, v in {"q": q, **chosen}.items() if v}
            if chosen[param] == value:
                args.pop(param, None)
            else:
                args[param] = value
            items.append({"value": value, "label": label, "count": count, "args": args,
                          "selected": chosen[param] == value})  # fmt: skip
        facets.append({"field": field, "title": FACET_TITLES[field], "items": items})
    pages = max(1, -(-found.count // PAGE_SIZE))
    base_args = {k: v for k, v in {"q": q, **chosen}.items() if v}
    return render(
        request, "opendata/portal.html", found=found, facets=facets, q=q or "", page=page,
        pages=pages, base_args=base_args, themes=THEME_BY_CODE, frequencies=FREQUENCY_NAMES,
    )  # fmt: skip


@router.get("/opendata/domains")
def domains(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The 21 domains with their dataset counts."""
    query = (
        service.listed_query().with_only_columns(OpenDataset.domain, func.count())
        .group_by(OpenDataset.domain)
    )  # fmt: skip
    counts = {str(d): int(n) for d, n in session.execute(query)}
    return render(request, "opendata/domains.html", themes=THEMES, counts=counts,
                  total=sum(counts.values()))  # fmt: skip


@router.get("/opendata/api")
def api_docs(request: Request, platform: PlatformDep, actor: PageActorDep) -> HTMLResponse:
    """How to use the CKAN-compatible API, the downloads and the DCAT catalogue."""
    return render(request, "opendata/api.html", base=platform.settings.base_url.rstrip("/"))


@router.get("/opendata/datasets/{name}")
def dataset(
    request: Request, name: str, session: SessionDep, actor: PageActorDep, platform: PlatformDep
) -> HTMLResponse:
    """One dataset: metadata, a preview of its first rows, a chart, downloads, the API."""
    found = service.access_dataset(session, actor, name)
    preview = None
    refused = False
    count = None
    try:
        preview = service.search_rows(session, platform.lake, actor, found.key, limit=PREVIEW_ROWS)
        count = preview.total
    except (Forbidden, Unauthenticated):
        refused = True  # a conditional dataset: rows only with an approved application
    return _dataset_page(request, session, actor, platform, found, preview=preview,
                         refused=refused, count=count)  # fmt: skip


def _dataset_page(
    request: Request, session: Any, actor: Any, platform: Any, found: OpenDataset, *,
    preview: service.Rows | None, refused: bool, count: int | None, purpose: str = "",
    error: str | None = None, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    base = platform.settings.base_url.rstrip("/")
    mine = None
    if found.resource.open_type == "conditional" and actor.kind == "user":
        mine = next((a for a in applications.mine(session, actor) if a.dataset_id == found.id),
                    None)  # fmt: skip
    return render(
        request, "opendata/dataset.html", status_code=status_code, application=mine,
        purpose=purpose, error=error, signed_in_user=actor.kind == "user",
        d=found, preview=preview, refused=refused, count=count,
        rows=ckan.records(preview.table) if preview else [], base=base,
        chart=_chart(preview) if preview else None, versions=service.versions(session, found),
        usage=_usage_json(developers.dataset_usage(session, found)),
        theme=THEME_BY_CODE.get(found.domain), frequencies=FREQUENCY_NAMES,
        licences=service.LICENCES, formats=ckan.FORMATS,
    )  # fmt: skip


def _chart(preview: service.Rows) -> str | None:
    """The chart data (JSON) of the first numeric column against the first text column."""
    kinds = preview.columns
    numbers = [n for n in preview.table.column_names if kinds.get(n) in ("integer", "number")]
    texts = [n for n in preview.table.column_names if kinds.get(n) == "string"]
    if not numbers or not preview.table.num_rows:
        return None
    labels = (
        preview.table.column(texts[0]).to_pylist()
        if texts
        else list(range(1, preview.table.num_rows + 1))
    )
    values = [
        float(v) if v is not None else None for v in preview.table.column(numbers[0]).to_pylist()
    ]
    return json.dumps({"labels": [str(v) for v in labels], "values": values, "name": numbers[0]},
                      ensure_ascii=False)  # fmt: skip


def _usage_json(usage: developers.Usage) -> str:
    return json.dumps({"days": usage.days, "api": usage.api, "downloads": usage.downloads})


@router.get("/opendata/developer")
def developer(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """A developer's API keys (signed-in accounts): make, revoke, and each key's usage."""
    return _developer_page(request, session, actor)


def _developer_page(
    request: Request, session: Any, actor: Any, *, secret: str | None = None,
    error: str | None = None, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    if not actor.authenticated or actor.kind != "user":
        return render(request, "opendata/developer.html", keys=[], usage={}, secret=None,
                      error=None, signed_in_user=False, applications=[])  # fmt: skip
    keys = developers.list_keys(session, actor)
    usage = {k.prefix: _usage_json(developers.key_usage(session, actor, k.prefix)) for k in keys}
    return render(request, "opendata/developer.html", keys=keys, usage=usage, secret=secret,
                  error=error, signed_in_user=True, status_code=status_code,
                  applications=applications.mine(session, actor), now=clock.now())  # fmt: skip


@router.post("/opendata/developer/keys", dependencies=[CsrfDep])
def create_key(
    request: Request, session: SessionDep, actor: PageActorDep,
    name: Annotated[str, Form(max_length=100)] = "",
) -> Response:  # fmt: skip
    """Make a key; its secret is shown on this answer only."""
    try:
        with session.begin_nested():
            _key, secret = developers.create_key(session, actor, name=name)
    except (Invalid, Conflict) as exc:
        return _developer_page(request, session, actor, error=str(exc), status_code=422)
    return _developer_page(request, session, actor, secret=secret)


@router.post("/opendata/developer/keys/{prefix}/revoke", dependencies=[CsrfDep])
def revoke_key(request: Request, prefix: str, session: SessionDep, actor: PageActorDep) -> Response:
    """Revoke a key: its next call is refused."""
    developers.revoke_key(session, actor, prefix)
    return _developer_page(request, session, actor)


# --- applications for conditionally open datasets (开放申请) ---------------------------------


@router.post("/opendata/datasets/{name}/apply", dependencies=[CsrfDep])
def apply(
    request: Request, name: str, session: SessionDep, actor: PageActorDep, platform: PlatformDep,
    purpose: Annotated[str, Form(max_length=2000)] = "",
) -> Response:  # fmt: skip
    """Apply for a conditionally open dataset with a purpose; its status shows on the key page."""
    found = service.access_dataset(session, actor, name)
    try:
        with session.begin_nested():
            made = applications.apply(session, actor, found.name, purpose=purpose)
    except (Invalid, Conflict) as exc:
        return _dataset_page(request, session, actor, platform, found, preview=None, refused=True,
                             count=None, purpose=purpose, error=str(exc), status_code=422)  # fmt: skip
    return RedirectResponse(f"/opendata/developer?applied={made.id}#applications", 303)


@router.post("/opendata/applications/{application_id}/withdraw", dependencies=[CsrfDep])
def withdraw(application_id: IdPath, session: SessionDep, actor: PageActorDep) -> Response:
    """The applicant takes an application back (an approved one stops the reads)."""
    applications.withdraw(session, actor, application_id)
    return RedirectResponse("/opendata/developer#applications", 303)


@router.get("/opendata/applications")
def inbox(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The approver's inbox: developers' applications for the department's datasets."""
    return _inbox_page(request, session, actor)


def _inbox_page(
    request: Request, session: Any, actor: Any, *, errors: dict[int, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    found = applications.inbox(session, actor)
    return render(request, "opendata/applications.html", applications=found,
                  errors=errors or {}, status_code=status_code, term=applications.TERM_DAYS)  # fmt: skip


@router.post("/opendata/applications/{application_id}/approve", dependencies=[CsrfDep])
def approve(
    request: Request, application_id: IdPath, session: SessionDep, actor: PageActorDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
    days: Annotated[int, Form(ge=1, le=applications.MAX_TERM_DAYS)] = applications.TERM_DAYS,
) -> Response:  # fmt: skip
    """Approve: the applicant's keys read the dataset for `days` days."""
    try:
        with session.begin_nested():
            applications.approve(session, actor, application_id, reason=reason, days=days)
    except (Invalid, Conflict) as exc:
        return _inbox_page(request, session, actor, errors={application_id: str(exc)},
                           status_code=422)  # fmt: skip
    return RedirectResponse("/opendata/applications", 303)


@router.post("/opendata/applications/{application_id}/reject", dependencies=[CsrfDep])
def reject(
    request: Request, application_id: IdPath, session: SessionDep, actor: PageActorDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:  # fmt: skip
    """Reject with a reason, which the applicant sees."""
    try:
        with session.begin_nested():
            applications.reject(session, actor, application_id, reason=reason)
    except (Invalid, Conflict) as exc:
        return _inbox_page(request, session, actor, errors={application_id: str(exc)},
                           status_code=422)  # fmt: skip
    return RedirectResponse("/opendata/applications", 303)
