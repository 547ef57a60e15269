"""Developers of the open data API: keys, per-key rate limits, usage from the audit log.

Any signed-in account (citizens and enterprises too) makes keys for its programs. A key is
sent as CKAN clients send theirs (`X-CKAN-API-Key`, or `Authorization` without a scheme);
the request then acts as the key's owner, counted against the key's limit (calls a minute,
a moving window in the node's rate-limit store: memory, or Redis in production). Usage is
not counted twice: every read is already an audit record (`resource.read`, purpose "open
data", with `dataset=` and `key=` in its detail), and the statistics are rolled up from them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.accounts.models import User
from minyun.core import audit, clock, policies
from minyun.core.audit import AuditRecord
from minyun.core.errors import Conflict, Invalid, NotFound, TooManyRequests, Unauthenticated
from minyun.core.security import Principal
from minyun.core.throttle import Throttle
from minyun.opendata.models import DeveloperKey, KeyState, OpenDataset
from minyun.opendata.service import PURPOSE

MAX_KEYS = 5
DEFAULT_PER_MINUTE = 600
_KEY = re.compile(r"^odk_([0-9a-f]{12})\.([A-Za-z0-9_-]{20,64})$")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _owner(actor: Principal) -> int:
    if actor.kind != "user" or actor.user_id is None:
        raise Unauthenticated("sign in to manage API keys")
    return actor.user_id


def create_key(
    session: Session, actor: Principal, *, name: str, per_minute: int = DEFAULT_PER_MINUTE
) -> tuple[DeveloperKey, str]:
    """A new key of the signed-in account and its secret (shown once)."""
    owner = _owner(actor)
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("name: 1 to 100 characters", field="name")
    if not 1 <= per_minute <= 6000:
        raise Invalid("per_minute must be between 1 and 6000", field="per_minute")
    active = session.scalar(
        select(func.count()).where(
            DeveloperKey.user_id == owner, DeveloperKey.state == KeyState.ACTIVE
        )
    )
    if int(active or 0) >= MAX_KEYS:
        raise Conflict(f"at most {MAX_KEYS} active keys; revoke one first", code="too-many-keys")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    key = DeveloperKey(prefix=prefix, secret_hash=_digest(secret), user_id=owner, name=name,
                       per_minute=per_minute, state=KeyState.ACTIVE)  # fmt: skip
    session.add(key)
    session.flush()
    audit.record(session, actor, "opendata.key.create", target=prefix, target_type="api-key",
                 detail=f"name={name}; per_minute={per_minute}")  # fmt: skip
    return key, f"odk_{prefix}.{secret}"


def list_keys(session: Session, actor: Principal) -> list[DeveloperKey]:
    """The signed-in account's keys, newest first."""
    owner = _owner(actor)
    return list(
        session.scalars(
            select(DeveloperKey)
            .where(DeveloperKey.user_id == owner)
            .order_by(DeveloperKey.id.desc())
        )
    )


def revoke_key(session: Session, actor: Principal, prefix: str) -> DeveloperKey:
    """Revoke one of the account's keys; its next call is refused."""
    owner = _owner(actor)
    key = session.scalars(select(DeveloperKey).where(DeveloperKey.prefix == prefix)).first()
    if key is None or key.user_id != owner:
        raise NotFound(f"no key {prefix}")
    if key.state == KeyState.REVOKED:
        raise Conflict(f"key {prefix} is already revoked", code="revoked")
    key.state = KeyState.REVOKED
    key.revoked_at = clock.now()
    audit.record(session, actor, "opendata.key.revoke", target=prefix, target_type="api-key")
    return key


@dataclass(frozen=True)
class KeyUse:
    """Who a key's request acts as, and the key (its prefix goes into the audit detail)."""

    actor: Principal
    prefix: str
    per_minute: int


def _refused(detail: str) -> Unauthenticated:
    error = Unauthenticated(detail)
    error.audit = audit.Pending(Principal.anonymous(), "auth.key-use", outcome=audit.Outcome.DENIED,
                                detail=detail)  # fmt: skip
    return error


