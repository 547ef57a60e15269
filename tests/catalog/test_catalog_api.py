"""The catalog API: status codes and problem+json bodies."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.orgs.models import Organization
from minyun.web.app import create_app
from tests import factories
from tests.factories import make_org, make_user, person_schema

_addresses = itertools.count(1)


def signed_in(platform: Platform, *roles: str, org: Organization | None = None) -> TestClient:
    """A client with a browser session of a new user (the API accepts the session cookie)."""
    with platform.factory.begin() as s:
        user = make_user(s, roles=list(roles), **({"organization": org} if org else {}))
    n = next(_addresses)
    client = TestClient(create_app(platform), client=(f"10.88.0.{n}", 50000))
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    response = client.post(
        "/login",
        data={"username": user.username, "password": factories.PASSWORD, "csrf": token.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    # The browser's own pages call the API from this site: their changes carry its Origin.
    client.headers["Origin"] = platform.settings.base_url
    return client


@pytest.fixture
def org(platform: Platform) -> Organization:
    with platform.factory.begin() as s:
        return make_org(s)


def body(code: str, org: Organization, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "code": code,
        "name": "企业登记信息",
        "provider": org.code,
        "summary": "市场主体登记的基本信息",
        "theme": "market-regulation",
        "sharing_type": "conditional",
        "open_type": "none",
        "legal_basis": "《企业信息公示暂行条例》",
        "schema": person_schema(),
    }
    values.update(over)
    return values


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"/problems/{code}" and problem["status"] == status
    return problem


def test_steward_creates_edits_publishes_and_retires(platform: Platform, org: Organization) -> None:
    client = signed_in(platform, "steward", org=org)
    created = client.post("/api/v1/resources", json=body("amr-reg", org))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft"
    assert created.json()["current_schema_version"] == "1.0"
    assert created.json()["provider"]["code"] == org.code
    patched = client.patch("/api/v1/resources/amr-reg", json={"summary": "新摘要"})
    assert patched.status_code == 200 and patched.json()["summary"] == "新摘要"
    published = client.post("/api/v1/resources/amr-reg/publish", json={"reason": "上线"})
    assert published.status_code == 200 and published.json()["publish_date"]
    found = client.get("/api/v1/resources", params={"q": "企业登记"})
    assert [r["code"] for r in found.json()] == ["amr-reg"]
    assert client.get("/api/v1/resources", params={"theme": "health"}).json() == []
    retired = client.post("/api/v1/resources/amr-reg/retire")
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    with platform.factory() as s:
        actions = list(
            s.scalars(
                select(AuditRecord.action)
                .where(AuditRecord.object_id == "amr-reg")
                .order_by(AuditRecord.seq)
            )
        )
    assert actions == [
        "resource.create",
        "resource.schema",
        "resource.edit",
        "resource.publish",
        "resource.retire",
    ]


def test_missing_legal_basis_is_422_naming_the_field(platform: Platform, org: Organization) -> None:
    client = signed_in(platform, "steward", org=org)
    response = client.post("/api/v1/resources", json=body("no-basis", org, legal_basis=None))
    problem = assert_problem(response, 422, "invalid")
    assert problem["field"] == "legal_basis"
    bad_enum = client.post("/api/v1/resources", json=body("bad-enum", org, sharing_type="maybe"))
    assert_problem(bad_enum, 422, "invalid")


def test_duplicate_is_409_and_other_organisation_is_403(
    platform: Platform, org: Organization
) -> None:
    client = signed_in(platform, "steward", org=org)
    assert client.post("/api/v1/resources", json=body("dup", org)).status_code == 201
    assert_problem(client.post("/api/v1/resources", json=body("dup", org)), 409, "conflict")
    with platform.factory.begin() as s:
        other = make_org(s)
    assert_problem(client.post("/api/v1/resources", json=body("theirs", other)), 403, "forbidden")
    # A colleague without a data role does not even see the draft.
    consumer = signed_in(platform, "consumer", org=org)
    assert_problem(consumer.patch("/api/v1/resources/dup", json={"name": "改名"}), 404, "not-found")


def test_drafts_are_404_for_outsiders_and_anonymous_sees_only_open_data(
    platform: Platform, org: Organization
) -> None:
    owner = signed_in(platform, "steward", org=org)
    owner.post("/api/v1/resources", json=body("secret-draft", org))
    outsider = signed_in(platform, "consumer")
    hidden = assert_problem(outsider.get("/api/v1/resources/secret-draft"), 404, "not-found")
    missing = assert_problem(outsider.get("/api/v1/resources/never-was"), 404, "not-found")
    assert hidden["title"] == missing["title"]
    assert outsider.get("/api/v1/resources").json() == []
    anonymous = TestClient(create_app(platform))
    assert anonymous.get("/api/v1/resources").json() == []
    assert_problem(anonymous.get("/api/v1/resources/secret-draft"), 401, "unauthenticated")


def test_schema_versions_over_the_api(platform: Platform, org: Organization) -> None:
    client = signed_in(platform, "steward", org=org)
    client.post("/api/v1/resources", json=body("versioned", org))
    wider = person_schema()
    wider["fields"].append({"name": "phone", "type": "string", "sensitivity": "sensitive"})
    minor = client.post("/api/v1/resources/versioned/schema", json={"descriptor": wider})
    assert minor.status_code == 201 and minor.json()["version"] == "1.1"
    narrower = person_schema()
    narrower["fields"] = narrower["fields"][:2]
    refused = client.post("/api/v1/resources/versioned/schema", json={"descriptor": narrower})
    problem = assert_problem(refused, 409, "schema-incompatible")
    assert problem["current_version"] == "1.1" and "major" in problem["detail"]
    major = client.post(
        "/api/v1/resources/versioned/schema", json={"descriptor": narrower, "major": True}
    )
    assert major.status_code == 201 and major.json()["version"] == "2.0"
    current = client.get("/api/v1/resources/versioned/schema")
    assert current.json()["version"] == "2.0"
    old = client.get("/api/v1/resources/versioned/schema", params={"version": "1.0"})
    assert len(old.json()["descriptor"]["fields"]) == 3
    bad = client.post(
        "/api/v1/resources/versioned/schema",
        json={"descriptor": {"fields": [{"name": "x", "type": "geopoint"}]}},
    )
    assert_problem(bad, 422, "invalid")


def test_publish_without_schema_is_422(platform: Platform, org: Organization) -> None:
    client = signed_in(platform, "steward", org=org)
    client.post("/api/v1/resources", json=body("bare", org, schema=None))
    problem = assert_problem(client.post("/api/v1/resources/bare/publish"), 422, "invalid")
    assert problem["field"] == "schema"
