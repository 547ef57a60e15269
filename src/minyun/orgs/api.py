"""Divisions and organisations API."""

from __future__ import annotations

from fastapi import APIRouter

from minyun.orgs import service
from minyun.orgs.schemas import DivisionRead, OrganizationCreate, OrganizationRead
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
    """Register a department or unit (admins)."""
    parent_id = service.get_organization(session, body.parent).id if body.parent else None
    org = service.create_organization(
        session,
        actor,
        code=body.code,
        name=body.name,
        uscc=body.uscc,
        division_code=body.division_code,
        kind=body.kind,
        parent_id=parent_id,
    )
    return OrganizationRead.model_validate(org)
