"""Sharing API: applications (共享申请) and the grants they give."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from minyun.exchange import proxy, service, usage
from minyun.exchange.schemas import (
    ApplicationCreate,
    ApplicationRead,
    ApproveIn,
    GrantRead,
    RateLimitIn,
    ReasonIn,
    UsageDay,
    UsageRead,
)
from minyun.web.deps import ActorDep, IdPath, PlatformDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["exchange"])
Side = Literal["consumer", "provider"]
Id = IdPath


@router.get("/applications", response_model=list[ApplicationRead])
def applications(
    session: SessionDep,
    actor: ActorDep,
    side: Side = "consumer",
    status: Literal["submitted", "approved", "rejected", "withdrawn"] | None = None,
) -> list[ApplicationRead]:
    """Your department's applications, or (side=provider) those for its resources."""
    found = service.list_applications(session, actor, side=side, status=status)
    return [ApplicationRead.model_validate(a) for a in found]


@router.post("/applications", response_model=ApplicationRead, status_code=201)
def apply(body: ApplicationCreate, session: SessionDep, actor: ActorDep) -> ApplicationRead:
    """Apply for another department's resource (consumers); unconditional ones are granted."""
    application = service.apply(
        session,
        actor,
        resource=body.resource,
        purpose=body.purpose,
        legal_basis=body.legal_basis,
        fields=body.fields,
        row_filter=body.row_filter,
        expires_at=body.expires_at,
    )
    return ApplicationRead.model_validate(application)


@router.get("/applications/{application_id}", response_model=ApplicationRead)
def application(application_id: Id, session: SessionDep, actor: ActorDep) -> ApplicationRead:
    """One application, for the applying or the providing department."""
    found = service.access_application(session, actor, application_id)
    return ApplicationRead.model_validate(found)


@router.post("/applications/{application_id}/approve", response_model=GrantRead)
def approve(
    application_id: Id, session: SessionDep, actor: ActorDep, body: ApproveIn | None = None
) -> GrantRead:
    """Approve (the provider's approvers): all asked fields, or fewer; narrower rows."""
    body = body or ApproveIn()
    grant = service.approve_application(
        session, actor, application_id, fields=body.fields, row_filter=body.row_filter,
        clearance=body.clearance, reason=body.reason, rate_limit=body.rate_limit,
    )  # fmt: skip
    return GrantRead.model_validate(grant)


@router.post("/applications/{application_id}/reject", response_model=ApplicationRead)
def reject(
    application_id: Id, body: ReasonIn, session: SessionDep, actor: ActorDep
) -> ApplicationRead:
    """Reject with a reason (the provider's approvers)."""
    found = service.reject_application(session, actor, application_id, reason=body.reason)
    return ApplicationRead.model_validate(found)


@router.post("/applications/{application_id}/withdraw", response_model=ApplicationRead)
def withdraw(application_id: Id, session: SessionDep, actor: ActorDep) -> ApplicationRead:
    """Take back an application not yet decided (the applying department's consumers)."""
    found = service.withdraw_application(session, actor, application_id)
    return ApplicationRead.model_validate(found)


@router.get("/grants", response_model=list[GrantRead])
def grants(session: SessionDep, actor: ActorDep, side: Side = "consumer") -> list[GrantRead]:
    """Your department's grants, or (side=provider) the grants on its resources."""
    return [GrantRead.model_validate(g) for g in service.list_grants(session, actor, side=side)]


@router.get("/grants/{grant_id}", response_model=GrantRead)
def grant(grant_id: Id, session: SessionDep, actor: ActorDep) -> GrantRead:
    """One grant, for the holding or the providing department."""
    return GrantRead.model_validate(service.access_grant(session, actor, grant_id))


@router.post("/grants/{grant_id}/revoke", response_model=GrantRead)
def revoke(grant_id: Id, body: ReasonIn, session: SessionDep, actor: ActorDep) -> GrantRead:
    """Revoke (the provider's approvers): the consumer's next call is refused."""
    found = service.revoke_grant(session, actor, grant_id, reason=body.reason)
    return GrantRead.model_validate(found)


@router.post("/grants/{grant_id}/rate-limit", response_model=GrantRead)
def rate_limit(grant_id: Id, body: RateLimitIn, session: SessionDep, actor: ActorDep) -> GrantRead:
    """Set or lift a grant's calls per minute (the provider's approvers); 429 beyond it."""
    found = service.set_rate_limit(session, actor, grant_id, rate_limit=body.rate_limit)
    return GrantRead.model_validate(found)


@router.get("/grants/{grant_id}/usage", response_model=UsageRead)
def grant_usage(
    grant_id: Id,
    session: SessionDep,
    actor: ActorDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> UsageRead:
    """A grant's calls, rows delivered and denials per day (China time), for both sides."""
    found = usage.grant_usage(session, actor, grant_id, days=days)
    return UsageRead(
        grant=found.grant.id, calls=found.calls, rows=found.rows, denials=found.denials,
        days=[UsageDay(day=d.day, calls=d.calls, rows=d.rows, denials=d.denials) for d in found.days],
    )  # fmt: skip


class ProxyServiceIn(BaseModel):
    endpoint: str = Field(max_length=2000, description="the provider's base URL (http/https)")


@router.post("/resources/{code}/proxy-service")
def register_proxy(
    code: str, body: ProxyServiceIn, session: SessionDep, platform: PlatformDep, actor: ActorDep
) -> dict[str, Any]:
    """Register the provider's own endpoint for a resource (its stewards and clients)."""
    found = proxy.register(session, actor, code, endpoint=body.endpoint,
                           allow_private=platform.settings.webhooks_allow_private)  # fmt: skip
    return {"resource": code, "endpoint": found.endpoint, "active": found.active}


@router.get("/proxy/key")
def proxy_key(platform: PlatformDep) -> dict[str, str]:
    """The public key providers verify proxied calls with (RFC 9421, Ed25519, tag minyun-proxy)."""
    return proxy.public_key(platform.node_key)


@router.get("/resources/{code}/proxy/{path:path}", operation_id="proxy_get")
@router.post("/resources/{code}/proxy/{path:path}", operation_id="proxy_post")
async def proxied(
    request: Request,
    code: str,
    path: str,
    session: SessionDep,
    platform: PlatformDep,
    actor: ActorDep,
    purpose: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """Call the provider's own endpoint through minyun: grant checked, call signed and audited."""
    body = await request.body()
    query = "&".join(
        f"{quote(k)}={quote(v)}" for k, v in request.query_params.multi_items() if k != "purpose"
    )
    answer = await run_in_threadpool(
        proxy.call, session, platform.node_key, actor, code, method=request.method, path=path,
        query=query, body=body, content_type=request.headers.get("content-type"),
        purpose=purpose,
    )  # fmt: skip
    headers = {**answer.headers, "minyun-proxy-nonce": answer.nonce}
    return Response(answer.body, status_code=answer.status, headers=headers)
