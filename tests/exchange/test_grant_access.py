"""A grant as a policy of the access plan: a consumer department's client and users read the
granted fields and rows through the row query and the key lookup, nothing else, and not
after revocation or expiry. On SQLite and PostgreSQL, through the real app."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.core import clock
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.exchange import service
from minyun.query.service import refresh_index
from minyun.web.app import create_app
from tests import factories
from tests.exchange.kit import person
from tests.query.data import add_resource, people
from tests.query.test_lookup import _set_masks
from tests.query.test_query_api import signed_in

CODE = "ppl-shared"
MASKS = {"name": ("secret", "name"), "born": ("secret", "date(year)"), "score": ("secret", None)}


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


@dataclass
class Setup:
    provider_id: int
    consumer_id: int
    bearer: dict[str, str]


def setup(node: Platform, client: TestClient) -> Setup:
    """60 people (indexed, sensitive fields masked) of a provider; a consumer's client."""
    with node.factory.begin() as session:
        provider = factories.make_org(session)
        consumer = factories.make_org(session)
        resource = add_resource(
            session, node.lake, provider_id=provider.id, code=CODE,
            versions=[people(60)], primary_key=["id"],
        )  # fmt: skip
        resource.legal_basis = "《条例》"
        _set_masks(session, resource.id, MASKS)
        refresh_index(session, node.lake, CODE)
        ids = (provider.id, consumer.id)
    _, headers = factories.api_client_token(client, node, ids[1], ["resource.read"])
    return Setup(ids[0], ids[1], headers)


def grant(
    node: Platform, s: Setup, fields: list[str], *, row_filter: str | None = None,
    expires_in: timedelta = timedelta(days=30), clearance: str = "internal",
) -> int:  # fmt: skip
    """The consumer applies, the provider's approver approves; the grant's id."""
    with node.factory.begin() as session:
        application = service.apply(
            session, person(s.consumer_id, "consumer"), resource=CODE, purpose="核验身份",
            legal_basis="《条例》第十条", fields=fields, expires_at=clock.now() + expires_in,
        )  # fmt: skip
        made = service.approve_application(
            session, person(s.provider_id, "approver"), application.id,
            row_filter=row_filter, clearance=clearance,
        )  # fmt: skip
        return made.id


def revoke(node: Platform, s: Setup, grant_id: int) -> None:
    with node.factory.begin() as session:
        service.revoke_grant(session, person(s.provider_id, "approver"), grant_id, reason="结束")


def denials(node: Platform) -> list[AuditRecord]:
    with node.factory() as session:
        return list(
            session.scalars(
                select(AuditRecord).where(
                    AuditRecord.action == "resource.read", AuditRecord.outcome == "denied"
                )
            )
        )


def rows(client: TestClient, h: dict[str, str], **params: Any) -> Any:
    return client.get(f"/api/v1/resources/{CODE}/rows", params={"limit": 100, **params}, headers=h)


def test_a_consumer_reads_only_the_granted_fields(
    node: Platform, client: TestClient, app: FastAPI
) -> None:
    s = setup(node, client)
    assert client.get(f"/api/v1/resources/{CODE}/rows/7", headers=s.bearer).status_code == 403
    assert len(denials(node)) == 1
    grant_id = grant(node, s, ["id", "name", "city", "score"])
    one = client.get(f"/api/v1/resources/{CODE}/rows/7", headers=s.bearer)
    assert one.status_code == 200, one.text
    # The read's audit record names the grant it used (index and lake alike).
    assert rows(client, s.bearer, limit=1).status_code == 200
    with node.factory() as session:
        details = session.scalars(
            select(AuditRecord.detail).where(
                AuditRecord.action == "resource.read", AuditRecord.outcome == "success"
            )
        ).all()
    assert len(details) == 2 and all(f"grant={grant_id}" in (d or "") for d in details)
    # Clear up to the grant's clearance, masked above it, dropped without a mask or a grant.
    expected = people(60).slice(6, 1).to_pylist()[0]
    assert one.json()["row"] == {"id": 7, "name": "居*****7", "city": expected["city"]}
    page = rows(client, s.bearer).json()["rows"]
    assert len(page) == 60 and {tuple(sorted(r)) for r in page} == {("city", "id", "name")}
    # A field outside the grant is told apart from no field; a masked one cannot be filtered.
    hidden = rows(client, s.bearer, fields="id,age")
    assert hidden.status_code == 422 and "unknown field" in hidden.json()["detail"]
    assert rows(client, s.bearer, filter="age > 20").status_code == 422
    assert rows(client, s.bearer, filter="name = '居民00007'").status_code == 403
    # A user with a data role of the consumer department reads the same.
    user = signed_in(app, node, ["consumer"], s.consumer_id)
    assert user.get(f"/api/v1/resources/{CODE}/rows/7").json()["row"] == one.json()["row"]
    # A member without a data role does not.
    member = signed_in(app, node, [], s.consumer_id)
    assert member.get(f"/api/v1/resources/{CODE}/rows/7").status_code == 403


