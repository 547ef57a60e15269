"""Accounts: creation, sign-in with throttling, API clients and their access tokens."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from minyun.accounts.models import AccountKind, ApiClient, User, WebSession
from minyun.core import audit, clock, identifiers, policies
from minyun.core.errors import Conflict, Invalid, NotFound, TooManyRequests, Unauthenticated
from minyun.core.keys import NodeKey
from minyun.core.security import (
    POLICY,
    Principal,
    Role,
    authorize,
    hash_password,
    issue_token,
    new_secret,
    read_token,
    verify_password,
)
from minyun.core.throttle import Throttle
from minyun.orgs.models import Organization

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
MIN_PASSWORD = 10


def principal_for(user: User, *, on_behalf_of: str | None = None) -> Principal:
    """The Principal a signed-in user acts as."""
    return Principal(
        kind="user",
        name=user.username,
        user_id=user.id,
        organization_id=user.organization_id,
        roles=frozenset(user.roles),
        account_kind=user.kind,
        on_behalf_of=on_behalf_of,
    )


def create_user(
    session: Session,
    actor: Principal,
    *,
    username: str,
    password: str,
    display_name: str,
    kind: AccountKind = AccountKind.STAFF,
    organization_id: int | None = None,
    roles: list[str] | None = None,
    ric: str | None = None,
    uscc: str | None = None,
) -> User:
    """Create an account; staff belong to an organisation, citizens and enterprises are real-name."""
    authorize(session, actor, "user.manage", target=username, target_type="user")
    if not USERNAME.match(username):
        raise Invalid(
            "username: 3–64 of a-z 0-9 . _ -, starting with a letter or digit",
            field="username", code="username-format",
        )  # fmt: skip
    if len(password) < MIN_PASSWORD:
        raise Invalid(
            f"password must have at least {MIN_PASSWORD} characters",
            field="password", code="password-short",
        )  # fmt: skip
    roles = sorted(set(roles or []))
    unknown = set(roles) - {r.value for r in Role}
    if unknown:
        raise Invalid(
            f"unknown roles: {', '.join(sorted(unknown))}", field="roles", code="unknown-role"
        )
    if kind == AccountKind.STAFF:
        if organization_id is None or session.get(Organization, organization_id) is None:
            raise Invalid(
                "a civil servant's account needs an existing organisation",
                field="organization", code="no-organization",
            )  # fmt: skip
    elif roles:
        raise Invalid("roles are for civil servants only", field="roles")
    if kind == AccountKind.CITIZEN:
        if ric is None:
            raise Invalid("a citizen account needs a resident identity number", field="ric")
        _check(identifiers.validate_ric, ric, "ric")
    if kind == AccountKind.ENTERPRISE:
        if uscc is None:
            raise Invalid("an enterprise account needs a unified social credit code", field="uscc")
        _check(identifiers.validate_uscc, uscc, "uscc")
    if session.scalars(select(User.id).where(User.username == username)).first() is not None:
        raise Conflict(f"username {username} is taken", field="username", code="username-taken")
    for column, value in ((User.ric, ric), (User.uscc, uscc)):
        if value and session.scalars(select(User.id).where(column == value)).first() is not None:
            raise Conflict("a real-name account for this identity already exists", field=column.key)
    user = User(
        username=username,
        display_name=display_name,
        kind=kind,
        organization_id=organization_id,
        roles=roles,
        password_hash=hash_password(password),
        ric=ric,
        uscc=uscc,
        # Real-name verification against the population / legal-person base comes with S11.
        verified=kind == AccountKind.STAFF,
    )
    session.add(user)
    session.flush()
    audit.record(
        session, actor, "user.create", target=username, target_type="user", detail=",".join(roles)
    )
    return user


def set_roles(session: Session, actor: Principal, user_id: int, roles: list[str]) -> User:
    """Give a civil servant exactly these roles (admins only); cached plans are invalidated."""
    user = access_user(session, actor, user_id)
    unknown = sorted(set(roles) - {str(r) for r in Role})
    if unknown:
        raise Invalid(f"unknown role {unknown[0]!r}", field="roles", code="unknown-role")
    if user.kind != AccountKind.STAFF and roles:
        raise Invalid("only civil servants have roles", field="roles", code="roles-staff-only")
    before = sorted(user.roles)
    if Role.ADMIN in before and Role.ADMIN not in roles:
        _keep_an_administrator(session, user)
    user.roles = sorted(set(roles))
    policies.bump_epoch(session)
    audit.record(
        session, actor, "user.roles", target=user.username, target_type="user",
        detail=json.dumps({"before": before, "after": user.roles}, ensure_ascii=False),
    )  # fmt: skip
    return user


LOGIN_USER = "login-user"  # the sign-in throttle's key kind for one account


def login_key(username: str) -> tuple[str, str]:
    """The sign-in throttle's key of an account (the same however its name is cased)."""
    return (LOGIN_USER, username.lower())


