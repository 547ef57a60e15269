"""The administration API: organisations, accounts and API clients, for administrators only."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.factories import PASSWORD, api_client_token, make_org, make_uscc, make_user

ADMIN_SCOPES = ["org.manage", "user.manage", "client.manage"]


@pytest.fixture
def http(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as c:
        yield c


@pytest.fixture
def admin(platform: Platform, http: TestClient) -> dict[str, str]:
    """Bearer headers of an API client holding the administration scopes."""
    with platform.factory.begin() as s:
        org_id = make_org(s).id
    return api_client_token(http, platform, org_id, ADMIN_SCOPES)[1]


@pytest.fixture
def steward(platform: Platform, http: TestClient) -> dict[str, str]:
    """Bearer headers of an ordinary department client (no administration scope)."""
    with platform.factory.begin() as s:
        org_id = make_org(s).id
    return api_client_token(http, platform, org_id, ["org.read", "resource.read"])[1]


def _audit(platform: Platform, action: str) -> list[AuditRecord]:
    with platform.factory() as s:
        query = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        return list(s.scalars(query))


def test_organisations_are_created_and_edited_over_the_api(
    http: TestClient, admin: dict[str, str], platform: Platform
) -> None:
    with platform.factory.begin() as s:
        parent = make_org(s, division_code="350000").code
    body = {"code": "fz-api", "name": "福州市接口单位", "uscc": make_uscc(6101, "350100"),
            "division_code": "350100", "parent": parent}  # fmt: skip
    created = http.post("/api/v1/organizations", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["kind"] == "unit"
    edited = http.patch(
        "/api/v1/organizations/fz-api", json={"name": "福州市新名称", "parent": None}, headers=admin
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["name"] == "福州市新名称" and edited.json()["parent_id"] is None
    bad = http.patch(
        "/api/v1/organizations/fz-api", json={"division_code": "359999"}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["field"] == "division_code"
    assert bad.json()["type"] == "/problems/unknown-division"
    orphan = http.post(
        "/api/v1/organizations",
        json={**body, "code": "fz-api-2", "uscc": make_uscc(6102, "350100"), "parent": "nobody"},
        headers=admin,
    )
    assert orphan.status_code == 422 and orphan.json()["field"] == "parent"
    taken = http.post("/api/v1/organizations", json={**body, "code": "fz-api-3"}, headers=admin)
    assert taken.status_code == 409 and taken.json()["field"] == "uscc"
    assert [r.object_id for r in _audit(platform, "org.edit")] == ["fz-api"]


def test_accounts_are_administered_over_the_api(
    http: TestClient, admin: dict[str, str], platform: Platform
) -> None:
    with platform.factory.begin() as s:
        user = make_user(s, roles=["steward"])
        uid, username = user.id, user.username
    listed = http.get("/api/v1/users", params={"q": username}, headers=admin).json()
    assert [(u["id"], u["roles"], u["active"], u["locked"]) for u in listed] == [
        (uid, ["steward"], True, False)
    ]
    roles = http.put(f"/api/v1/users/{uid}/roles", json={"roles": ["approver"]}, headers=admin)
    assert roles.status_code == 200 and roles.json()["roles"] == ["approver"]
    assert http.post(f"/api/v1/users/{uid}/disable", headers=admin).json()["active"] is False
    assert http.post(f"/api/v1/users/{uid}/enable", headers=admin).json()["active"] is True
    reset = http.post(f"/api/v1/users/{uid}/password-reset", json={}, headers=admin)
    assert reset.status_code == 200 and len(reset.json()["password"]) >= 10
    chosen = http.post(
        f"/api/v1/users/{uid}/password-reset", json={"password": "short"}, headers=admin
    )
    assert chosen.status_code == 422 and chosen.json()["field"] == "password"
    assert http.post(f"/api/v1/users/{uid}/unlock", headers=admin).json()["locked"] is False
    assert http.get("/api/v1/users/2147483647", headers=admin).status_code == 404
    for action in ("user.roles", "user.disable", "user.enable", "user.password-reset"):
        assert len(_audit(platform, action)) == 1, action


def test_unlock_over_the_api_ends_a_sign_in_lock(
    http: TestClient, admin: dict[str, str], platform: Platform
) -> None:
    with platform.factory.begin() as s:
        user = make_user(s)
        uid, username = user.id, user.username
    # Addresses of their own: the sign-in throttle of this process counts per address too.
    with TestClient(http.app, client=("10.92.0.6", 5000)) as desk:
        for _ in range(platform.settings.login_attempts_per_minute):
            page = desk.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf
            desk.post("/login", data={"username": username, "password": "wrong", "csrf": csrf[1]})
    assert http.get(f"/api/v1/users/{uid}", headers=admin).json()["locked"] is True
    assert http.post(f"/api/v1/users/{uid}/unlock", headers=admin).json()["locked"] is False
    # The account's lock is gone; the address that failed keeps its own for up to a minute.
    with TestClient(http.app, client=("10.92.0.7", 5000)) as phone:
        page = phone.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        signed_in = phone.post(
            "/login",
            data={"username": username, "password": PASSWORD, "csrf": csrf[1]},
            follow_redirects=False,
        )
    assert signed_in.status_code == 303


def test_clients_are_created_rotated_and_revoked_over_the_api(
    http: TestClient, admin: dict[str, str], platform: Platform
) -> None:
    with platform.factory.begin() as s:
        org = make_org(s).code
    created = http.post(
        "/api/v1/clients",
        json={"name": "审批系统", "organization": org, "scopes": ["org.read"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    cid, secret = created.json()["client_id"], created.json()["client_secret"]
    listed = http.get("/api/v1/clients", params={"organization": org}, headers=admin)
    assert [c["client_id"] for c in listed.json()] == [cid]
    assert "client_secret" not in listed.json()[0] and secret not in listed.text

    def token(secret: str) -> str | None:
        r = http.post(
            "/api/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)
        )
        return r.json()["access_token"] if r.status_code == 200 else None

    first = token(secret)
    rotated = http.post(f"/api/v1/clients/{cid}/rotate", headers=admin)
    assert rotated.status_code == 200
    new_secret = rotated.json()["client_secret"]
    assert new_secret != secret and token(secret) is None and token(new_secret)
    bearer = {"Authorization": f"Bearer {first}"}
    assert http.get("/api/v1/me", headers=bearer).status_code == 200
    revoked = http.post(f"/api/v1/clients/{cid}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert http.get("/api/v1/me", headers=bearer).status_code == 401
    assert token(new_secret) is None
    bad = http.post(
        "/api/v1/clients",
        json={"name": "x", "organization": "nobody", "scopes": ["org.read"]},
        headers=admin,
    )
    assert bad.status_code == 422 and bad.json()["field"] == "organization"
    unknown = http.post(
        "/api/v1/clients", json={"name": "x", "organization": org, "scopes": ["god"]},
        headers=admin,
    )  # fmt: skip
    assert unknown.status_code == 422 and unknown.json()["field"] == "scopes"
    assert http.post(f"/api/v1/clients/{cid}/rotate", headers=admin).status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "body", "action"),
    [
        ("GET", "/api/v1/users", None, "user.manage"),
        ("PUT", "/api/v1/users/1/roles", {"roles": ["admin"]}, "user.manage"),
        ("POST", "/api/v1/users/1/password-reset", {}, "user.manage"),
        ("GET", "/api/v1/clients", None, "client.manage"),
        ("POST", "/api/v1/clients", {"name": "x", "organization": "y", "scopes": ["org.read"]},
         "client.manage"),
        ("PATCH", "/api/v1/organizations/anything", {"name": "x"}, "org.manage"),
    ],
)  # fmt: skip
def test_others_are_refused_and_the_refusal_is_audited(
    http: TestClient,
    steward: dict[str, str],
    platform: Platform,
    method: str,
    path: str,
    body: dict[str, object] | None,
    action: str,
) -> None:
    r = http.request(method, path, json=body, headers=steward)
    assert r.status_code == 403, r.text
    assert [a.outcome for a in _audit(platform, action)] == ["denied"]
    anonymous = http.request(method, path, json=body)
    assert anonymous.status_code == 401


def test_a_signed_in_administrator_uses_the_api_with_the_csrf_token(platform: Platform) -> None:
    with platform.factory.begin() as s:
        admin = make_user(s, roles=["admin"])
        org = make_org(s).code
    # An address of its own: the sign-in throttle of this process counts per address.
    http = TestClient(create_app(platform), client=("10.92.1.9", 5000))
    page = http.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    http.post("/login", data={"username": admin.username, "password": PASSWORD, "csrf": csrf[1]})
    body = {"name": "会话接口", "organization": org, "scopes": ["org.read"]}
    assert http.post("/api/v1/clients", json=body).status_code == 403  # no CSRF proof
    token = re.search(r'name="csrf" value="([^"]+)"', http.get("/").text)
    assert token
    created = http.post("/api/v1/clients", json=body, headers={"X-CSRF-Token": token[1]})
    assert created.status_code == 201, created.text