def test_rows_outside_the_grants_scope_are_not_served(node: Platform, client: TestClient) -> None:
    s = setup(node, client)
    grant(node, s, ["id", "city"], row_filter="id <= 10")
    page = rows(client, s.bearer).json()["rows"]
    assert [r["id"] for r in page] == list(range(1, 11))
    assert client.get(f"/api/v1/resources/{CODE}/rows/5", headers=s.bearer).status_code == 200
    guessed = client.get(f"/api/v1/resources/{CODE}/rows/20", headers=s.bearer)
    assert guessed.status_code == 404
    assert rows(client, s.bearer, filter="id = 20").json()["rows"] == []
    assert rows(client, s.bearer, filter="id > 5 or id > 0").json()["rows"][-1]["id"] == 10


def test_revocation_is_refused_on_the_very_next_call(node: Platform, client: TestClient) -> None:
    s = setup(node, client)
    grant_id = grant(node, s, ["id", "city"])
    url = f"/api/v1/resources/{CODE}/rows/7"
    for _ in range(2):  # the second lookup comes from the cached plan
        assert client.get(url, headers=s.bearer).status_code == 200
    before = len(denials(node))
    revoke(node, s, grant_id)
    assert client.get(url, headers=s.bearer).status_code == 403
    assert rows(client, s.bearer).status_code == 403
    assert len(denials(node)) == before + 2
    with node.factory() as session:
        actions = set(session.scalars(select(AuditRecord.action)))
    assert {"exchange.apply", "exchange.grant", "exchange.revoke"} <= actions


def test_an_expired_grant_gives_nothing(node: Platform, client: TestClient) -> None:
    s = setup(node, client)
    grant(node, s, ["id", "city"], expires_in=timedelta(seconds=2))
    url = f"/api/v1/resources/{CODE}/rows/7"
    assert client.get(url, headers=s.bearer).status_code == 200  # the plan is cached now
    time.sleep(2.1)
    assert client.get(url, headers=s.bearer).status_code == 403
    assert rows(client, s.bearer).status_code == 403
    assert len(denials(node)) == 2


def test_a_higher_clearance_shows_more_in_clear(node: Platform, client: TestClient) -> None:
    s = setup(node, client)
    grant(node, s, ["id", "name", "score"], clearance="secret")
    row = client.get(f"/api/v1/resources/{CODE}/rows/7", headers=s.bearer).json()["row"]
    assert row["name"] == "居民00007" and "score" in row


def test_a_grants_row_filter_is_applied_to_the_indexed_row(
    node: Platform, client: TestClient
) -> None:
    """Key lookups under a grant with a row filter (nulls and a date among its terms) are
    answered from the serving index, with the same rows and values as the engine's row
    query, and a key outside the filter is answered as no row at all."""
    s = setup(node, client)
    row_filter = "(age is null or age >= 25) and born >= '1970-01-01' and id <= 50"
    grant(node, s, ["id", "city", "age", "name", "born"], row_filter=row_filter)
    by_engine = {r["id"]: r for r in rows(client, s.bearer).json()["rows"]}
    assert 5 < len(by_engine) < 50
    for key in range(1, 61):
        found = client.get(f"/api/v1/resources/{CODE}/rows/{key}", headers=s.bearer)
        if key in by_engine:
            assert found.status_code == 200 and found.json()["row"] == by_engine[key]
        else:
            assert found.status_code == 404, key
    with node.factory() as session:
        details = session.scalars(
            select(AuditRecord.detail).where(
                AuditRecord.action == "resource.read", AuditRecord.outcome == "success",
                AuditRecord.detail.like("%; index"),
            )
        ).all()  # fmt: skip
    assert len(details) == 60 and all("policy=grant" in d for d in details)
