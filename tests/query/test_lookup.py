"""The governed key lookup `GET /api/v1/resources/{code}/rows/{key}`, on SQLite and PostgreSQL.

Token cached, plan cached (and invalidated), row from the serving index, masks, durable audit;
the same answer from the lake when the index cannot give it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from minyun.accounts import service as accounts
from minyun.catalog.models import ResourceSchema
from minyun.core import policies
from minyun.core.audit import AuditRecord
from minyun.core.masks import parse_mask, pseudonym_key
from minyun.core.platform import Platform
from minyun.core.policies import DataResource, Verdict
from minyun.core.security import Principal
from minyun.query.service import refresh_index
from minyun.web.app import create_app
from tests import factories
from tests.query.data import add_resource, people
from tests.query.test_query_api import signed_in

CODE = "ppl-lookup"
SYSTEM = Principal.system()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest) -> Platform:
    return request.getfixturevalue("platform" if request.param == "sqlite" else "pg_platform")


@pytest.fixture
def app(node: Platform) -> Iterator[FastAPI]:
    yield create_app(node)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:  # one event loop for the whole test, as uvicorn has
        yield c


def _setup(node: Platform, *, masks: dict[str, tuple[str, str | None]]) -> int:
    """The resource (200 people, indexed), its fields' sensitivity and mask; its provider id."""
    with node.factory.begin() as session:
        org = factories.make_org(session)
        resource = add_resource(
            session, node.lake, provider_id=org.id, code=CODE,
            versions=[people(200)], primary_key=["id"],
        )  # fmt: skip
        _set_masks(session, resource.id, masks)
        refresh_index(session, node.lake, CODE)
        return org.id


def _set_masks(session: object, resource_id: int, masks: dict[str, tuple[str, str | None]]) -> None:
    schema = session.scalars(  # type: ignore[attr-defined]
        select(ResourceSchema).where(ResourceSchema.resource_id == resource_id)
    ).one()
    fields = []
    for f in schema.descriptor["fields"]:
        sensitivity, mask = masks.get(f["name"], ("internal", None))
        fields.append({**f, "sensitivity": sensitivity, **({"mask": mask} if mask else {})})
    schema.descriptor = {**schema.descriptor, "fields": fields}


def _token(client: TestClient, node: Platform, org_id: int, scopes: list[str]) -> tuple[str, str]:
    client_id, headers = factories.api_client_token(client, node, org_id, scopes)
    return client_id, headers["Authorization"]


def _reads(node: Platform) -> list[AuditRecord]:
    with node.factory() as session:
        return list(
            session.scalars(
                select(AuditRecord)
                .where(AuditRecord.action.in_(["resource.read", "auth.token-use"]))
                .order_by(AuditRecord.seq)
            )
        )


MASKS = {"name": ("secret", "name"), "born": ("secret", "date(year)"), "score": ("secret", None)}


def test_a_client_reads_one_row_masked_and_audited(
    app: FastAPI, client: TestClient, node: Platform
) -> None:
    org_id = _setup(node, masks=MASKS)
    client_id, bearer = _token(client, node, org_id, ["resource.read"])
    r = client.get(f"/api/v1/resources/{CODE}/rows/7", headers={"Authorization": bearer})
    assert r.status_code == 200, r.text
    row = r.json()["row"]
    expected = people(200).slice(6, 1).to_pylist()[0]
    # Clear up to the client's clearance, masked above it, dropped without a mask.
    assert row == {
        "id": 7, "name": "居*****7", "city": expected["city"], "age": expected["age"],
        "born": str(expected["born"].year),
    }  # fmt: skip
    assert "score" not in r.text and r.headers["x-resource-version"] == "0"
    # The same row read through the row query (the lake) is byte-for-byte the same row.
    lake = client.get(
        f"/api/v1/resources/{CODE}/rows",
        params={"filter": "id = 7", "version": 0},
        headers={"Authorization": bearer},
    )
    assert lake.json()["rows"] == [row]
    record = _reads(node)[0]
    assert record.actor == f"client:{client_id}" and record.record_keys == ["7"]
    assert record.outcome == "success" and "policy=provider-client" in (record.detail or "")


