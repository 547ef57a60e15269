"""GET /api/v1/resources/{code}/rows: access, formats, paging by Link, refusals as problems."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterator

import duckdb
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests import factories
from tests.query.data import add_resource, people

_addresses = itertools.count(1)
CODE = "ppl-api"


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


@pytest.fixture
def org_ids(platform: Platform) -> tuple[int, int]:
    """The provider of CODE (versions: 0 with 120 residents, 1 with 130) and another department."""
    with platform.factory.begin() as session:
        provider, other = factories.make_org(session), factories.make_org(session)
        add_resource(
            session, platform.lake, provider_id=provider.id, code=CODE,
            versions=[people(120), people(130, seed=2)], primary_key=["id"],
        )  # fmt: skip
        return provider.id, other.id


def signed_in(app: FastAPI, platform: Platform, roles: list[str], org_id: int | None) -> TestClient:
    """A browser session of a new user with `roles` in the organisation `org_id`."""
    with platform.factory.begin() as session:
        over: dict[str, object] = {"organization_id": org_id} if org_id else {}
        user = factories.make_user(session, roles=roles, **over)
    n = next(_addresses)
    client = TestClient(
        app, client=(f"10.88.{n // 250}.{n % 250 + 1}", 50000), follow_redirects=False
    )
    form = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    signed = client.post(
        "/login",
        data={"username": user.username, "password": factories.PASSWORD, "csrf": token.group(1)},
    )
    assert signed.status_code == 303, signed.text
    return client


@pytest.fixture
def provider_client(
    app: FastAPI, platform: Platform, org_ids: tuple[int, int]
) -> Iterator[TestClient]:
    with signed_in(app, platform, ["steward"], org_ids[0]) as client:
        yield client


def _audit(platform: Platform, action: str) -> list[AuditRecord]:
    with platform.factory() as session:
        query = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        return list(session.scalars(query))


def test_provider_staff_read_json_with_a_next_link(
    provider_client: TestClient, platform: Platform
) -> None:
    r = provider_client.get(
        f"/api/v1/resources/{CODE}/rows", params={"limit": 5, "purpose": "核对"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 1 and len(body["rows"]) == 5 and body["next_cursor"]
    assert body["rows"][0]["id"] == 1 and re.fullmatch(r"\d{4}-\d\d-\d\d", body["rows"][0]["born"])
    assert r.headers["x-resource-version"] == "1"
    link = re.fullmatch(r'<([^>]+)>; rel="next"', r.headers["link"])
    assert link is not None and "cursor=" in link.group(1) and "limit=5" in link.group(1)
    (read,) = _audit(platform, "resource.read")
    assert read.outcome == "success" and read.record_keys == ["1", "2", "3", "4", "5"]
    assert read.purpose == "核对" and read.actor.startswith("user:")


def _next(response: Response) -> str | None:
    found = re.fullmatch(r'<([^>]+)>; rel="next"', response.headers.get("link", ""))
    return found.group(1) if found else None


def test_following_next_links_returns_every_row_once(provider_client: TestClient) -> None:
    url: str | None = f"/api/v1/resources/{CODE}/rows"
    params: dict[str, str] | None = {
        "limit": "13", "sort": "city,-score", "filter": "age >= 20", "fields": "id,city",
    }  # fmt: skip
    ids: list[int] = []
    while url:
        r = provider_client.get(url, params=params)
        assert r.status_code == 200, r.text
        assert all(set(row) == {"id", "city"} for row in r.json()["rows"])
        ids += [row["id"] for row in r.json()["rows"]]
        url, params = _next(r), None
    con = duckdb.connect()
    con.register("t", people(130, seed=2))
    expected = con.sql(
        "SELECT id FROM t WHERE age >= 20 ORDER BY city NULLS LAST, score DESC, id"
    ).fetchall()
    assert ids == [row[0] for row in expected]


def test_another_departments_steward_is_refused_and_audited(
    app: FastAPI, platform: Platform, org_ids: tuple[int, int]
) -> None:
    with signed_in(app, platform, ["steward"], org_ids[1]) as client:
        r = client.get(f"/api/v1/resources/{CODE}/rows", params={"purpose": "看看"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/forbidden"
    (denied,) = _audit(platform, "resource.read")
    assert denied.outcome == "denied" and denied.object_id == CODE and denied.purpose == "看看"


def test_admin_reads_and_anonymous_must_sign_in(
    app: FastAPI, platform: Platform, org_ids: tuple[int, int]
) -> None:
    with signed_in(app, platform, ["admin"], None) as client:
        r = client.get(f"/api/v1/resources/{CODE}/rows", params={"limit": 1000})
    assert r.status_code == 200 and len(r.json()["rows"]) == 130 and r.json()["next_cursor"] is None
    assert "link" not in r.headers
    with TestClient(app) as anonymous:
        assert anonymous.get(f"/api/v1/resources/{CODE}/rows").status_code == 401


def test_csv_and_parquet_downloads_parse_back(provider_client: TestClient) -> None:
    params = {"fields": "id,name,city", "filter": "id <= 10", "sort": "-id"}
    r = provider_client.get(f"/api/v1/resources/{CODE}/rows", params={**params, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == f'attachment; filename="{CODE}.csv"'
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    assert [int(row["id"]) for row in rows] == list(range(10, 0, -1))
    assert rows[0]["name"] == "居民00010"
    r = provider_client.get(
        f"/api/v1/resources/{CODE}/rows", params={**params, "format": "parquet"}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column_names == ["id", "name", "city"]
    assert table.column("id").to_pylist() == list(range(10, 0, -1))


def test_sql_in_a_filter_is_a_422_naming_the_position(
    provider_client: TestClient, platform: Platform
) -> None:
    r = provider_client.get(
        f"/api/v1/resources/{CODE}/rows", params={"filter": "name = 'a' OR '1'='1'"}
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "/problems/invalid" and body["field"] == "filter"
    assert body["position"] == 15 and "position 15" in body["detail"]
    r = provider_client.get(
        f"/api/v1/resources/{CODE}/rows", params={"filter": "1=1; DROP TABLE x"}
    )
    assert r.status_code == 422 and r.json()["position"] == 4
    assert _audit(platform, "resource.read") == []


def test_time_travel_to_version_zero(provider_client: TestClient) -> None:
    r = provider_client.get(f"/api/v1/resources/{CODE}/rows", params={"version": 0, "limit": 500})
    assert r.status_code == 200 and r.json()["version"] == 0 and len(r.json()["rows"]) == 120
    assert [row["name"] for row in r.json()["rows"]] == people(120)["name"].to_pylist()
    missing = provider_client.get(f"/api/v1/resources/{CODE}/rows", params={"version": 7})
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-found"
    unknown = provider_client.get("/api/v1/resources/no-such/rows")
    assert unknown.status_code == 404
