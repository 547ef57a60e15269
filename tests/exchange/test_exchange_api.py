"""The sharing API: apply, approve with fewer fields, reject, revoke; problem+json errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from minyun.core import clock
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests import factories
from tests.exchange.test_grant_access import CODE, setup
from tests.query.test_query_api import signed_in


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest) -> Platform:
    return request.getfixturevalue("platform" if request.param == "sqlite" else "pg_platform")


@pytest.fixture
def app(node: Platform) -> FastAPI:
    return create_app(node)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _body(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "resource": CODE, "purpose": "办理社保", "legal_basis": "《社会保险法》",
        "fields": ["id", "city", "name"], "row_filter": "id <= 30",
        "expires_at": (clock.now() + timedelta(days=90)).isoformat(),
    }  # fmt: skip
    body.update(over)
    return body


def test_apply_approve_read_revoke(node: Platform, app: FastAPI, client: TestClient) -> None:
    s = setup(node, client)
    origin = {"Origin": node.settings.base_url}
    consumer = signed_in(app, node, ["consumer"], s.consumer_id)
    approver = signed_in(app, node, ["approver"], s.provider_id)
    made = consumer.post("/api/v1/applications", json=_body(), headers=origin)
    assert made.status_code == 201, made.text
    application = made.json()
    assert application["status"] == "submitted" and application["fields"] == ["id", "name", "city"]
    inbox = approver.get("/api/v1/applications", params={"side": "provider"}).json()
    assert [a["id"] for a in inbox] == [application["id"]]
    assert consumer.get("/api/v1/applications", params={"side": "provider"}).json() == []
    # The consumer cannot approve its own application; the approver approves one field fewer.
    url = f"/api/v1/applications/{application['id']}"
    refused = consumer.post(f"{url}/approve", json={}, headers=origin)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    more = approver.post(f"{url}/approve", json={"fields": ["id", "age"]}, headers=origin)
    assert more.status_code == 422 and more.json()["field"] == "fields"
    grant = approver.post(
        f"{url}/approve", json={"fields": ["id", "city"], "row_filter": "id > 20"}, headers=origin
    )
    assert grant.status_code == 200, grant.text
    assert grant.json()["row_filter"] == "(id <= 30) and (id > 20)"
    assert consumer.get(url).json()["status"] == "approved"
    page = client.get(f"/api/v1/resources/{CODE}/rows", headers=s.bearer).json()["rows"]
    assert [r["id"] for r in page] == list(range(21, 31))
    assert {tuple(sorted(r)) for r in page} == {("city", "id")}
    mine = consumer.get("/api/v1/grants").json()
    assert [g["id"] for g in mine] == [grant.json()["id"]]
    gurl = f"/api/v1/grants/{grant.json()['id']}"
    revoked = approver.post(f"{gurl}/revoke", json={"reason": "不再需要"}, headers=origin)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert client.get(f"/api/v1/resources/{CODE}/rows", headers=s.bearer).status_code == 403
    again = approver.post(f"{gurl}/revoke", json={"reason": "x"}, headers=origin)
    assert again.status_code == 409 and again.json()["type"] == "/problems/revoked"


def test_errors_are_problems(node: Platform, app: FastAPI, client: TestClient) -> None:
    s = setup(node, client)
    origin = {"Origin": node.settings.base_url}
    consumer = signed_in(app, node, ["consumer"], s.consumer_id)
    bad = consumer.post("/api/v1/applications", json=_body(row_filter="id = 'x'"), headers=origin)
    assert bad.status_code == 422 and bad.json()["field"] == "row_filter"
    sql = consumer.post(
        "/api/v1/applications", json=_body(row_filter="1=1; drop table grants"), headers=origin
    )
    assert sql.status_code == 422
    assert consumer.get("/api/v1/applications/99999").status_code == 404
    assert consumer.get("/api/v1/grants/99999").status_code == 404
    made = consumer.post("/api/v1/applications", json=_body(), headers=origin).json()
    # Another department sees neither the application nor that it exists.
    with node.factory.begin() as session:
        other = factories.make_org(session).id
    stranger = signed_in(app, node, ["approver"], other)
    assert stranger.get(f"/api/v1/applications/{made['id']}").status_code == 404
    rejected = stranger.post(
        f"/api/v1/applications/{made['id']}/reject", json={"reason": "x"}, headers=origin
    )
    assert rejected.status_code == 404
    # A client applies with the exchange.apply scope, without it is refused.
    _, bearer = factories.api_client_token(client, node, s.consumer_id, ["resource.read"])
    assert client.post("/api/v1/applications", json=_body(), headers=bearer).status_code == 403
    _, applier = factories.api_client_token(client, node, s.consumer_id, ["exchange.apply"])
    assert client.post("/api/v1/applications", json=_body(), headers=applier).status_code == 201
    withdrawn = consumer.post(f"/api/v1/applications/{made['id']}/withdraw", headers=origin)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
