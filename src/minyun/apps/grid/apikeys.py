"""Open311 api keys: created for a named client, kept as a hash, rate-limited, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.grid.models import ApiKey
from minyun.apps.grid.rules import configure
from minyun.core import audit, clock
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests
from minyun.core.security import Principal
from minyun.core.throttle import Throttle

PREFIX = "o311_"


@dataclass(frozen=True)
class NewKey:
    """A key as created: the secret is shown this once."""

    name: str
    key: str
    rate_limit: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    session: Session, actor: Principal, name: str, *, rate_limit: str = "60/minute"
) -> NewKey:
    """A new api_key for an Open311 client (admins, the grid centre's stewards)."""
    configure(session, actor, target=name, target_type="open311-key")
    name = name.strip()
    if not name or len(name) > 100:
        raise Invalid("a key needs a name of at most 100 characters", field="name")
    try:
        from limits import parse

        parse(rate_limit)
    except ValueError as exc:
        raise Invalid(f"bad rate limit {rate_limit!r}", field="rate_limit") from exc
    if session.scalars(select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
        raise Conflict(f"a key named {name} exists", code="key-exists")
    key = PREFIX + secrets.token_urlsafe(24)
    session.add(ApiKey(name=name, prefix=key[:12], key_hash=_hash(key), rate_limit=rate_limit))
    session.flush()
    audit.record(session, actor, "grid.api-key.create", target=name, target_type="open311-key",
                 detail=f"rate {rate_limit}")  # fmt: skip
    return NewKey(name, key, rate_limit)


def revoke_key(session: Session, actor: Principal, name: str) -> ApiKey:
    """Stop a key at once: its next request is refused."""
    configure(session, actor, target=name, target_type="open311-key")
    found = session.scalars(select(ApiKey).where(ApiKey.name == name)).first()
    if found is None:
        raise NotFound(f"no key named {name}", code="unknown-key")
    if not found.active:
        raise Conflict(f"the key {name} is already revoked", code="key-revoked")
    found.active = False
    found.revoked_at = clock.now()
    audit.record(session, actor, "grid.api-key.revoke", target=name, target_type="open311-key")
    return found


def list_keys(session: Session, actor: Principal) -> list[ApiKey]:
    """Every key, active and revoked (never the secret: only its first characters)."""
    configure(session, actor, target="keys", target_type="open311-key")
    return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))


@lru_cache(maxsize=64)
def _throttle(storage_uri: str, limit: str) -> Throttle:
    return Throttle(storage_uri, limit)


def check_key(session: Session, key: str, *, storage_uri: str) -> tuple[ApiKey, Principal]:
    """The active key and the client acting with it; Forbidden if unknown, revoked or missing."""
    if not key:
        raise Forbidden("api_key was not provided", code="api-key")
    found = session.scalars(select(ApiKey).where(ApiKey.key_hash == _hash(key))).first()
    if found is None or not found.active:
        raise Forbidden("Invalid api_key received -- can't proceed with create_request.",
                        code="api-key")  # fmt: skip
    throttle = _throttle(storage_uri, found.rate_limit)
    if not throttle.hit("open311", found.name):
        raise TooManyRequests(f"api_key {found.name} is over its rate of {found.rate_limit}",
                              retry_after=throttle.retry_after("open311", found.name))  # fmt: skip
    return found, Principal(kind="open311", name=found.name[:90])
