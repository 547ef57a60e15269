"""Valid objects for tests: organisations with real check characters, accounts, clients."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.accounts.models import AccountKind, User
from minyun.catalog import service as catalog
from minyun.catalog.models import Resource
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


def person_schema() -> dict[str, Any]:
    """A small valid Table Schema with the minyun keys."""
    return {
        "fields": [
            {"name": "ric", "type": "string", "format": "cn-ric", "title": "公民身份号码",
             "constraints": {"required": True}, "sensitivity": "sensitive", "mask": "partial"},
            {"name": "name", "type": "string", "title": "姓名", "sensitivity": "sensitive"},
            {"name": "age", "type": "integer", "constraints": {"minimum": 0, "maximum": 150}},
        ],
        "primaryKey": ["ric"],
    }  # fmt: skip


def make_resource(
    session: Session, *, provider: Organization | None = None, **over: object
) -> Resource:
    """A draft resource with a schema, unconditionally shared and open (no legal basis needed)."""
    n = next(_counter)
    org = provider or make_org(session)
    values: dict[str, object] = {
        "code": f"res-{n}",
        "name": f"测试资源{n}",
        "provider": org.code,
        "summary": "测试用的资源",
        "theme": "market-regulation",
        "sharing_type": "unconditional",
        "open_type": "unconditional",
        "schema": person_schema(),
    }
    values.update(over)
    return catalog.create_resource(session, SYSTEM, **values)  # type: ignore[arg-type]


def api_client_token(
    http: Any, platform: Any, organization_id: int, scopes: list[str]
) -> tuple[str, dict[str, str]]:
    """A new API client of the organisation with `scopes`: its id and bearer headers.

    The token is asked for over HTTP (`http` is a TestClient of the node's app), as a
    department's system would.
    """
    with platform.factory.begin() as s:
        new = accounts.create_client(
            s, SYSTEM, organization_id=organization_id, name="接口", scopes=scopes
        )
    r = http.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(new.client.client_id, new.secret),
    )
    assert r.status_code == 200, r.text
    return new.client.client_id, {"Authorization": f"Bearer {r.json()['access_token']}"}
