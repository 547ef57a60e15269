"""Catalog API: resources (政务信息资源) and their versioned schemas."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from minyun.catalog import service
from minyun.catalog.models import Resource
from minyun.catalog.schemas import (
    ReasonIn,
    ResourceCreate,
    ResourceRead,
    ResourceUpdate,
    SchemaIn,
    SchemaRead,
)
from minyun.core.security import Principal
from minyun.web.deps import INT32_MAX, ActorDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["catalog"])


@router.get("/resources", response_model=list[ResourceRead])
def resources(
    session: SessionDep,
    actor: ActorDep,
    q: Annotated[str | None, Query(max_length=200, description="words that must all occur")] = None,
    theme: str | None = None,
    provider: str | None = None,
    base_library: str | None = None,
    status: str | None = None,
    sharing_type: str | None = None,
    open_type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
) -> list[ResourceRead]:
    """Visible resources, searched (Chinese works: 企业登记 finds 企业登记信息) and filtered."""
    filters = service.Filters(
        q=q,
        theme=theme,
        provider=provider,
        base_library=base_library,
        status=status,
        sharing_type=sharing_type,
        open_type=open_type,
    )
    found = service.list_resources(session, actor, filters, limit=limit, offset=offset)
    return [ResourceRead.model_validate(r) for r in found]


@router.post("/resources", response_model=ResourceRead, status_code=201)
def create(body: ResourceCreate, session: SessionDep, actor: ActorDep) -> ResourceRead:
    """Register a draft resource of your organisation (stewards; admins for any)."""
    resource = service.create_resource(
        session,
        actor,
        code=body.code,
        name=body.name,
        provider=body.provider,
        summary=body.summary,
        theme=body.theme,
        base_library=body.base_library,
        format=body.format,
        update_cycle=body.update_cycle,
        sharing_type=body.sharing_type,
        sharing_condition=body.sharing_condition,
        open_type=body.open_type,
        open_condition=body.open_condition,
        legal_basis=body.legal_basis,
        schema=body.table_schema,
    )
    return ResourceRead.model_validate(resource)


@router.get("/resources/{code}", response_model=ResourceRead)
def resource(code: str, session: SessionDep, actor: ActorDep) -> ResourceRead:
    """One resource's metadata."""
    return ResourceRead.model_validate(service.access_resource(session, actor, code))


@router.patch("/resources/{code}", response_model=ResourceRead)
def update(code: str, body: ResourceUpdate, session: SessionDep, actor: ActorDep) -> ResourceRead:
    """Change the metadata sent (the provider's stewards, or admins)."""
    changes = body.model_dump(exclude_unset=True)
    return ResourceRead.model_validate(service.update_resource(session, actor, code, changes))


class _StatusChange(Protocol):
    def __call__(
        self, session: Session, actor: Principal, code: str, *, reason: str | None = None
    ) -> Resource: ...


def _change_status(
    change: _StatusChange, session: Session, actor: Principal, code: str, body: ReasonIn | None
) -> ResourceRead:
    """Publish, retire or restore the resource with the reason sent, if any."""
    return ResourceRead.model_validate(
        change(session, actor, code, reason=body.reason if body else None)
    )


@router.post("/resources/{code}/publish", response_model=ResourceRead)
def publish(
    code: str, session: SessionDep, actor: ActorDep, body: ReasonIn | None = None
) -> ResourceRead:
    """Publish a draft into the catalog; it needs a schema."""
    return _change_status(service.publish_resource, session, actor, code, body)


@router.post("/resources/{code}/retire", response_model=ResourceRead)
def retire(
    code: str, session: SessionDep, actor: ActorDep, body: ReasonIn | None = None
) -> ResourceRead:
    """Retire a resource: it stays in the catalog, read-only."""
    return _change_status(service.retire_resource, session, actor, code, body)


@router.post("/resources/{code}/restore", response_model=ResourceRead)
def restore(
    code: str, session: SessionDep, actor: ActorDep, body: ReasonIn | None = None
) -> ResourceRead:
    """Bring a retired resource back: published again if it had been, else a draft."""
    return _change_status(service.restore_resource, session, actor, code, body)


@router.get("/resources/{code}/schema", response_model=SchemaRead)
def schema(
    code: str, session: SessionDep, actor: ActorDep, version: str | None = None
) -> SchemaRead:
    """The schema in force, or the version asked for."""
    return SchemaRead.model_validate(service.access_schema(session, actor, code, version=version))


@router.post("/resources/{code}/schema", response_model=SchemaRead, status_code=201)
def set_schema(code: str, body: SchemaIn, session: SessionDep, actor: ActorDep) -> SchemaRead:
    """A new schema version; an incompatible change needs `major: true` (else 409)."""
    row = service.set_schema(session, actor, code, body.descriptor, major=body.major)
    return SchemaRead.model_validate(row)
