"""Regression tests for what the governed-access review found (issue 10, "Why").

1. Anyone of the providing organisation read every row: a member without a role, and the
   organisation's API client with only `org.read`.
2. Sensitivity and masks were applied nowhere (covered with every route by test_route_walk,
   test_lookup and the property test; here: the row query of an administrator).
3. Citizens and enterprises saw the internal catalog and the eco-cloud's internal pages;
   anonymous visitors were refused even what is public; lineage linked readers to job
   pages that answer 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from minyun.accounts import service as accounts
from minyun.accounts.models import AccountKind
from minyun.catalog import service as catalog
from minyun.catalog.models import Resource
from minyun.core import audit, identifiers
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.ingest.models import Version
from minyun.web.app import create_app
from tests import factories
from tests.query.data import add_resource, people
from tests.query.test_query_api import signed_in

SYSTEM = Principal.system()
CODE = "ppl-governed"


@pytest.fixture
def app(platform: Platform) -> Iterator[FastAPI]:
    yield create_app(platform)


@pytest.fixture
def provider(platform: Platform) -> int:
    with platform.factory.begin() as session:
        org = factories.make_org(session)
        resource = add_resource(
            session, platform.lake, provider_id=org.id, code=CODE,
            versions=[people(20)], primary_key=["id"],
        )  # fmt: skip
        resource.open_type = "none"
        return org.id


def _token(
    client: TestClient, platform: Platform, org_id: int, scopes: list[str]
) -> dict[str, str]:
    return factories.api_client_token(client, platform, org_id, scopes)[1]


def _denied(platform: Platform) -> list[audit.AuditRecord]:
    with platform.factory() as session:
        return list(
            session.scalars(select(audit.AuditRecord).where(audit.AuditRecord.outcome == "denied"))
        )


def test_a_member_without_a_data_role_reads_no_rows(
    app: FastAPI, platform: Platform, provider: int
) -> None:
    with signed_in(app, platform, [], provider) as member:
        r = member.get(f"/api/v1/resources/{CODE}/rows")
        assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden"
        assert member.get(f"/api/v1/resources/{CODE}/rows/3").status_code == 403
    with signed_in(app, platform, ["approver", "auditor"], provider) as others:
        assert others.get(f"/api/v1/resources/{CODE}/rows").status_code == 403
    assert {r.action for r in _denied(platform)} == {"resource.read"}


def test_the_providers_client_needs_the_read_scope(
    app: FastAPI, platform: Platform, provider: int
) -> None:
    with TestClient(app) as client:
        org_read = _token(client, platform, provider, ["org.read"])
        assert client.get(f"/api/v1/resources/{CODE}/rows", headers=org_read).status_code == 403
        reader = _token(client, platform, provider, ["resource.read"])
        ok = client.get(f"/api/v1/resources/{CODE}/rows", headers=reader)
        assert ok.status_code == 200 and len(ok.json()["rows"]) == 20


def test_an_administrator_reads_masked_above_internal(
    app: FastAPI, platform: Platform, provider: int
) -> None:
    with platform.factory.begin() as session:
        resource = catalog.get_resource(session, CODE)
        schema = catalog.current_schema(session, resource)
        assert schema is not None
        fields = [
            {**f, "sensitivity": "sensitive", "mask": "name"} if f["name"] == "name" else f
            for f in schema.descriptor["fields"]
        ]
        schema.descriptor = {**schema.descriptor, "fields": fields}
    with signed_in(app, platform, ["admin"], None) as admin:
        rows = admin.get(f"/api/v1/resources/{CODE}/rows", params={"limit": 2}).json()["rows"]
    assert [r["name"] for r in rows] == ["居*****1", "居*****2"]


def _citizen(platform: Platform) -> dict[str, Any]:
    n = next(_people)
    ric = identifiers.make_ric("350102", date(1990, 1, 1 + n), n)
    return {
        "username": f"citizen{n}",
        "password": factories.PASSWORD,
        "display_name": "林小闽",
        "kind": AccountKind.CITIZEN,
        "ric": ric,
    }


_people = iter(range(1, 28))


def _browser_of(app: FastAPI, platform: Platform, **user: Any) -> TestClient:
    import re

    with platform.factory.begin() as session:
        accounts.create_user(session, SYSTEM, **user)
    client = TestClient(app, follow_redirects=False)
    form = client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    signed = client.post(
        "/login",
        data={"username": user["username"], "password": user["password"], "csrf": csrf.group(1)},
    )
    assert signed.status_code == 303, signed.text
    return client


def test_citizens_and_visitors_see_the_open_catalog_only(
    app: FastAPI, platform: Platform, provider: int
) -> None:
    with platform.factory.begin() as session:
        org = factories.make_org(session)
        open_one = factories.make_resource(session, provider=org, name="公开的空气质量")
        catalog.publish_resource(session, SYSTEM, open_one.code)
        open_code = open_one.code
    citizen = _browser_of(app, platform, **_citizen(platform))
    anonymous = TestClient(app)
    for who in (citizen, anonymous):
        listed = who.get("/api/v1/resources").json()
        assert [r["code"] for r in listed] == [open_code]
        assert who.get(f"/api/v1/resources/{CODE}").status_code in (401, 404)
        page = who.get("/catalog")
        assert page.status_code == 200 and open_code in page.text and CODE not in page.text
        detail = who.get(f"/catalog/{open_code}")
        assert detail.status_code == 200
        assert 'id="versions"' not in detail.text and 'id="lineage"' not in detail.text
        # Only the public fields of an open resource's schema.
        schema = who.get(f"/api/v1/resources/{open_code}/schema").json()["descriptor"]
        assert all(f.get("sensitivity") == "public" for f in schema["fields"])
        assert who.get(f"/api/v1/resources/{open_code}/versions").status_code in (401, 404)


def test_citizens_do_not_see_the_internal_eco_cloud_and_visitors_see_the_air(
    app: FastAPI, platform: Platform
) -> None:
    citizen = _browser_of(app, platform, **_citizen(platform))
    for path in ("/eco", "/eco/alerts", "/api/v1/eco/stations", "/api/v1/eco/alerts"):
        assert citizen.get(path).status_code == 403, path
    anonymous = TestClient(app)
    assert anonymous.get("/air").status_code == 200
    assert anonymous.get("/api/v1/eco/public/cities").status_code == 200
    assert anonymous.get("/").status_code == 200


def test_lineage_links_to_jobs_only_for_who_may_open_them(
    app: FastAPI, platform: Platform, provider: int
) -> None:
    with platform.factory.begin() as session:
        resource = session.scalars(select(Resource).where(Resource.code == CODE)).one()
        session.execute(
            update(Resource).where(Resource.id == resource.id).values(status="published")
        )
        session.add(
            Version(
                resource_id=resource.id, lake_version=0, state="committed", mode="full",
                source="a.csv", source_kind="csv", sha256="ab" * 32, schema_version="1.0",
                rows_read=20, rows_accepted=20, rows_rejected=0, loaded_by="user:steward",
                job_id="0123456789abcdef0123456789abcdef",
            )
        )  # fmt: skip
    with signed_in(app, platform, ["steward"], provider) as steward:
        page = steward.get(f"/catalog/{CODE}").text
        assert 'href="/jobs/0123456789abcdef' in page
    with signed_in(app, platform, ["consumer"], None) as outsider:
        page = outsider.get(f"/catalog/{CODE}")
        assert page.status_code == 200 and "/jobs/" not in page.text


def test_asking_for_hidden_fields_or_a_forged_cursor_is_refused_and_audited(
    app: FastAPI, platform: Platform, provider: int
) -> None:
    with platform.factory.begin() as session:
        resource = catalog.get_resource(session, CODE)
        schema = catalog.current_schema(session, resource)
        assert schema is not None
        fields = [
            {**f, "sensitivity": "secret", "mask": "name"} if f["name"] == "name" else
            {**f, "sensitivity": "secret"} if f["name"] == "score" else f
            for f in schema.descriptor["fields"]
        ]  # fmt: skip
        schema.descriptor = {**schema.descriptor, "fields": fields}
    url = f"/api/v1/resources/{CODE}/rows"
    with TestClient(app) as client:
        h = _token(client, platform, provider, ["resource.read"])
        cases = [
            ({"filter": "name like '居%'"}, 403, "field-not-clear"),  # masked: filter leaks it
            ({"sort": "-name"}, 403, "field-not-clear"),
            ({"fields": "id,score"}, 422, "invalid"),  # dropped: as if it did not exist
            ({"filter": "score > 5"}, 422, "invalid"),
        ]
        for params, status, kind in cases:
            r = client.get(url, params=params, headers=h)
            assert r.status_code == status and r.json()["type"] == f"/problems/{kind}", (
                params,
                r.text,
            )
            assert "score" not in r.text or kind == "invalid"
        page = client.get(url, params={"limit": 5}, headers=h).json()
        assert page["next_cursor"] and page["rows"][0]["name"] == "居*****1"
        body, _, mac = page["next_cursor"].partition(".")
        forged = client.get(url, params={"limit": 5, "cursor": f"{body}x.{mac}"}, headers=h)
        assert forged.status_code == 422 and forged.json()["type"] == "/problems/invalid"
    denied = [r for r in _denied(platform) if r.action == "resource.read"]
    assert len(denied) == len(cases) + 1