def _keep_an_administrator(session: Session, leaving: User) -> None:
    """Conflict if `leaving` is the last active administrator: the node would be unmanageable."""
    others = session.scalars(
        select(User).where(
            User.active.is_(True), User.id != leaving.id, User.kind == AccountKind.STAFF
        )
    )
    if not any(Role.ADMIN in u.roles for u in others):
        raise Conflict(
            "the last active administrator cannot lose the role or be disabled",
            field="roles", code="last-admin",
        )  # fmt: skip


@dataclass(frozen=True)
class UserRow:
    """An account as the administrators' list shows it."""

    user: User
    organization: Organization | None
    locked: bool


def list_users(
    session: Session,
    actor: Principal,
    *,
    q: str | None = None,
    throttle: Throttle | None = None,
    limit: int = 500,
) -> list[UserRow]:
    """Accounts by username, optionally matching a name (admins); `locked` when a throttle is
    given and sign-in is refused for now."""
    authorize(session, actor, "user.manage", target_type="user")
    query = select(User).order_by(User.username).limit(limit)
    if q:
        query = query.where(User.username.contains(q) | User.display_name.contains(q))
    users = list(session.scalars(query))
    ids = {u.organization_id for u in users if u.organization_id is not None}
    orgs = {o.id: o for o in session.scalars(select(Organization).where(Organization.id.in_(ids)))}
    return [
        UserRow(
            u,
            orgs.get(u.organization_id) if u.organization_id else None,
            throttle is not None and is_locked(throttle, u.username),
        )
        for u in users
    ]


def get_user_by_username(session: Session, username: str) -> User:
    """The account with this username, or NotFound."""
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no account {username}")
    return user


def access_user(session: Session, actor: Principal, user_id: int) -> User:
    """An account, for those who manage accounts (others cannot probe ids)."""
    authorize(session, actor, "user.manage", target=str(user_id), target_type="user")
    return get_user(session, user_id)


def is_locked(throttle: Throttle, username: str) -> bool:
    """Whether sign-in to this account is refused for now after too many failed attempts."""
    return not throttle.allowed(*login_key(username))


def disable_user(session: Session, actor: Principal, user_id: int) -> User:
    """Disable an account: it cannot sign in and its browser sessions end at once (admins)."""
    user = access_user(session, actor, user_id)
    if actor.user_id == user.id:
        raise Conflict("you cannot disable your own account", field="user", code="self-disable")
    if user.active and Role.ADMIN in user.roles:
        _keep_an_administrator(session, user)
    user.active = False
    user.sessions_valid_after = clock.now()
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    audit.record(session, actor, "user.disable", target=user.username, target_type="user")
    return user


def enable_user(session: Session, actor: Principal, user_id: int) -> User:
    """Let a disabled account sign in again (admins); its old sessions stay ended."""
    user = access_user(session, actor, user_id)
    user.active = True
    audit.record(session, actor, "user.enable", target=user.username, target_type="user")
    return user