def use_key(session: Session, raw: str) -> KeyUse:
    """The key's owner as the actor of this request; refused (and audited) otherwise."""
    found = _KEY.match(raw.strip())
    if found is None:
        raise _refused("API key refused: malformed")
    prefix, secret = found.groups()
    key = session.scalars(select(DeveloperKey).where(DeveloperKey.prefix == prefix)).first()
    if key is None or not hmac.compare_digest(key.secret_hash, _digest(secret)):
        raise _refused("API key refused: unknown key")
    if key.state != KeyState.ACTIVE:
        raise _refused(f"API key refused: key {prefix} is revoked")
    user = session.get(User, key.user_id)
    if user is None or not user.active:
        raise _refused(f"API key refused: the account of key {prefix} is disabled")
    return KeyUse(accounts.principal_for(user), prefix, key.per_minute)


@lru_cache(maxsize=64)
def _throttle(storage_uri: str, per_minute: int) -> Throttle:
    return Throttle(storage_uri, f"{per_minute}/minute")


def count_call(storage_uri: str, use: KeyUse) -> None:
    """Count one call against the key's limit; TooManyRequests beyond it."""
    throttle = _throttle(storage_uri, use.per_minute)
    if not throttle.hit("open-api-key", use.prefix):
        raise TooManyRequests(
            f"API key {use.prefix} is over its limit of {use.per_minute} calls a minute",
            retry_after=throttle.retry_after("open-api-key", use.prefix),
        )


# --- usage, rolled up from the audit log -------------------------------------------------------


def _kind(detail: str | None) -> str:
    return "download" if detail and "download format=" in detail else "api"


@dataclass(frozen=True)
class Usage:
    """Calls by day and kind (api, download), and by dataset."""

    days: list[str]
    api: list[int]
    downloads: list[int]
    datasets: list[tuple[str, int]]


def key_usage(session: Session, actor: Principal, prefix: str, *, days: int = 30) -> Usage:
    """The account's key's reads of the last `days` days (the audit records that name it)."""
    owner = _owner(actor)
    key = session.scalars(select(DeveloperKey).where(DeveloperKey.prefix == prefix)).first()
    if key is None or key.user_id != owner:
        raise NotFound(f"no key {prefix}")
    since = clock.now() - timedelta(days=days)
    rows = session.execute(
        select(AuditRecord.at, AuditRecord.detail).where(
            AuditRecord.actor == actor.label, AuditRecord.action == policies.READ,
            AuditRecord.purpose == PURPOSE, AuditRecord.at >= since,
            AuditRecord.detail.like(f"%key={prefix}%"),
        )
    ).all()  # fmt: skip
    return _rollup(rows, days)


def _rollup(rows: Sequence[Any], days: int) -> Usage:
    today = clock.now().date()
    labels = [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
    api: Counter[str] = Counter()
    downloads: Counter[str] = Counter()
    datasets: Counter[str] = Counter()
    for at, detail in rows:
        day = at.date().isoformat() if hasattr(at, "date") else str(at)[:10]
        (downloads if _kind(detail) == "download" else api)[day] += 1
        found = re.match(r"dataset=([^;]+);", detail or "")
        if found:
            datasets[found.group(1)] += 1
    return Usage(labels, [api[d] for d in labels], [downloads[d] for d in labels],
                 datasets.most_common(20))  # fmt: skip


def dataset_usage(session: Session, dataset: OpenDataset, *, days: int = 30) -> Usage:
    """A dataset's reads (API calls and downloads) of the last `days` days, from the audit log."""
    since = clock.now() - timedelta(days=days)
    rows = session.execute(
        select(AuditRecord.at, AuditRecord.detail).where(
            AuditRecord.action == policies.READ, AuditRecord.purpose == PURPOSE,
            AuditRecord.object_id == dataset.resource.code, AuditRecord.at >= since,
            AuditRecord.detail.like(f"dataset={dataset.name};%"),
        )
    ).all()  # fmt: skip
    return _rollup(rows, days)
