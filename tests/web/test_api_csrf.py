"""Changes through the JSON API with the session cookie must come from this site.

An admin's cookie sent by another site's page (Origin http://evil.example) used to create
accounts and retire resources. Now a cookie-authenticated POST/PUT/PATCH/DELETE needs the
session's CSRF token in X-CSRF-Token or an Origin (else Referer) equal to MINYUN_BASE_URL;
bearer tokens are not sent by browsers on their own and are not affected.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.accounts import service
from minyun.accounts.models import User
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.conftest import PostgresDatabases, make_settings
from tests.factories import SYSTEM, make_org
from tests.web.test_pages import browser, csrf_of, make_user, sign_in

_names = itertools.count(1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    overrides: dict[str, object] = {}
    if request.param == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        overrides["database_url"] = databases.create()
    platform = Platform.open(make_settings(tmp_path / "var", **overrides))
    platform.migrate()
    yield platform
    platform.close()


@pytest.fixture
def app(node: Platform) -> FastAPI:
    return create_app(node)


@pytest.fixture
def admin_browser(node: Platform, app: FastAPI) -> TestClient:
    admin = make_user(node, roles=["admin"])
    client = browser(app)
    sign_in(client, admin.username)
    return client


def new_account(node: Platform) -> dict[str, object]:
    with node.factory.begin() as s:
        org = make_org(s).code
    return {
        "username": f"new.user{next(_names)}",
        "password": "long enough pass",
        "display_name": "新用户",
        "organization": org,
    }


def exists(node: Platform, username: object) -> bool:
    with node.factory() as s:
        return s.scalars(select(User.id).where(User.username == username)).first() is not None


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Referer": "http://evil.example/page"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:8000.evil.example"},
        {"X-CSRF-Token": "guessed"},
        {},
    ],
    ids=["evil-origin", "evil-referer", "null-origin", "lookalike", "wrong-token", "nothing"],
)
def test_a_cookie_change_not_from_this_site_is_refused_and_audited(
    node: Platform, admin_browser: TestClient, headers: dict[str, str]
) -> None:
    body = new_account(node)
    response = admin_browser.post("/api/v1/users", json=body, headers=headers)
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "/problems/csrf"
    assert not exists(node, body["username"])
    with node.factory() as s:
        refused = s.scalars(select(AuditRecord).where(AuditRecord.action == "web.csrf")).one()
    assert refused.outcome == "denied" and refused.object_id == "/api/v1/users"
    assert refused.actor.startswith("user:")


def test_deleting_with_the_cookie_from_another_site_is_refused(
    node: Platform, app: FastAPI, admin_browser: TestClient
) -> None:
    victim = make_user(node)
    signed_in = browser(app)
    sign_in(signed_in, victim.username)
    response = admin_browser.delete(
        f"/api/v1/users/{victim.id}/sessions", headers={"Origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert signed_in.get("/api/v1/me").status_code == 200


@pytest.mark.parametrize("proof", ["token", "origin", "referer"])
def test_a_cookie_change_from_this_site_goes_through(
    node: Platform, admin_browser: TestClient, proof: str
) -> None:
    base = node.settings.base_url
    headers = {
        "token": {"X-CSRF-Token": csrf_of(admin_browser.get("/"))},
        "origin": {"Origin": base},
        "referer": {"Referer": f"{base}/catalog"},
    }[proof]
    body = new_account(node)
    response = admin_browser.post("/api/v1/users", json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert exists(node, body["username"])


def test_reading_with_the_cookie_needs_no_proof(admin_browser: TestClient) -> None:
    response = admin_browser.get("/api/v1/me", headers={"Origin": "http://evil.example"})
    assert response.status_code == 200


def test_bearer_token_changes_need_no_csrf_token(node: Platform, app: FastAPI) -> None:
    with node.factory.begin() as s:
        org = make_org(s)
        new = service.create_client(
            s, SYSTEM, organization_id=org.id, name="账户接口", scopes=["user.manage"]
        )
    with TestClient(app) as client:
        token = client.post(
            "/api/v1/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(new.client.client_id, new.secret),
        ).json()["access_token"]
        body = new_account(node)
        response = client.post(
            "/api/v1/users",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Origin": "http://evil.example"},
        )
    assert response.status_code == 201, response.text
