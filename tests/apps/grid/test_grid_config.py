"""The grid centre's configuration on the web: Open311 keys and routing rules with due times.

Only administrators and the grid centre's stewards change them; every form carries the CSRF
token; a key is shown once; a rule changes where the next report goes.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from minyun.apps.grid import apikeys, service
from minyun.apps.grid.models import ApiKey, GridService, RoutingRule
from minyun.apps.grid.photos import store_for
from minyun.apps.grid.service import NewReport
from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden
from minyun.core.platform import Platform
from minyun.core.security import Role
from minyun.web.app import create_app
from tests import factories
from tests.apps.grid.conftest import DONGJIEKOU, SYSTEM, officer, org
from tests.apps.grid.test_grid_pages import csrf_of, signed_in

SECRET = re.compile(r'id="key-secret">(o311_[^<]+)<')


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    with platform.factory.begin() as session:
        service.load_gulou(session, SYSTEM)
    return create_app(platform)


@pytest.fixture
def people(platform: Platform, app: FastAPI) -> None:
    with platform.factory.begin() as session:
        factories.make_user(session, username="centre-steward", roles=[Role.STEWARD],
                            organization=org(session, "gl-grid-centre"))  # fmt: skip
        factories.make_user(
            session, username="centre-clerk", organization=org(session, "gl-grid-centre")
        )
        factories.make_user(session, username="fire-steward", roles=[Role.STEWARD],
                            organization=org(session, "gl-fire"))  # fmt: skip


def test_the_grid_centre_creates_lists_and_revokes_keys_on_the_web(
    platform: Platform,
    app: FastAPI,
    people: None,
) -> None:
    steward = signed_in(app, "centre-steward")
    page = steward.get("/grid/keys")
    assert page.status_code == 200 and 'id="create-key"' in page.text and "创建密钥" in page.text
    no_csrf = steward.post("/grid/keys", data={"name": "fixmystreet"})
    assert no_csrf.status_code == 403
    made = steward.post("/grid/keys", data={"csrf": csrf_of(page), "name": "fixmystreet",
                                            "rate": "120/minute"})  # fmt: skip
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    found = SECRET.search(made.text)
    assert found, made.text[:2000]
    key = found.group(1)
    again = steward.get("/grid/keys")
    assert key not in again.text and key[:12] in again.text and "120/minute" in again.text
    twice = steward.post("/grid/keys", data={"csrf": csrf_of(again), "name": "fixmystreet"})
    assert twice.status_code == 422 and SECRET.search(twice.text) is None
    bad_rate = steward.post(
        "/grid/keys", data={"csrf": csrf_of(again), "name": "x", "rate": "lots"}
    )
    assert bad_rate.status_code == 422
    with platform.factory() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1
        apikeys.check_key(session, key, storage_uri="memory://")  # the key works
    revoked = steward.post(
        "/grid/keys/revoke", data={"csrf": csrf_of(again), "name": "fixmystreet"}
    )
    assert revoked.status_code == 303
    with platform.factory() as session, pytest.raises(Forbidden):
        apikeys.check_key(session, key, storage_uri="memory://")
    assert "已吊销" in steward.get("/grid/keys").text


def test_others_see_how_to_get_a_key_but_cannot_make_one(
    platform: Platform,
    app: FastAPI,
    people: None,
) -> None:
    for username in ("fire-steward", "centre-clerk"):
        user = signed_in(app, username)
        page = user.get("/grid/keys")
        assert page.status_code == 200 and 'id="create-key"' not in page.text
        refused = user.post("/grid/keys", data={"csrf": csrf_of(page), "name": f"by-{username}"})
        assert refused.status_code == 403
    with platform.factory() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 0
        denied = session.scalars(select(AuditRecord).where(AuditRecord.outcome == "denied")
                                 .where(AuditRecord.object_type == "open311-key")).all()  # fmt: skip
        assert len(denied) == 2


def test_a_rule_and_due_times_changed_on_the_web_route_the_next_report(
    platform: Platform,
    app: FastAPI,
    people: None,
) -> None:
    steward = signed_in(app, "centre-steward")
    page = steward.get("/grid/rules")
    assert page.status_code == 200 and "占用消防通道" in page.text and "添加规则" in page.text
    token = csrf_of(page)
    # 东街街道 (350102004): its garbage goes to housing too, not only the district's urban bureau.
    added = steward.post("/grid/rules", data={"csrf": token, "service_code": "garbage",
                                              "area_code": "350102004", "org_code": "gl-housing"})  # fmt: skip
    assert added.status_code == 303
    dup = steward.post("/grid/rules", data={"csrf": token, "service_code": "garbage",
                                            "area_code": "350102004", "org_code": "gl-housing"})  # fmt: skip
    assert dup.status_code == 422
    bad = steward.post("/grid/services/garbage/times",
                       data={"csrf": token, "arrive_minutes": "0", "close_hours": "24"})  # fmt: skip
    assert bad.status_code == 422 and 'id="service-garbage"' in bad.text
    times = steward.post("/grid/services/garbage/times",
                         data={"csrf": token, "arrive_minutes": "15", "close_hours": "6"})  # fmt: skip
    assert times.status_code == 303
    with platform.factory.begin() as session:
        garbage = session.get(GridService, "garbage")
        assert garbage is not None and (garbage.arrive_minutes, garbage.close_hours) == (15, 6)
        report = service.file_report(session, officer(session, "gl-st-004"),
                                     store_for(platform.settings.lake_uri), NewReport("garbage", "垃圾", *DONGJIEKOU))  # fmt: skip
        [task] = report.tasks  # the street's rule is the most specific: housing only
        assert task.org_id == org(session, "gl-housing").id
        assert task.arrive_by - task.routed_at == timedelta(minutes=15)
        change = session.scalars(select(AuditRecord)
                                 .where(AuditRecord.action == "grid.service.times")).one()  # fmt: skip
        assert json.loads(change.detail or "{}")["before"] == {"arrive_minutes": 60,
                                                               "close_hours": 24.0}  # fmt: skip
        rule_id = session.scalars(select(RoutingRule.id)
                                  .where(RoutingRule.area_code == "350102004")).one()  # fmt: skip
    listed = steward.get("/grid/rules")
    assert "东街街道" in listed.text
    removed = steward.post(f"/grid/rules/{rule_id}/delete", data={"csrf": csrf_of(listed)})
    assert removed.status_code == 303
    with platform.factory() as session:
        assert session.get(RoutingRule, rule_id) is None

    fire = signed_in(app, "fire-steward")
    seen = fire.get("/grid/rules")
    assert seen.status_code == 200 and "添加规则" not in seen.text  # reads, cannot change
    refused = fire.post("/grid/rules", data={"csrf": csrf_of(seen), "service_code": "garbage",
                                             "area_code": "350102", "org_code": "gl-fire"})  # fmt: skip
    assert refused.status_code == 403
