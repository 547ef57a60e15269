"""Accounts API: the OAuth2 token endpoint, who am I, administering accounts and API clients."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request, Response

from minyun.accounts import service
from minyun.accounts.models import ApiClient, User
from minyun.accounts.schemas import (
    ClientCreate,
    ClientRead,
    ClientSecretRead,
    MeRead,
    PasswordReset,
    PasswordResetRead,
    RolesUpdate,
    TokenRead,
    UserAdminRead,
    UserCreate,
    UserRead,
)
from minyun.core.errors import Invalid, Unauthenticated
from minyun.orgs import service as orgs
from minyun.orgs.models import Organization
from minyun.web.deps import ActorDep, IdPath, PlatformDep, SessionDep, UserDep

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


# --- administering accounts (admins, or clients with the user.manage scope) ----------------


def _user_read(user: User, organization: Organization | None, locked: bool) -> UserAdminRead:
    return UserAdminRead(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        kind=user.kind,
        organization=organization.code if organization else None,
        roles=list(user.roles),
        active=user.active,
        locked=locked,
        last_login_at=user.last_login_at,
    )


def _one_user(session: SessionDep, platform: PlatformDep, user: User) -> UserAdminRead:
    org = session.get(Organization, user.organization_id) if user.organization_id else None
    return _user_read(user, org, service.is_locked(platform.throttle, user.username))


@router.get("/users", response_model=list[UserAdminRead])
def list_users(
    session: SessionDep,
    actor: ActorDep,
    platform: PlatformDep,
    q: Annotated[str | None, Query(max_length=64, description="username or name contains")] = None,
) -> list[UserAdminRead]:
    """Accounts by username, with organisation, roles, state and sign-in lock."""
    rows = service.list_users(session, actor, q=q, throttle=platform.throttle)
    return [_user_read(r.user, r.organization, r.locked) for r in rows]


@router.get("/users/{user_id}", response_model=UserAdminRead)
def get_user(
    user_id: IdPath, session: SessionDep, actor: ActorDep, platform: PlatformDep
) -> UserAdminRead:
    """One account."""
    return _one_user(session, platform, service.access_user(session, actor, user_id))


@router.put("/users/{user_id}/roles", response_model=UserAdminRead)
def set_roles(
    user_id: IdPath, body: RolesUpdate, session: SessionDep, actor: ActorDep, platform: PlatformDep
) -> UserAdminRead:
    """Give a civil servant exactly these roles; the last administrator keeps the role."""
    return _one_user(session, platform, service.set_roles(session, actor, user_id, body.roles))


@router.post("/users/{user_id}/disable", response_model=UserAdminRead)
def disable_user(
    user_id: IdPath, session: SessionDep, actor: ActorDep, platform: PlatformDep
) -> UserAdminRead:
    """Disable an account: it cannot sign in and its browser sessions end at once."""
    return _one_user(session, platform, service.disable_user(session, actor, user_id))


@router.post("/users/{user_id}/enable", response_model=UserAdminRead)
def enable_user(
    user_id: IdPath, session: SessionDep, actor: ActorDep, platform: PlatformDep
) -> UserAdminRead:
    """Let a disabled account sign in again."""
    return _one_user(session, platform, service.enable_user(session, actor, user_id))


@router.post("/users/{user_id}/password-reset", response_model=PasswordResetRead)
def reset_password(
    user_id: IdPath, body: PasswordReset, session: SessionDep, actor: ActorDep
) -> PasswordResetRead:
    """Give an account a new password (generated when none is sent, and returned this once);
    its browser sessions end."""
    chosen = service.reset_password(session, actor, user_id, password=body.password)
    return PasswordResetRead(password=chosen if body.password is None else None)


@router.post("/users/{user_id}/unlock", response_model=UserAdminRead)
def unlock_user(
    user_id: IdPath, session: SessionDep, actor: ActorDep, platform: PlatformDep
) -> UserAdminRead:
    """Let an account sign in again at once after too many failed attempts."""
    user = service.unlock_user(session, actor, platform.throttle, user_id)
    return _one_user(session, platform, user)


# --- API clients (admins, or clients with the client.manage scope) --------------------------

ClientIdPath = Annotated[str, Path(min_length=1, max_length=64, description="the client id")]


def _client_read(client: ApiClient, organization: Organization) -> ClientRead:
    return ClientRead(
        client_id=client.client_id,
        name=client.name,
        organization=organization.code,
        scopes=list(client.scopes),
        active=client.active,
        created_at=client.created_at,
    )


def _with_secret(new: service.NewClient, organization: Organization) -> ClientSecretRead:
    return ClientSecretRead(
        **_client_read(new.client, organization).model_dump(), client_secret=new.secret
    )


@router.get("/clients", response_model=list[ClientRead])
def list_clients(
    session: SessionDep,
    actor: ActorDep,
    organization: Annotated[str | None, Query(max_length=32)] = None,
) -> list[ClientRead]:
    """API clients, active first (never a secret)."""
    org_id = orgs.get_organization(session, organization).id if organization else None
    rows = service.list_clients(session, actor, organization_id=org_id)
    return [_client_read(r.client, r.organization) for r in rows]


@router.post("/clients", response_model=ClientSecretRead, status_code=201)
def create_client(body: ClientCreate, session: SessionDep, actor: ActorDep) -> ClientSecretRead:
    """Register an organisation's API client; the secret is in this answer only."""
    org = orgs.find_organization(session, body.organization)
    new = service.create_client(
        session, actor, organization_id=org.id if org else 0, name=body.name, scopes=body.scopes
    )
    return _with_secret(
        new, service.access_client(session, actor, new.client.client_id).organization
    )


@router.get("/clients/{client_id}", response_model=ClientRead)
def get_client(client_id: ClientIdPath, session: SessionDep, actor: ActorDep) -> ClientRead:
    """One API client."""
    row = service.access_client(session, actor, client_id)
    return _client_read(row.client, row.organization)


@router.post("/clients/{client_id}/rotate", response_model=ClientSecretRead)
def rotate_client(
    client_id: ClientIdPath, session: SessionDep, actor: ActorDep
) -> ClientSecretRead:
    """A new secret, in this answer only; the old one is refused from now on."""
    new = service.rotate_client(session, actor, client_id)
    return _with_secret(new, service.access_client(session, actor, client_id).organization)


@router.post("/clients/{client_id}/revoke", response_model=ClientRead)
def revoke_client(client_id: ClientIdPath, session: SessionDep, actor: ActorDep) -> ClientRead:
    """Revoke a client: its secret and every token it holds are refused at once."""
    service.revoke_client(session, actor, client_id)
    row = service.access_client(session, actor, client_id)
    return _client_read(row.client, row.organization)
