"""Per-grant rate limits of online calls: 429 problem+json beyond the limit, audited (a flood
recorded within a budget), the purpose of every call in its audit record; memory windows in
the embedded default, Redis windows shared by every worker in production."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden
from minyun.core.platform import Platform
from minyun.core.policies import AccessPlan
from minyun.core.quotas import GrantQuotas
from minyun.core.security import Principal
from minyun.exchange import service
from minyun.web.app import create_app
from tests.conftest import make_settings
from tests.exchange.kit import person
from tests.exchange.test_grant_access import CODE, Setup, grant, rows, setup

REDIS = "redis://127.0.0.1:6379"


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def limit(platform: Platform, s: Setup, grant_id: int, per_minute: int | None) -> None:
    with platform.factory.begin() as session:
        service.set_rate_limit(
            session, person(s.provider_id, "approver"), grant_id, rate_limit=per_minute
        )


def reads(platform: Platform, outcome: str) -> list[AuditRecord]:
    with platform.factory() as session:
        return list(
            session.scalars(
                select(AuditRecord)
                .where(AuditRecord.action == "resource.read", AuditRecord.outcome == outcome)
                .order_by(AuditRecord.seq)
            )
        )


def test_a_flood_beyond_the_grants_limit_is_refused_and_audited(
    platform: Platform, client: TestClient
) -> None:
    s = setup(platform, client)
    grant_id = grant(platform, s, ["id", "city"])
    url = f"/api/v1/resources/{CODE}/rows/7"
    assert client.get(url, headers=s.bearer).status_code == 200  # no limit yet: cached plan
    limit(platform, s, grant_id, 3)
    answers = [client.get(url, headers=s.bearer, params={"purpose": "核验"}) for _ in range(20)]
    assert [a.status_code for a in answers[:3]] == [200] * 3
    refused = answers[3]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/rate-limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert {a.status_code for a in answers[3:]} == {429}
    assert "row" not in refused.json()
    # Ten refusals recorded one by one, the eleventh says the rest are counted; nothing else.
    denied = reads(platform, "denied")
    assert len(denied) == 11
    assert all(f"grant={grant_id}" in (d.detail or "") for d in denied)
    assert all(d.purpose == "核验" for d in denied)
    assert "counted" in (denied[-1].detail or "")
    # The row query over the same grant shares its window.
    assert rows(client, s.bearer).status_code == 429
    # Lifting the limit opens the next call.
    limit(platform, s, grant_id, None)
    assert client.get(url, headers=s.bearer).status_code == 200


def test_a_row_filtered_grants_limit_holds_on_the_lake_path(
    platform: Platform, client: TestClient
) -> None:
    s = setup(platform, client)
    grant_id = grant(platform, s, ["id", "city"], row_filter="id <= 10")
    limit(platform, s, grant_id, 2)
    url = f"/api/v1/resources/{CODE}/rows/5"
    codes = [client.get(url, headers=s.bearer).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert rows(client, s.bearer).json()["type"] == "/problems/rate-limited"


def test_every_call_carries_a_purpose_into_its_audit_record(
    platform: Platform, client: TestClient
) -> None:
    s = setup(platform, client)
    grant(platform, s, ["id", "city"])
    url = f"/api/v1/resources/{CODE}/rows/7"
    assert client.get(url, headers=s.bearer).status_code == 200
    assert client.get(url, headers=s.bearer, params={"purpose": "低保复核"}).status_code == 200
    assert rows(client, s.bearer).status_code == 200
    purposes = [r.purpose for r in reads(platform, "success")]
    # A call naming none is recorded with the grant's purpose.
    assert purposes == ["核验身份", "低保复核", "核验身份"]


def test_only_the_providers_approvers_set_a_limit(platform: Platform, client: TestClient) -> None:
    s = setup(platform, client)
    grant_id = grant(platform, s, ["id", "city"])
    with platform.factory() as session, pytest.raises(Forbidden, match="approvers"):
        service.set_rate_limit(session, person(s.consumer_id, "approver"), grant_id, rate_limit=5)
    answer = client.post(f"/api/v1/grants/{grant_id}/rate-limit", json={"rate_limit": 0})
    assert answer.status_code in (401, 422)


def test_redis_windows_are_shared_by_every_worker() -> None:
    """Two processes' quotas (two GrantQuotas on one Redis) count one window."""
    namespace = f"test-{uuid.uuid4().hex}"
    first, second = GrantQuotas(REDIS, namespace=namespace), GrantQuotas(REDIS, namespace=namespace)
    assert not first.local
    plan = _plan(per_minute=4)
    try:
        outcomes = [(first if i % 2 else second).hit(plan) for i in range(6)]
        assert [o is None for o in outcomes] == [True] * 4 + [False] * 2
        refusal = outcomes[4]
        assert refusal is not None and refusal.record and refusal.error.code == "rate-limited"
        # Another grant has its own window.
        assert first.hit(_plan(per_minute=4, quota="grant:2")) is None
    finally:
        keys = redis.Redis.from_url(REDIS).keys(f"*{namespace}*")
        if keys:
            redis.Redis.from_url(REDIS).delete(*keys)


def _plan(*, per_minute: int, quota: str = "grant:1") -> AccessPlan:
    from minyun.core.policies import DataResource

    resource = DataResource(1, "r", 1, "published", "conditional", "none", ())
    return AccessPlan(
        action="resource.read", actor=Principal(kind="client", name="c"), resource=resource,
        policy="grant", clearance="internal", fields=(), rate_limit=per_minute, quota=quota,
        reason=f"grant={quota}",
    )  # fmt: skip


def test_a_production_node_counts_in_redis(tmp_path: Path) -> None:
    """Through the app: the node's windows live in Redis (another worker would see them)."""
    node = Platform.open(make_settings(tmp_path / "var", rate_limit_uri=REDIS,
                                       node_name=f"test-{uuid.uuid4().hex[:8]}"))  # fmt: skip
    node.migrate()
    try:
        with TestClient(create_app(node)) as client:
            s = setup(node, client)
            grant_id = grant(node, s, ["id", "city"])
            limit(node, s, grant_id, 2)
            url = f"/api/v1/resources/{CODE}/rows/7"
            codes = [client.get(url, headers=s.bearer).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
        keys = redis.Redis.from_url(REDIS).keys(f"*{node.settings.node_name}*")
        assert keys  # the window is in Redis, under this node's name
        redis.Redis.from_url(REDIS).delete(*keys)
    finally:
        node.close()
