"""Organisation pages: the directory by division, and one organisation."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from minyun.orgs import service
from minyun.web.deps import SessionDep
from minyun.web.templating import PageActorDep, is_htmx, render

router = APIRouter(include_in_schema=False)


@router.get("/orgs")
def directory(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    division: str | None = None,
    q: str | None = None,
) -> HTMLResponse:
    """Divisions (province → cities → counties) and the organisations under the one chosen."""
    found = service.directory(session, actor, division_code=division or None, q=q)
    template = "orgs/_results.html" if is_htmx(request) else "orgs/index.html"
    return render(request, template, directory=found)


@router.get("/orgs/{code}")
def organization(
    request: Request, code: str, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """One organisation: its codes, divisions, parent and units."""
    profile = service.organization_profile(session, actor, code)
    return render(request, "orgs/detail.html", profile=profile)