def test_missing_key_and_bad_key_and_fields(
    app: FastAPI, client: TestClient, node: Platform
) -> None:
    org_id = _setup(node, masks=MASKS)
    _, bearer = _token(client, node, org_id, ["resource.read"])
    h = {"Authorization": bearer}
    missing = client.get(f"/api/v1/resources/{CODE}/rows/9999", headers=h)
    assert missing.status_code == 404 and missing.json()["type"] == "/problems/not-found"
    assert client.get(f"/api/v1/resources/{CODE}/rows/007", headers=h).status_code in (404, 422)
    only = client.get(f"/api/v1/resources/{CODE}/rows/3", params={"fields": "id,name"}, headers=h)
    assert list(only.json()["row"]) == ["id", "name"]
    hidden = client.get(
        f"/api/v1/resources/{CODE}/rows/3", params={"fields": "id,score"}, headers=h
    )
    assert hidden.status_code == 422 and "score" in hidden.json()["detail"]
    assert "unknown field" in hidden.json()["detail"]  # a dropped field is not told apart
    assert [r.record_count for r in _reads(node)][:1] == [0]


def test_refused_without_the_scope_or_from_another_department(
    app: FastAPI, client: TestClient, node: Platform
) -> None:
    org_id = _setup(node, masks=MASKS)
    with node.factory.begin() as s:
        other = factories.make_org(s).id
    for org, scopes in (
        (org_id, ["org.read"]),
        (org_id, ["resource.load"]),
        (other, ["resource.read"]),
    ):
        _, bearer = _token(client, node, org, scopes)
        r = client.get(f"/api/v1/resources/{CODE}/rows/7", headers={"Authorization": bearer})
        assert r.status_code == 403, r.text
    denied = [r for r in _reads(node) if r.outcome == "denied"]
    assert len(denied) == 3 and all(r.object_id == CODE for r in denied)


def test_forged_token_and_revoked_client_are_refused_at_once(
    app: FastAPI, client: TestClient, node: Platform
) -> None:
    org_id = _setup(node, masks=MASKS)
    client_id, bearer = _token(client, node, org_id, ["resource.read"])
    url = f"/api/v1/resources/{CODE}/rows/7"
    assert client.get(url, headers={"Authorization": bearer}).status_code == 200
    head, body, signature = bearer.removeprefix("Bearer ").split(".")
    forged = f"Bearer {head}.{body[:-2]}{'AA' if body[-2:] != 'AA' else 'BB'}.{signature}"
    assert client.get(url, headers={"Authorization": forged}).status_code == 401
    assert client.get(url, headers={"Authorization": "Basic abc"}).status_code == 401
    with node.factory.begin() as s:
        accounts.revoke_client(s, SYSTEM, client_id)
    # The token is still cached as valid, but its client is read on every call.
    refused = client.get(url, headers={"Authorization": bearer})
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]
    outcomes = [(r.action, r.outcome) for r in _reads(node)]
    assert outcomes.count(("auth.token-use", "denied")) == 3


