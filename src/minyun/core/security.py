"""Who is acting, passwords, access tokens, and the one authorisation point.

Every access in minyun calls `authorize`: a read of resource data gets an `AccessPlan` from
the named policies of `core.policies`; any other action is decided by role, client scope and
the registered capability checks (`GRANT_CHECKS`).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, overload

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from sqlalchemy.orm import Session

from minyun.core import audit, clock, policies
from minyun.core.errors import DomainError, Forbidden, Unauthenticated
from minyun.core.keys import NodeKey
from minyun.core.policies import AccessPlan, DataResource


class Role(StrEnum):
    ADMIN = "admin"
    STEWARD = "steward"  # publishes resources
    APPROVER = "approver"  # approves sharing applications
    CONSUMER = "consumer"  # uses shared resources
    AUDITOR = "auditor"  # reads the audit log
    OPERATOR = "operator"  # runs air-monitoring stations: ingests their readings (eco-cloud)


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


# Claims issue_token sets itself (RFC 7519 §4.1, RFC 9068 §2.2) or that would change what the
# token means; `extra` may not carry them.
RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope", "client_id", "auth_time",
     "acr", "amr", "cnf", "act", "may_act", "roles", "groups", "entitlements"}
)  # fmt: skip
# RFC 9068 §4: the "typ" header of a JWT access token; "application/at+jwt" is the same type.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})


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
    """A short-lived JWT access token signed with EdDSA over Ed25519 (alg "Ed25519", RFC 9864).

    `extra` adds claims of minyun's own; a registered or RFC 9068 claim cannot be overridden.
    """
    clash = sorted(RESERVED_CLAIMS & set(extra or {}))
    if clash:
        raise ValueError(f"extra claims may not set {', '.join(clash)}")
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
        # Only an access token is one: an ID token or any other JWT signed by this key is not.
        if str(decoded.header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise Unauthenticated("access token refused: not an access token (typ at+jwt)")
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


class TokenCache:
    """Verified access-token claims, kept until the token expires (bounded, per process).

    A token is looked up by its whole text, so a forged or edited token is never found and
    goes through full verification. Revocation is not cached: callers check that the
    token's client is still active on every request.
    """

    def __init__(self, key: NodeKey, *, issuer: str, audience: str, max_size: int = 10_000) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.max_size = max_size
        self._claims: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims; Unauthenticated when it is forged, expired or foreign."""
        now = clock.now().timestamp()
        with self._lock:
            found = self._claims.get(token)
        if found is not None and found["exp"] > now:
            return found
        claims = read_token(self.key, token, issuer=self.issuer, audience=self.audience)
        if not str(claims.get("sub", "")).startswith("client:"):
            raise Unauthenticated("access token refused: unknown subject")
        with self._lock:
            if len(self._claims) >= self.max_size:
                self._claims = {t: c for t, c in self._claims.items() if c["exp"] > now}
                if len(self._claims) >= self.max_size:
                    self._claims.clear()
            self._claims[token] = claims
        return claims


# --- the authorisation point ------------------------------------------------------

# Which roles may do which action; "*" is every civil servant (staff and the departments'
# API clients), never a citizen's or an enterprise's account. An action missing here is
# refused to everyone but the system: new capabilities are closed until someone opens them.
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
    # Eco-cloud: every member of staff may watch the air; the monitoring network's operators
    # ingest, and only for the stations their organisation runs (apps.ecocloud.operators
    # .operates, checked again by the service); the departments an alert reaches respond.
    "eco.read": frozenset({"*"}),
    "eco.ingest": frozenset({Role.OPERATOR}),
    "eco.respond": frozenset({Role.ADMIN, Role.STEWARD, Role.OPERATOR, Role.CONSUMER}),
    # Catalog: every signed-in user reads published resources (drafts: see catalog.service);
    # stewards change the resources of their own organisation, admins any.
    "catalog.read": frozenset({"*"}),
    "resource.create": frozenset({Role.ADMIN, Role.STEWARD}),
    "resource.edit": frozenset({Role.ADMIN, Role.STEWARD}),
    "resource.publish": frozenset({Role.ADMIN, Role.STEWARD}),
    "resource.retire": frozenset({Role.ADMIN, Role.STEWARD}),
    "resource.restore": frozenset({Role.ADMIN, Role.STEWARD}),
    # Events: every civil servant may read the log and subscribe to it; what each sees is
    # narrowed per event by minyun.push.service.Visibility (the reader's own rights).
    "events.read": frozenset({"*"}),
    "events.subscribe": frozenset({"*"}),
    # Sharing (minyun.exchange): a department's consumers apply for another's resources; the
    # provider's approvers decide and revoke (checked again by the service: their own
    # department only); every civil servant lists their department's applications and grants.
    "exchange.read": frozenset({"*"}),
    "exchange.apply": frozenset({Role.CONSUMER}),
    "exchange.approve": frozenset({Role.APPROVER}),
    # Nodes (minyun.nodes, 省市互联): administrators keep the registry and publish the catalog
    # upward; every civil servant sees the nodes and the catalog the cities publish here.
    # Reading a city's resource through this node is a registered check (nodes.service).
    "nodes.manage": frozenset({Role.ADMIN}),
    "nodes.read": frozenset({"*"}),
    # Open data (minyun.opendata): the providing department's stewards open its resources
    # (checked again by the service: their own department only).
    "opendata.release": frozenset({Role.ADMIN, Role.STEWARD}),
    # Food traceability (apps.food): EPCIS capture and query are for API clients holding the
    # scope (companies' and platforms' systems), no role opens them; every civil servant sees
    # the supervisor's views; admins and stewards set up pulls from other repositories.
    "epcis.capture": frozenset(),
    "epcis.query": frozenset(),
    "food.supervise": frozenset({"*"}),
    "food.pull": frozenset({Role.ADMIN, Role.STEWARD}),
    # Subjects (minyun.subjects): admins run the resolution; stewards decide uncertain pairs;
    # every civil servant opens a subject's file, each source read through its access plan.
    "subjects.resolve": frozenset({Role.ADMIN}),
    "subjects.review": frozenset({Role.ADMIN, Role.STEWARD}),
    "subjects.read": frozenset({"*"}),
    # Reads of resource data (rows, rejects, quality) are not here: core.policies plans them.
    # Grid governance (apps.grid): civil servants follow reports and work their department's
    # tasks (its own only, checked by the service); admins set up grids, keys and SLA runs.
    # Open311 keys, routing rules and due times: admins and the stewards of the district's
    # grid centre (apps.grid.rules.configure checks the centre).
    "grid.read": frozenset({"*"}),
    "grid.work": frozenset({"*"}),
    "grid.manage": frozenset({Role.ADMIN}),
    "grid.configure": frozenset({Role.ADMIN, Role.STEWARD}),
}

