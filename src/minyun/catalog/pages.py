"""Catalog pages: browse by domain, department and base library, search, one resource.

The steward's forms (register, edit, schema versions, loads, retire and restore) are
`minyun.steward.pages`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from minyun.catalog import service
from minyun.core.security import decide
from minyun.web.deps import CsrfDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import PageActorDep, gettext_for, is_htmx, render

router = APIRouter(include_in_schema=False)

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