def reset_password(
    session: Session, actor: Principal, user_id: int, *, password: str | None = None
) -> str:
    """Give an account a new password (admins): the one given, else a generated one, returned
    once. Every browser session of the account ends."""
    user = access_user(session, actor, user_id)
    chosen = password if password is not None else new_secret(12)
    if len(chosen) < MIN_PASSWORD:
        raise Invalid(
            f"password must have at least {MIN_PASSWORD} characters",
            field="password", code="password-short",
        )  # fmt: skip
    user.password_hash = hash_password(chosen)
    user.sessions_valid_after = clock.now()
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    audit.record(
        session, actor, "user.password-reset", target=user.username, target_type="user",
        detail="generated" if password is None else "set by administrator",
    )  # fmt: skip
    return chosen


def unlock_user(session: Session, actor: Principal, throttle: Throttle, user_id: int) -> User:
    """Let an account try to sign in again at once after too many failed attempts (admins)."""
    user = access_user(session, actor, user_id)
    was_locked = is_locked(throttle, user.username)
    audit.record(
        session, actor, "user.unlock", target=user.username, target_type="user",
        detail="was locked" if was_locked else "was not locked",
    )  # fmt: skip
    throttle.clear(*login_key(user.username))
    return user


def _check(validate: Callable[[str], None], value: str, field: str) -> None:
    try:
        validate(value)
    except ValueError as exc:
        raise Invalid(f"{field}: {exc}", field=field) from exc