# Open to everyone, anonymous visitors too: what each reader sees is narrowed by its audience
# (core.policies.audience): the open catalog for citizens, the internal one for civil servants.
OPEN_ACTIONS = frozenset({"catalog.read", "org.read"})

# Writing a resource's rows is never opened by a client's scope alone: the scope counts only
# for the providing department's own clients.
DATA_ACTIONS = frozenset({"resource.load"})

GrantCheck = Callable[[Session, Principal, str, str | None], bool]
# Capability checks registered by later issues (data reads plug into core.policies instead).
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
    if action in policies.DATA_READS:
        # Reads of data are planned per resource (authorize(..., resource=…)), never by role.
        return Decision(False, f"{action} needs the resource's access plan")
    if actor.kind == "system":
        return Decision(True, "system")
    if action in OPEN_ACTIONS:
        return Decision(True, f"{action} is open; what is shown depends on the audience")
    if not actor.authenticated:
        return Decision(False, "sign in first")
    allowed_roles = POLICY.get(action)
    civil_servant = policies.audience(actor) == "internal"
    if allowed_roles is not None and (
        ("*" in allowed_roles and civil_servant) or actor.roles & allowed_roles
    ):
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


@overload
def authorize(
    session: Session,
    actor: Principal,
    action: str,
    *,
    resource: DataResource,
    purpose: str | None = None,
) -> AccessPlan: ...


@overload
def authorize(
    session: Session,
    actor: Principal,
    action: str,
    *,
    target: str | None = None,
    target_type: str | None = None,
    purpose: str | None = None,
    provider_id: int | None = None,
) -> Decision: ...


def authorize(
    session: Session,
    actor: Principal,
    action: str,
    *,
    resource: DataResource | None = None,
    target: str | None = None,
    target_type: str | None = None,
    purpose: str | None = None,
    provider_id: int | None = None,
) -> AccessPlan | Decision:
    """The one authorisation point: allow, or raise Forbidden carrying the denial's audit entry.

    With `resource`, a read of its data: the named policies (`core.policies`) plan it and the
    `AccessPlan` is returned — the only thing the `core` readers accept. Without, a capability
    (`org.manage`, `resource.load`, …) decided by role, client scope and grant checks;
    `provider_id` is the organisation that provides the data being touched, if any.

    A refusal's audit entry is written by `unit_of_work` after the caller's transaction rolls
    back, so a refused request leaves its audit record and nothing else.
    """
    if resource is not None:
        verdict = policies.evaluate(session, actor, action, resource)
        if verdict is None:
            raise _refusal(
                actor,
                action,
                f"{action} of {resource.code} is not permitted for this account",
                target=resource.code,
                target_type="resource",
                purpose=purpose,
            )
        plan = policies.plan_for(actor, action, resource, verdict, purpose=purpose)
        if resource.fields and not plan.visible and not plan.aggregated:
            raise _refusal(
                actor,
                action,
                f"no field of {resource.code} is open to this account",
                target=resource.code,
                target_type="resource",
                purpose=purpose,
            )
        return plan
    decision = decide(session, actor, action, target, provider_id=provider_id)
    if not decision.allowed:
        raise _refusal(
            actor, action, decision.reason, target=target, target_type=target_type, purpose=purpose
        )
    return decision


def _refusal(
    actor: Principal,
    action: str,
    reason: str,
    *,
    target: str | None,
    target_type: str | None,
    purpose: str | None,
) -> DomainError:
    error: DomainError = Forbidden(reason) if actor.authenticated else Unauthenticated(reason)
    error.audit = audit.Pending(
        actor=actor,
        action=action,
        target=target,
        target_type=target_type,
        purpose=purpose,
        outcome=audit.Outcome.DENIED,
        detail=reason,
    )
    return error
