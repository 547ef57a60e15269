"""A grant's usage for both sides (API and page), and the consumer's lookup page: the record
as the grant shows it, masked fields marked, the lookup audited with its purpose."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.exchange.test_grant_access import CODE, grant, rows, setup
from tests.exchange.test_online_limits import limit
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


def test_both_sides_see_a_grants_calls_rows_and_denials(
    node: Platform, app: FastAPI, client: TestClient
) -> None:
    s = setup(node, client)
    grant_id = grant(node, s, ["id", "name", "city"])
    for key in (1, 2, 3):
        assert (
            client.get(f"/api/v1/resources/{CODE}/rows/{key}", headers=s.bearer).status_code == 200
        )
    assert rows(client, s.bearer, limit=10).status_code == 200  # 10 rows
    assert rows(client, s.bearer, fields="id,age").status_code == 422  # outside the grant
    limit(node, s, grant_id, 1)
    assert client.get(f"/api/v1/resources/{CODE}/rows/4", headers=s.bearer).status_code == 200
    assert client.get(f"/api/v1/resources/{CODE}/rows/5", headers=s.bearer).status_code == 429
    consumer = signed_in(app, node, ["consumer"], s.consumer_id)
    provider = signed_in(app, node, ["approver"], s.provider_id)
    stranger = signed_in(app, node, ["consumer"], None)
    for side in (consumer, provider):
        body = side.get(f"/api/v1/grants/{grant_id}/usage", params={"days": 7}).json()
        assert (body["calls"], body["rows"], body["denials"]) == (5, 14, 2)
        assert len(body["days"]) == 7 and body["days"][-1]["calls"] == 5
    assert stranger.get(f"/api/v1/grants/{grant_id}/usage").status_code == 404
    page = provider.get(f"/sharing/grants/{grant_id}")
    assert page.status_code == 200 and 'id="usage-chart"' in page.text
    assert "<strong>5</strong>" in page.text and "<strong>14</strong>" in page.text
    mine = consumer.get("/sharing/mine").text
    assert f'href="/sharing/grants/{grant_id}"' in mine and f'href="/sharing/lookup/{CODE}"' in mine


def test_the_lookup_page_shows_the_record_as_the_grant_allows(platform: Platform) -> None:
    node, app = platform, create_app(platform)
    client = TestClient(app)
    s = setup(node, client)
    grant(node, s, ["id", "name", "city"])
    user = signed_in(app, node, ["consumer"], s.consumer_id)
    form = user.get(f"/sharing/lookup/{CODE}")
    assert form.status_code == 200 and 'id="key"' in form.text
    page = user.get(f"/sharing/lookup/{CODE}", params={"key": "7", "purpose": "低保复核"})
    assert page.status_code == 200
    assert "居*****7" in page.text and "居民00007" not in page.text
    assert 'id="field-name"' in page.text and "state-masked" in page.text
    assert 'id="field-score"' not in page.text and 'id="field-age"' not in page.text
    missing = user.get(f"/sharing/lookup/{CODE}", params={"key": "999"})
    assert 'id="no-record"' in missing.text
    bad = user.get(f"/sharing/lookup/{CODE}", params={"key": "' or 1=1 --"})
    # Not a key of this resource (its key is a number): said beside the field, nothing read.
    assert bad.status_code == 422 and 'id="key-error"' in bad.text and 'id="record"' not in bad.text
    with node.factory() as session:
        purposes = session.scalars(
            select(AuditRecord.purpose).where(
                AuditRecord.action == "resource.read", AuditRecord.outcome == "success"
            )
        ).all()
    assert purposes[0] == "低保复核" and set(purposes[1:]) == {"核验身份"}
    # A department without a grant is refused, and the refusal is audited.
    other = signed_in(app, node, ["consumer"], None)
    assert other.get(f"/sharing/lookup/{CODE}").status_code in (403, 404)


def test_the_query_page_filters_within_the_grant(platform: Platform) -> None:
    app = create_app(platform)
    s = setup(platform, TestClient(app))
    grant(platform, s, ["id", "name", "city"], row_filter="id <= 10")
    user = signed_in(app, platform, ["consumer"], s.consumer_id)
    page = user.get(f"/sharing/query/{CODE}", params={"filter": "id >= 8", "sort": "-id"})
    assert page.status_code == 200, page.text
    assert page.text.count("<tr>") == 1 + 3  # the head and ids 10, 9, 8
    assert "居*****0" in page.text and "居民00010" not in page.text
    refused = user.get(f"/sharing/query/{CODE}", params={"filter": "id = 1 or 1=1 --"})
    assert refused.status_code == 422 and 'id="filter-error"' in refused.text
    masked = user.get(f"/sharing/query/{CODE}", params={"filter": "name = '居民00001'"})
    assert masked.status_code == 422 and 'id="filter-error"' in masked.text


def test_the_providers_approver_sets_a_rate_limit_on_the_grant_page(platform: Platform) -> None:
    app = create_app(platform)
    s = setup(platform, TestClient(app))
    grant_id = grant(platform, s, ["id", "city"])
    approver = signed_in(app, platform, ["approver"], s.provider_id)
    page = approver.get(f"/sharing/grants/{grant_id}")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None and 'id="limit-form"' in page.text
    url = f"/sharing/grants/{grant_id}/rate-limit"
    bad = approver.post(url, data={"rate_limit": "abc", "csrf": token.group(1)})
    assert bad.status_code == 422 and 'id="rate_limit-error"' in bad.text
    done = approver.post(url, data={"rate_limit": "120", "csrf": token.group(1)})
    assert done.status_code == 303
    assert "每分钟 120 次" in approver.get(f"/sharing/grants/{grant_id}").text
    holder = signed_in(app, platform, ["consumer"], s.consumer_id)
    assert 'id="limit-form"' not in holder.get(f"/sharing/grants/{grant_id}").text