def get_user(session: Session, user_id: int) -> User:
    """The user, or NotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such account")
    return user


def authenticate(
    session: Session, throttle: Throttle, *, username: str, password: str, client_ip: str | None
) -> User:
    """Check a password sign-in; throttled per account and per address, audited either way."""
    keys = [login_key(username)]
    if client_ip:
        keys.append(("login-ip", client_ip))
    anonymous = Principal(kind="anonymous", name=username[:64] or "anonymous")
    _check_throttle(
        throttle, keys, "too many sign-in attempts; wait a minute and try again",
        audit.Pending(
            anonymous, "auth.login", target=username[:64], target_type="user", detail="throttled"
        ),
    )  # fmt: skip
    user = session.scalars(select(User).where(User.username == username)).first()
    # The same answer, after the same argon2 work, for an unknown account and a wrong password.
    matches = verify_password(user.password_hash if user else _dummy_hash(), password)
    if user is None or not user.active or not matches:
        for k in keys:
            throttle.hit(*k)
        error = Unauthenticated("wrong username or password")
        error.audit = audit.Pending(
            anonymous,
            "auth.login",
            target=username[:64],
            target_type="user",
            detail="bad credentials",
        )
        raise error
    throttle.clear(*keys[0])
    user.last_login_at = clock.now()
    audit.record(session, principal_for(user), "auth.login", target=username, target_type="user")
    return user


def _check_throttle(
    throttle: Throttle, keys: list[tuple[str, str]], message: str, entry: audit.Pending
) -> None:
    """TooManyRequests (carrying `entry` for the audit log) once any key is over its limit."""
    if not all(throttle.allowed(*k) for k in keys):
        error = TooManyRequests(message, retry_after=max(throttle.retry_after(*k) for k in keys))
        error.audit = entry
        raise error


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # An unknown account or client is checked against this, so it costs what a known one does.
    return hash_password(new_secret(16))


def logout(session: Session, actor: Principal) -> None:
    """Record the end of a browser session (the web layer deletes it from the session store)."""
    audit.record(session, actor, "auth.logout", target=actor.name, target_type="user")


def session_is_valid(user: User, signed_in_at: float | None) -> bool:
    """Whether a browser session signed in at `signed_in_at` (Unix time) still speaks for `user`."""
    if not user.active:
        return False
    if user.sessions_valid_after is None:
        return True
    return signed_in_at is not None and signed_in_at >= user.sessions_valid_after.timestamp()


def revoke_sessions(session: Session, actor: Principal, user: User) -> None:
    """End every browser session of `user` at once, in every process (the user or an admin).

    Sessions signed in before now are refused from the next request on, whatever store holds
    them; those kept in the database are deleted as well.
    """
    if actor.user_id != user.id:
        authorize(session, actor, "user.manage", target=user.username, target_type="user")
    user.sessions_valid_after = clock.now()
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    audit.record(session, actor, "auth.sessions-revoke", target=user.username, target_type="user")


def revoke_user_sessions(session: Session, actor: Principal, user_id: int) -> None:
    """revoke_sessions for an account id; who may not manage accounts cannot probe ids."""
    if actor.user_id != user_id:
        authorize(session, actor, "user.manage", target=str(user_id), target_type="user")
    revoke_sessions(session, actor, get_user(session, user_id))


@dataclass(frozen=True)
class NewClient:
    client: ApiClient
    secret: str  # shown once, stored only as a hash


CLIENT_NAME_MAX = 200


def client_scopes() -> list[str]:
    """The scopes an API client may be given: the capabilities of `core.security.POLICY` and
    the reads of data (`resource.read`: its own organisation's rows)."""
    return sorted({*POLICY, *policies.DATA_READS})


def create_client(
    session: Session, actor: Principal, *, organization_id: int, name: str, scopes: list[str]
) -> NewClient:
    """Register an organisation's API client (admins); its secret is returned once and only
    its hash is kept."""
    authorize(session, actor, "client.manage", target=name, target_type="api-client")
    name = " ".join(name.split())
    if not name or len(name) > CLIENT_NAME_MAX:
        raise Invalid(f"name: 1–{CLIENT_NAME_MAX} characters", field="name", code="client-name")
    org = session.get(Organization, organization_id)
    if org is None:
        raise Invalid("no such organisation", field="organization", code="unknown-organization")
    chosen = _checked_scopes(scopes)
    secret = new_secret(32)
    client = ApiClient(
        client_id="mc_" + new_secret(12).replace("-", "").replace("_", "")[:16].lower(),
        secret_hash=hash_password(secret),
        name=name,
        organization_id=organization_id,
        scopes=chosen,
    )
    session.add(client)
    session.flush()
    audit.record(
        session, actor, "client.create", target=client.client_id, target_type="api-client",
        detail=json.dumps({"name": name, "organization": org.code, "scopes": chosen},
                          ensure_ascii=False, sort_keys=True),
    )  # fmt: skip
    return NewClient(client, secret)


def _checked_scopes(scopes: list[str]) -> list[str]:
    chosen = sorted({s.strip() for s in scopes if s.strip()})
    if not chosen:
        raise Invalid("give the client at least one scope", field="scopes", code="no-scope")
    unknown = sorted(set(chosen) - set(client_scopes()))
    if unknown:
        raise Invalid(
            f"unknown scope {unknown[0]!r}; one of: {', '.join(client_scopes())}",
            field="scopes", code="unknown-scope",
        )  # fmt: skip
    return chosen


def get_client(session: Session, client_id: str) -> ApiClient:
    """The API client with this id, or NotFound."""
    client = session.scalars(select(ApiClient).where(ApiClient.client_id == client_id)).first()
    if client is None:
        raise NotFound("no such API client")
    return client


@dataclass(frozen=True)
class ClientRow:
    """An API client as the administrators' list shows it."""

    client: ApiClient
    organization: Organization


def list_clients(
    session: Session, actor: Principal, *, organization_id: int | None = None
) -> list[ClientRow]:
    """API clients, active first, then by organisation and name (admins)."""
    authorize(session, actor, "client.manage", target_type="api-client")
    query = (
        select(ApiClient, Organization)
        .join(Organization, Organization.id == ApiClient.organization_id)
        .order_by(ApiClient.active.desc(), Organization.code, ApiClient.name, ApiClient.id)
    )
    if organization_id is not None:
        query = query.where(ApiClient.organization_id == organization_id)
    return [ClientRow(c, o) for c, o in session.execute(query)]


def access_client(session: Session, actor: Principal, client_id: str) -> ClientRow:
    """One API client with its organisation (admins)."""
    authorize(session, actor, "client.manage", target=client_id, target_type="api-client")
    client = get_client(session, client_id)
    org = session.get(Organization, client.organization_id)
    if org is None:  # the foreign key makes this impossible
        raise NotFound("no such API client")
    return ClientRow(client, org)


def rotate_client(session: Session, actor: Principal, client_id: str) -> NewClient:
    """Give an API client a new secret, returned once (admins); the old one is refused from now.

    Tokens issued before stay valid until they expire; revoke the client to end them at once.
    """
    authorize(session, actor, "client.manage", target=client_id, target_type="api-client")
    client = get_client(session, client_id)
    if not client.active:
        raise Conflict(
            "a revoked client cannot be given a new secret; create a new client",
            field="client", code="client-revoked",
        )  # fmt: skip
    secret = new_secret(32)
    client.secret_hash = hash_password(secret)
    audit.record(session, actor, "client.rotate", target=client_id, target_type="api-client")
    return NewClient(client, secret)


def revoke_client(session: Session, actor: Principal, client_id: str) -> ApiClient:
    """Disable an API client: its tokens are refused at once, in every process (admins only)."""
    authorize(session, actor, "client.manage", target=client_id, target_type="api-client")
    client = get_client(session, client_id)
    client.active = False
    policies.bump_epoch(session)
    audit.record(session, actor, "client.revoke", target=client_id, target_type="api-client")
    return client


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"


def client_credentials_token(
    session: Session,
    key: NodeKey,
    *,
    client_id: str,
    client_secret: str,
    scope: str | None,
    issuer: str,
    audience: str,
    ttl: timedelta,
    throttle: Throttle,
    client_ip: str | None,
) -> TokenGrant:
    """OAuth2 client-credentials grant (RFC 6749 §4.4): a short-lived token for granted scopes.

    Throttled like sign-in, per client id and per address; audited either way.
    """
    keys = [("token-client", client_id[:64])]
    if client_ip:
        keys.append(("token-ip", client_ip))
    anonymous = Principal(kind="anonymous", name=client_id[:64] or "anonymous")
    _check_throttle(
        throttle, keys, "too many token requests; wait a minute and try again",
        audit.Pending(
            anonymous, "auth.token", target=client_id[:64], target_type="api-client",
            detail="throttled",
        ),
    )  # fmt: skip
    client = session.scalars(select(ApiClient).where(ApiClient.client_id == client_id)).first()
    # An unknown client id costs the same argon2 work as a known one with a wrong secret.
    matches = verify_password(client.secret_hash if client else _dummy_hash(), client_secret)
    if client is None or not client.active or not matches:
        for k in keys:
            throttle.hit(*k)
        error = Unauthenticated("invalid client credentials", code="invalid-client")
        error.audit = audit.Pending(
            anonymous,
            "auth.token",
            target=client_id[:64],
            target_type="api-client",
            detail="bad credentials",
        )
        raise error
    throttle.clear(*keys[0])
    requested = set(scope.split()) if scope else set(client.scopes)
    if not requested <= set(client.scopes):
        extra = ", ".join(sorted(requested - set(client.scopes)))
        raise Invalid(
            f"scope not granted to this client: {extra}", code="invalid-scope", field="scope"
        )
    token = issue_token(
        key,
        issuer=issuer,
        audience=audience,
        subject=f"client:{client.client_id}",
        scopes=sorted(requested),
        ttl=ttl,
        extra={"org": client.organization_id},
    )
    actor = Principal(kind="client", name=client.client_id, organization_id=client.organization_id)
    audit.record(
        session,
        actor,
        "auth.token",
        target=client.client_id,
        target_type="api-client",
        detail=" ".join(sorted(requested)),
    )
    return TokenGrant(token, int(ttl.total_seconds()), " ".join(sorted(requested)))


def principal_from_token(
    session: Session, key: NodeKey, token: str, *, issuer: str, audience: str
) -> Principal:
    """The client a bearer token speaks for; refused if the token or the client is not valid."""
    claims = read_token(key, token, issuer=issuer, audience=audience)
    subject = str(claims["sub"])
    if not subject.startswith("client:"):
        raise Unauthenticated("access token refused: unknown subject")
    client_id = subject.removeprefix("client:")
    client = session.scalars(select(ApiClient).where(ApiClient.client_id == client_id)).first()
    if client is None or not client.active:
        raise Unauthenticated("access token refused: client disabled")
    return Principal(
        kind="client",
        name=client.client_id,
        organization_id=client.organization_id,
        scopes=frozenset(str(claims.get("scope", "")).split()),
    )
