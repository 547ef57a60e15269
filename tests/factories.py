"""Valid objects for tests: organisations with real check characters, accounts, clients."""

from __future__ import annotations

import itertools

from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.accounts.models import AccountKind, User
from minyun.core import identifiers
from minyun.core.security import Principal
from minyun.orgs import service as orgs
from minyun.orgs.models import Organization

SYSTEM = Principal.system()
PASSWORD = "correct horse battery"
_counter = itertools.count(1)


def ensure_divisions(session: Session) -> None:
    orgs.load_divisions(session, orgs.packaged_divisions())


def make_uscc(n: int, region: str = "350100") -> str:
    body = f"{n:08d}"[-8:]
    return identifiers.make_uscc("1", "1", region, body)


def make_org(session: Session, **over: object) -> Organization:
    ensure_divisions(session)
    n = next(_counter) + 7000
    values: dict[str, object] = {
        "code": f"org-{n}",
        "name": f"测试单位{n}",
        "uscc": make_uscc(n, str(over.get("division_code", "350100"))),
        "division_code": "350100",
    }
    values.update(over)
    return orgs.create_organization(session, SYSTEM, **values)  # type: ignore[arg-type]


def make_user(session: Session, *, roles: list[str] | None = None, **over: object) -> User:
    n = next(_counter)
    org = over.pop("organization", None) or make_org(session)
    values: dict[str, object] = {
        "username": f"user{n}",
        "password": PASSWORD,
        "display_name": f"测试用户{n}",
        "kind": AccountKind.STAFF,
        "organization_id": org.id,  # type: ignore[attr-defined]
        "roles": roles or [],
    }
    values.update(over)
    return accounts.create_user(session, SYSTEM, **values)  # type: ignore[arg-type]
