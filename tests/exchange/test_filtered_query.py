"""The filtered query service over a grant: filters in the query language only (SQL fragments
refused with a clear error, nothing read), never outside the grant's rows or clear fields."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.exchange.test_grant_access import grant, rows, setup

ATTACKS = [
    "id = 1; DROP TABLE grants",
    "id = 1 or 1=1 --",
    "id = 1 /* */ or true",
    "id in (select id from serving_rows)",
    "city = '福州' union select * from users",
    "read_parquet('/etc/passwd') is not null",
    "id = 1) or (1 = 1",
    "lower(city) = 'x'",
    '"id" = 1 or "x""',
]


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def test_sql_fragments_in_a_filter_are_refused(platform: Platform, client: TestClient) -> None:
    s = setup(platform, client)
    grant(platform, s, ["id", "city", "age"], row_filter="id <= 20")
    for attack in ATTACKS:
        answer = rows(client, s.bearer, filter=attack)
        assert answer.status_code == 422, (attack, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert "rows" not in answer.json()
    with platform.factory() as session:
        reads = session.scalars(
            select(AuditRecord).where(
                AuditRecord.action == "resource.read", AuditRecord.outcome == "success"
            )
        ).all()
    assert reads == []  # nothing was read


def test_a_valid_filter_stays_inside_the_grant(platform: Platform, client: TestClient) -> None:
    s = setup(platform, client)
    grant(platform, s, ["id", "city", "age"], row_filter="id <= 20")
    page = rows(client, s.bearer, filter="id >= 15 or age >= 0", sort="-id").json()["rows"]
    assert page and all(r["id"] <= 20 for r in page) and page[0]["id"] == 20
    assert {tuple(sorted(r)) for r in page} == {("age", "city", "id")}
    # A field outside the grant cannot be filtered on (it is unknown to this reader).
    assert rows(client, s.bearer, filter="score > 1").status_code == 422
