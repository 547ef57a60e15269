"""Accounts API: the OAuth2 token endpoint, who am I, account creation."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request, Response

from minyun.accounts import service
from minyun.accounts.schemas import MeRead, TokenRead, UserCreate, UserRead
from minyun.core.errors import Invalid, Unauthenticated
from minyun.orgs import service as orgs
from minyun.web.deps import ActorDep, PlatformDep, SessionDep, UserDep

router = APIRouter(prefix="/api/v1", tags=["accounts"])


@router.post("/oauth/token", response_model=TokenRead)
def token(
    request: Request,
    session: SessionDep,
    platform: PlatformDep,
    grant_type: Annotated[str, Form()],
    scope: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
) -> TokenRead:
    """OAuth2 client-credentials grant; credentials by HTTP Basic or in the form body."""
    if grant_type != "client_credentials":
        raise Invalid(
            "only grant_type=client_credentials is supported", code="unsupported-grant-type"
        )
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthenticated("malformed Basic credentials", code="invalid-client") from exc
    if not client_id or not client_secret:
        raise Unauthenticated("client credentials missing", code="invalid-client")
    grant = service.client_credentials_token(
        session,
        platform.node_key,
        client_id=client_id,
        client_secret=client_secret,
        scope=scope,
        issuer=platform.settings.base_url,
        audience=platform.token_audience,
        ttl=timedelta(seconds=platform.settings.token_ttl_seconds),
        throttle=platform.throttle,
        client_ip=request.client.host if request.client else None,
    )
    return TokenRead(
        access_token=grant.access_token,
        token_type=grant.token_type,
        expires_in=grant.expires_in,
        scope=grant.scope,
    )


@router.get("/me", response_model=MeRead)
def me(actor: UserDep) -> MeRead:
    """The acting user or client."""
    return MeRead(
        kind=actor.kind,
        name=actor.name,
        roles=sorted(actor.roles),
        scopes=sorted(actor.scopes),
        organization_id=actor.organization_id,
    )


@router.post("/users", response_model=UserRead, status_code=201)
def create_user(body: UserCreate, session: SessionDep, actor: ActorDep) -> UserRead:
    """Create an account (admins)."""
    organization_id = (
        orgs.get_organization(session, body.organization).id if body.organization else None
    )
    user = service.create_user(
        session,
        actor,
        username=body.username,
        password=body.password,
        display_name=body.display_name,
        kind=body.kind,
        organization_id=organization_id,
        roles=body.roles,
        ric=body.ric,
        uscc=body.uscc,
    )
    return UserRead.model_validate(user)


@router.delete("/users/{user_id}/sessions", status_code=204)
def revoke_sessions(
    user_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep, actor: UserDep
) -> Response:
    """Sign an account out everywhere: every browser session ends (the account itself, admins)."""
    service.revoke_user_sessions(session, actor, user_id)
    return Response(status_code=204)
