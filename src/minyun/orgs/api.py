"""Divisions and organisations API."""

from __future__ import annotations

from fastapi import APIRouter

from minyun.orgs import service
from minyun.orgs.schemas import (
    DivisionRead,
    OrganizationCreate,
    OrganizationRead,
    OrganizationUpdate,
)
from minyun.web.deps import ActorDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["organisations"])


@router.get("/divisions", response_model=list[DivisionRead])
def divisions(session: SessionDep, parent: str | None = None) -> list[DivisionRead]:
    """The divisions directly under `parent` (the province when omitted); public."""
    return [DivisionRead.model_validate(d) for d in service.child_divisions(session, parent)]


@router.get("/organizations", response_model=list[OrganizationRead])
def organizations(
    session: SessionDep, actor: ActorDep, division: str | None = None, q: str | None = None
) -> list[OrganizationRead]:
    """Departments and units, optionally under a division or matching a name."""
    found = service.list_organizations(session, actor, division_code=division, q=q)
    return [OrganizationRead.model_validate(o) for o in found]


@router.get("/organizations/{code}", response_model=OrganizationRead)
def organization(code: str, session: SessionDep, actor: ActorDep) -> OrganizationRead:
    """One organisation."""
    return OrganizationRead.model_validate(service.access_organization(session, actor, code))


@router.post("/organizations", response_model=OrganizationRead, status_code=201)
def create(body: OrganizationCreate, session: SessionDep, actor: ActorDep) -> OrganizationRead:
    """Register a department, or a unit under its `parent` department (admins)."""
    org = service.create_organization(
        session,
        actor,
        code=body.code,
        name=body.name,
        uscc=body.uscc,
        division_code=body.division_code,
        kind=body.kind,
        parent=body.parent,
    )
    return OrganizationRead.model_validate(org)


@router.patch("/organizations/{code}", response_model=OrganizationRead)
def update(
    code: str, body: OrganizationUpdate, session: SessionDep, actor: ActorDep
) -> OrganizationRead:
    """Change an organisation's name, credit code, division, kind or parent (admins); `parent`
    sent as null makes it a top-level department. The code never changes."""
    org = service.update_organization(
        session,
        actor,
        code,
        name=body.name,
        uscc=body.uscc,
        division_code=body.division_code,
        kind=body.kind,
        parent=body.parent,
        clear_parent="parent" in body.model_fields_set and body.parent is None,
    )
    return OrganizationRead.model_validate(org)