def test_cached_plans_follow_schema_grant_and_type_changes(
    app: FastAPI, client: TestClient, node: Platform
) -> None:
    org_id = _setup(node, masks=MASKS)
    _, bearer = _token(client, node, org_id, ["resource.read"])
    url = f"/api/v1/resources/{CODE}/rows/7"
    h = {"Authorization": bearer}
    assert client.get(url, headers=h).json()["row"]["name"] == "居*****7"
    # A schema change (the name becomes internal): the next call sees it in clear.
    with node.factory.begin() as s:
        resource_id = s.scalars(select(ResourceSchema.resource_id)).first()
        _set_masks(s, resource_id, {**MASKS, "name": ("internal", None)})
        policies.bump_epoch(s)
    assert client.get(url, headers=h).json()["row"]["name"] == "居民00007"
    # A grant for another department's client: refused before, opened after the grant.
    with node.factory.begin() as s:
        other = factories.make_org(s).id
    _, theirs = _token(client, node, other, ["resource.read"])
    assert client.get(url, headers={"Authorization": theirs}).status_code == 403

    def grant(s: object, actor: Principal, action: str, r: DataResource) -> Verdict | None:
        if actor.organization_id == other and action == policies.READ:
            return Verdict("grant", "internal", fields=frozenset({"id", "city"}))
        return None

    policies.GRANTS.register(grant)
    try:
        with node.factory.begin() as s:
            policies.bump_epoch(s)  # what approving a grant does
        shared = client.get(url, headers={"Authorization": theirs})
        assert shared.status_code == 200 and set(shared.json()["row"]) == {"id", "city"}
    finally:
        policies.GRANTS.checks.remove(grant)
    with node.factory.begin() as s:
        policies.bump_epoch(s)  # the grant expires
    assert client.get(url, headers={"Authorization": theirs}).status_code == 403


def test_pseudonyms_differ_between_departments(
    app: FastAPI, client: TestClient, node: Platform
) -> None:
    org_id = _setup(node, masks={"name": ("secret", "pseudonym")})
    _, bearer = _token(client, node, org_id, ["resource.read"])
    got = client.get(f"/api/v1/resources/{CODE}/rows/7", headers={"Authorization": bearer})
    secret = node.node_key.derive("reader")
    expected = parse_mask("pseudonym").arrow(
        __import__("pyarrow").array(["居民00007"]), key=pseudonym_key(secret, f"org:{org_id}")
    )
    assert got.json()["row"]["name"] == expected[0].as_py()
    again = client.get(f"/api/v1/resources/{CODE}/rows/7", headers={"Authorization": bearer})
    assert again.json()["row"]["name"] == got.json()["row"]["name"]


def test_stale_index_answers_from_the_lake_the_same(
    app: FastAPI, client: TestClient, node: Platform
) -> None:
    org_id = _setup(node, masks=MASKS)
    _, bearer = _token(client, node, org_id, ["resource.read"])
    url = f"/api/v1/resources/{CODE}/rows/7"
    served = client.get(url, headers={"Authorization": bearer})
    from minyun.core.serving import ServingState

    with node.factory.begin() as s:
        s.execute(update(ServingState).values(lake_version=None))
    from_lake = client.get(url, headers={"Authorization": bearer})
    assert from_lake.status_code == 200 and from_lake.json() == served.json()


def test_a_signed_in_steward_reads_the_same_route_in_clear(app: FastAPI, node: Platform) -> None:
    org_id = _setup(node, masks=MASKS)
    with signed_in(app, node, ["steward"], org_id) as browser:
        r = browser.get(f"/api/v1/resources/{CODE}/rows/7")
        assert r.status_code == 200 and r.json()["row"]["name"] == "居民00007"
        assert "score" in r.json()["row"]
    with signed_in(app, node, [], org_id) as member:  # no data role: nothing
        assert member.get(f"/api/v1/resources/{CODE}/rows/7").status_code == 403


def test_the_request_id_and_address_reach_the_lookups_audit_record(
    app: FastAPI, client: TestClient, node: Platform
) -> None:
    org_id = _setup(node, masks=MASKS)
    _, bearer = _token(client, node, org_id, ["resource.read"])
    r = client.get(
        f"/api/v1/resources/{CODE}/rows/9",
        headers={"Authorization": bearer, "X-Request-ID": "lookup-req-0009"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "lookup-req-0009"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"
    refused = client.get(f"/api/v1/resources/{CODE}/rows/9", headers={"Authorization": "Bearer x"})
    assert refused.status_code == 401
    fresh = refused.headers["x-request-id"]
    assert len(fresh) == 32 and fresh != "lookup-req-0009"
    read, denied = _reads(node)
    assert (read.request_id, read.client_ip) == ("lookup-req-0009", "testclient")
    assert (denied.request_id, denied.outcome) == (fresh, "denied")
