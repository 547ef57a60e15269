"""The HTTP face of accounts: token endpoint, bearer tokens, problem+json, audited refusals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.accounts import service
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.core.security import issue_token
from minyun.web.app import create_app
from tests.factories import SYSTEM, make_org, make_user


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as c:
        yield c


@pytest.fixture
def api_client(platform: Platform) -> tuple[str, str]:
    with platform.factory.begin() as s:
        org = make_org(s)
        new = service.create_client(
            s, SYSTEM, organization_id=org.id, name="接口", scopes=["org.read"]
        )
        return new.client.client_id, new.secret


def _audit(platform: Platform, action: str) -> list[AuditRecord]:
    with platform.factory() as s:
        return list(s.scalars(select(AuditRecord).where(AuditRecord.action == action)))


def test_token_endpoint_and_bearer_use(client: TestClient, api_client: tuple[str, str]) -> None:
    cid, secret = api_client
    r = client.post(
        "/api/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["token_type"] == "Bearer" and body["scope"] == "org.read" and body["expires_in"] == 900
    )
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert (
        me.status_code == 200 and me.json()["name"] == cid and me.json()["scopes"] == ["org.read"]
    )


def test_wrong_client_secret_is_a_problem_and_audited(
    client: TestClient, api_client: tuple[str, str], platform: Platform
) -> None:
    cid, _ = api_client
    r = client.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": "x"},
    )
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/invalid-client"
    denied = _audit(platform, "auth.token")
    assert [a.outcome for a in denied] == ["denied"] and denied[0].object_id == cid


@pytest.mark.parametrize("kind", ["forged", "expired", "audience"])
def test_bad_bearer_tokens_are_refused_and_audited(
    client: TestClient, platform: Platform, api_client: tuple[str, str], kind: str
) -> None:
    from minyun.core.keys import load_node_key

    cid, _ = api_client
    key, audience, ttl = platform.node_key, platform.token_audience, timedelta(minutes=5)
    if kind == "forged":
        (platform.settings.var_dir / "attacker").mkdir(exist_ok=True)
        key = load_node_key(platform.settings.var_dir / "attacker")
    if kind == "expired":
        ttl = timedelta(seconds=-60)
    if kind == "audience":
        audience = "https://bank.example/api"
    token = issue_token(
        key,
        issuer=platform.settings.base_url,
        audience=audience,
        subject=f"client:{cid}",
        scopes=["org.read"],
        ttl=ttl,
    )
    r = client.get("/api/v1/organizations", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["type"] == "/problems/unauthenticated"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert [a.outcome for a in _audit(platform, "auth.token-use")] == ["denied"]


def test_request_id_is_echoed(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "req-12345678"})
    assert r.headers["x-request-id"] == "req-12345678"
    assert client.get("/readyz").json()["status"] == "ready"


def test_admin_creates_a_user_over_the_api_and_others_cannot(
    client: TestClient, platform: Platform, api_client: tuple[str, str]
) -> None:
    with platform.factory.begin() as s:
        org_code = make_org(s).code
    cid, secret = api_client
    token = client.post(
        "/api/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)
    ).json()["access_token"]
    body = {
        "username": "new.steward",
        "password": "long enough pass",
        "display_name": "新专员",
        "organization": org_code,
        "roles": ["steward"],
    }
    refused = client.post("/api/v1/users", json=body, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403
    assert [a.outcome for a in _audit(platform, "user.manage")] == ["denied"]
    with platform.factory.begin() as s:
        admin = make_user(s, roles=["admin"])
        admin_client = service.create_client(
            s,
            SYSTEM,
            organization_id=admin.organization_id or 0,
            name="admin",
            scopes=["user.manage"],
        )
    admin_token = client.post(
        "/api/v1/oauth/token", data={"grant_type": "client_credentials"},
        auth=(admin_client.client.client_id, admin_client.secret),
    ).json()["access_token"]  # fmt: skip
    created = client.post(
        "/api/v1/users", json=body, headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == ["steward"]
    invalid = client.post(
        "/api/v1/users",
        json={**body, "username": "x"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "username"


def test_token_endpoint_is_throttled_like_sign_in(
    platform: Platform, api_client: tuple[str, str]
) -> None:
    cid, secret = api_client
    limit = platform.settings.login_attempts_per_minute
    with TestClient(create_app(platform), client=("10.66.0.1", 50000)) as client:
        for _ in range(limit):
            wrong = client.post(
                "/api/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, "x")
            )
            assert wrong.status_code == 401
        # Even the right secret waits now.
        r = client.post(
            "/api/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)
        )
        assert r.status_code == 429 and r.json()["type"] == "/problems/too-many-requests"
        assert int(r.headers["retry-after"]) >= 1
    details = [a.detail for a in _audit(platform, "auth.token")]
    assert details == ["bad credentials"] * limit + ["throttled"]
    with TestClient(create_app(platform), client=("10.66.0.2", 50000)) as other:
        # Per client id too: another address does not reopen this client's window.
        assert (
            other.post(
                "/api/v1/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(cid, secret),
            ).status_code
            == 429
        )


def test_unknown_client_ids_are_throttled_per_address(platform: Platform) -> None:
    limit = platform.settings.login_attempts_per_minute
    with TestClient(create_app(platform), client=("10.66.0.3", 50000)) as client:
        statuses = [
            client.post(
                "/api/v1/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(f"mc_guess{n}", "x"),
            ).status_code
            for n in range(limit + 1)
        ]
    assert statuses == [401] * limit + [429]
