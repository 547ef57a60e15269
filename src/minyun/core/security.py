"""Who is acting, passwords, access tokens, and the one authorisation point.

Every data access in minyun calls `authorize`. Today it decides by role; grants
(sharing issue) plug in through `GRANT_CHECKS` without changing any caller.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from sqlalchemy.orm import Session

from minyun.core import audit, clock
from minyun.core.errors import DomainError, Forbidden, Unauthenticated
from minyun.core.keys import NodeKey


class Role(StrEnum):
    ADMIN = "admin"
    STEWARD = "steward"  # publishes resources
    APPROVER = "approver"  # approves sharing applications
    CONSUMER = "consumer"  # uses shared resources
    AUDITOR = "auditor"  # reads the audit log


@dataclass(frozen=True)
class Principal:
    """The actor of a request: a user, an API client, or the system itself."""

    kind: str  # "user", "client", "system", "anonymous"
    name: str
    user_id: int | None = None
    organization_id: int | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    account_kind: str | None = None
    on_behalf_of: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    def manages(self, organization_id: int | None) -> bool:
        """Staff of the organisation, or an admin."""
        return Role.ADMIN in self.roles or (
            organization_id is not None and organization_id == self.organization_id
        )

    @classmethod
    def system(cls, on_behalf_of: str | None = None) -> Principal:
        return cls(kind="system", name="minyun", on_behalf_of=on_behalf_of)

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(kind="anonymous", name="anonymous")


# --- passwords ---------------------------------------------------------------

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether the password matches; never raises for a wrong one."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_secret(nbytes: int = 24) -> str:
    """A random URL-safe secret for passwords and client secrets."""
    return secrets.token_urlsafe(nbytes)


# --- access tokens (OAuth2 client credentials) -----------------------------------


def _jwk(key: NodeKey) -> OKPKey:
    return OKPKey.import_key(key.private_pem(), {"kid": key.kid})


def issue_token(
    key: NodeKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    scopes: list[str],
    ttl: timedelta,
    extra: dict[str, Any] | None = None,
) -> str:
    """A short-lived JWT access token signed with EdDSA over Ed25519 (alg "Ed25519", RFC 9864)."""
    now = int(clock.now().timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl.total_seconds()),
        "jti": uuid.uuid4().hex,
        "scope": " ".join(sorted(scopes)),
        **(extra or {}),
    }
    header = {"alg": "Ed25519", "kid": key.kid, "typ": "at+jwt"}
    return jwt.encode(header, claims, _jwk(key), algorithms=["Ed25519"])


def read_token(key: NodeKey, token: str, *, issuer: str, audience: str) -> dict[str, Any]:
    """The claims of a valid token; Unauthenticated for a forged, expired or foreign one."""
    try:
        decoded = jwt.decode(token, _jwk(key), algorithms=["Ed25519"])
        jwt.JWTClaimsRegistry(
            now=int(clock.now().timestamp()),
            leeway=5,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
        ).validate(decoded.claims)
    except JoseError as exc:
        raise Unauthenticated(f"access token refused: {exc.description or exc.error}") from exc
    except ValueError as exc:
        raise Unauthenticated("access token refused: malformed token") from exc
    return dict(decoded.claims)


# --- the authorisation point ------------------------------------------------------

# Which roles may do which action. An action missing here is refused to everyone
# but the system: new capabilities are closed until someone opens them.
POLICY: dict[str, frozenset[str]] = {
    "org.read": frozenset({"*"}),
    "org.manage": frozenset({Role.ADMIN}),
    "user.manage": frozenset({Role.ADMIN}),
    "client.manage": frozenset({Role.ADMIN}),
    "audit.read": frozenset({Role.AUDITOR, Role.ADMIN}),
    "audit.verify": frozenset({Role.AUDITOR, Role.ADMIN}),
    "jobs.read": frozenset({Role.ADMIN, Role.STEWARD, Role.AUDITOR}),
    "jobs.submit": frozenset({Role.ADMIN, Role.STEWARD}),
    "demo.load": frozenset({Role.ADMIN}),
    # Loads: stewards of the providing department (checked again by the service) and admins.
    "resource.load": frozenset({Role.ADMIN, Role.STEWARD}),
    # Eco-cloud: every member of staff may watch the air; stewards (who run the monitoring
    # network) ingest; the departments an alert reaches respond to it.
    "eco.read": frozenset({"*"}),
    "eco.ingest": frozenset({Role.ADMIN, Role.STEWARD}),
    "eco.respond": frozenset({Role.ADMIN, Role.STEWARD, Role.CONSUMER}),
    # Catalog: every signed-in user reads published resources (drafts: see catalog.service);
    # stewards change the resources of their own organisation, admins any.
    "catalog.read": frozenset({"*"}),
    "resource.create": frozenset({Role.ADMIN, Role.STEWARD}),
    "resource.edit": frozenset({Role.ADMIN, Role.STEWARD}),
    "resource.publish": frozenset({Role.ADMIN, Role.STEWARD}),
    "resource.retire": frozenset({Role.ADMIN, Role.STEWARD}),
    # Rows: the provider's own staff (checked by the query service) and admins, until
    # sharing grants open them to others through GRANT_CHECKS.
    "resource.read": frozenset({Role.ADMIN}),
}

# Reading or writing a resource's rows is never opened by a client's scope alone: the scope
# counts only for the providing department's own clients; others need a sharing grant.
DATA_ACTIONS = frozenset({"resource.read", "resource.load"})

GrantCheck = Callable[[Session, Principal, str, str | None], bool]
# Later issues register grant checks here (e.g. "resource.read" by an approved Grant).
GRANT_CHECKS: list[GrantCheck] = []


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    via: str = "role"
    details: dict[str, Any] = field(default_factory=dict)


def decide(
    session: Session,
    actor: Principal,
    action: str,
    target: str | None = None,
    *,
    provider_id: int | None = None,
) -> Decision:
    """Whether `actor` may do `action` (on `target`), and why; writes nothing."""
    if actor.kind == "system":
        return Decision(True, "system")
    if not actor.authenticated:
        return Decision(False, "sign in first")
    allowed_roles = POLICY.get(action)
    if allowed_roles is not None and ("*" in allowed_roles or actor.roles & allowed_roles):
        return Decision(True, f"role allows {action}")
    own_data = provider_id is not None and provider_id == actor.organization_id
    if (
        actor.kind == "client"
        and action in actor.scopes
        and (action not in DATA_ACTIONS or own_data)
    ):
        return Decision(True, f"scope {action}", via="scope")
    for check in GRANT_CHECKS:
        if check(session, actor, action, target):
            return Decision(True, f"grant allows {action}", via="grant")
    return Decision(False, f"{action} is not permitted for this account")


def authorize(
    session: Session,
    actor: Principal,
    action: str,
    *,
    target: str | None = None,
    target_type: str | None = None,
    purpose: str | None = None,
    provider_id: int | None = None,
) -> Decision:
    """The one authorisation point: allow, or raise Forbidden carrying the denial's audit entry.

    `provider_id` is the organisation that provides the data being touched, if any.

    The entry is written by `unit_of_work` after the caller's transaction rolls back, so a
    refused request leaves its audit record and nothing else.
    """
    decision = decide(session, actor, action, target, provider_id=provider_id)
    if not decision.allowed:
        error: DomainError = (
            Forbidden(decision.reason) if actor.authenticated else Unauthenticated(decision.reason)
        )
        error.audit = audit.Pending(
            actor=actor,
            action=action,
            target=target,
            target_type=target_type,
            purpose=purpose,
            outcome=audit.Outcome.DENIED,
            detail=decision.reason,
        )
        raise error
    return decision
