"""Applications for conditionally open datasets: apply, approve or reject, then read by key."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from ckanapi import NotAuthorized, RemoteCKAN, ValidationError
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.core import clock
from minyun.core.audit import AuditRecord
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from minyun.core.lake import Lake
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.opendata import applications, developers, service
from minyun.web.app import create_app
from tests import factories
from tests.opendata import kit
from tests.query.test_query_api import signed_in

ANON = Principal.anonymous()
PURPOSE = "研究全省企业登记的地区分布"


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def _conditional(session: Session, lake: Lake) -> tuple[kit.Open, Principal]:
    """A conditional resource with two datasets (all rows, and 福州市's) and its approver."""
    o = kit.open_resource(session, lake, open_type="conditional", sharing_type="conditional")
    public = ["uscc", "name", "city", "established"]
    service.open_dataset(session, o.steward, o.resource.code, name="cond", title="有条件开放的企业名录",
                         fields=public)  # fmt: skip
    service.open_dataset(session, o.steward, o.resource.code, name="cond-fz",
                         title="福州市有条件开放企业", fields=["uscc", "city"],
                         row_filter="city = '福州市'")  # fmt: skip
    approver = accounts.principal_for(
        factories.make_user(session, roles=["approver"], organization_id=o.provider.id)
    )
    return o, approver


def _developer(session: Session) -> Principal:
    return accounts.principal_for(factories.make_user(session, roles=[]))


def test_an_approved_application_opens_its_dataset_only(session: Session, lake: Lake) -> None:
    _o, approver = _conditional(session, lake)
    dev = _developer(session)
    with pytest.raises(Forbidden) as caught:
        service.search_rows(session, lake, dev, "cond")
    assert caught.value.audit is not None and "apply for it" in str(caught.value)
    app = applications.apply(session, dev, "cond", purpose=PURPOSE)
    assert app.status == "submitted" and applications.waiting_count(session, approver) == 1
    with pytest.raises(Forbidden):  # submitted is not approved
        service.search_rows(session, lake, dev, "cond")

    applications.approve(session, approver, app.id, days=30)
    assert app.status == "approved" and app.expires_at is not None
    rows = service.search_rows(session, lake, dev, "cond", limit=5)
    assert rows.total == 30 and rows.table.column_names == ["uscc", "name", "city", "established"]
    assert service.read_plan(session, dev, rows.dataset).policy == "open-application"
    with pytest.raises(Forbidden):  # the other dataset of the resource was not applied for
        service.search_rows(session, lake, dev, "cond-fz")
    with pytest.raises(Forbidden):  # another account's approval is not this one's
        service.search_rows(session, lake, _developer(session), "cond")
    with pytest.raises(Unauthenticated):
        service.search_rows(session, lake, ANON, "cond")


def test_sql_and_downloads_follow_the_approval(session: Session, lake: Lake) -> None:
    _o, approver = _conditional(session, lake)
    dev = _developer(session)
    for sql in ('SELECT count(*) AS n FROM "cond"',
                'SELECT 1 AS x FROM (SELECT uscc FROM "cond") AS s',
                "SELECT * FROM (VALUES (1)) AS v(x) WHERE x IN (SELECT count(*) FROM cond)"):  # fmt: skip
        with pytest.raises(Forbidden):
            service.run_sql(session, lake, dev, sql)
    with pytest.raises(Forbidden):
        service.open_download(session, lake, dev, "cond", fmt="csv")
    app = applications.apply(session, dev, "cond", purpose=PURPOSE)
    applications.approve(session, approver, app.id)
    answer = service.run_sql(session, lake, dev, 'SELECT count(*) AS n FROM "cond"')
    assert answer.table.to_pylist() == [{"n": 30}]
    with pytest.raises(Invalid):  # the aggregated-away and secret fields stay out of reach
        service.run_sql(session, lake, dev, "SELECT rep_ric FROM cond")
    batches = service.open_download(session, lake, dev, "cond", fmt="csv").batches
    assert sum(b.num_rows for b in batches) == 30


def test_rejection_needs_a_reason_and_only_the_publishers_approvers_decide(
    session: Session, lake: Lake
) -> None:
    o, approver = _conditional(session, lake)
    dev = _developer(session)
    app = applications.apply(session, dev, "cond", purpose=PURPOSE)
    with pytest.raises(Conflict):
        applications.apply(session, dev, "cond", purpose=PURPOSE)
    outsider = accounts.principal_for(factories.make_user(session, roles=["approver"]))
    with pytest.raises(NotFound):  # another department's approver does not see it
        applications.approve(session, outsider, app.id)
    with pytest.raises(NotFound):  # nor does another developer
        applications.approve(session, _developer(session), app.id)
    with pytest.raises(Forbidden):  # the publisher's steward is no approver
        applications.approve(session, accounts.principal_for(
            factories.make_user(session, roles=["steward"], organization_id=o.provider.id)), app.id)  # fmt: skip
    with pytest.raises(Invalid):
        applications.reject(session, approver, app.id, reason="  ")
    assert app.status == "submitted"
    applications.reject(session, approver, app.id, reason="用途与数据无关")
    assert (app.status, app.decision_reason) == ("rejected", "用途与数据无关")
    assert applications.mine(session, dev)[0].decision_reason == "用途与数据无关"
    with pytest.raises(Conflict):
        applications.approve(session, approver, app.id)
    with pytest.raises(Forbidden):
        service.search_rows(session, lake, dev, "cond")
    again = applications.apply(session, dev, "cond", purpose="第二次申请：统计分析")
    assert again.status == "submitted"


def test_bad_applications_are_refused(session: Session, lake: Lake) -> None:
    _conditional(session, lake)
    dev = _developer(session)
    with pytest.raises(Unauthenticated):
        applications.apply(session, ANON, "cond", purpose=PURPOSE)
    with pytest.raises(Invalid):
        applications.apply(session, dev, "cond", purpose="短")
    with pytest.raises(NotFound):
        applications.apply(session, dev, "no-such", purpose=PURPOSE)
    assert applications.mine(session, dev) == []


def test_an_unconditional_dataset_needs_no_application(session: Session, lake: Lake) -> None:
    o = kit.open_resource(session, lake)
    service.open_dataset(session, o.steward, o.resource.code, name="ents", title="企业登记信息",
                         fields=["uscc", "city"])  # fmt: skip
    with pytest.raises(Invalid) as caught:
        applications.apply(session, _developer(session), "ents", purpose=PURPOSE)
    assert caught.value.code == "not-conditional"


def test_expired_or_withdrawn_approvals_stop_the_reads(session: Session, lake: Lake) -> None:
    _o, approver = _conditional(session, lake)
    dev = _developer(session)
    app = applications.apply(session, dev, "cond", purpose=PURPOSE)
    applications.approve(session, approver, app.id)
    assert service.search_rows(session, lake, dev, "cond").total == 30
    app.expires_at = clock.now() - timedelta(seconds=1)
    session.flush()
    with pytest.raises(Forbidden):
        service.search_rows(session, lake, dev, "cond")
    fresh = applications.apply(session, dev, "cond", purpose=PURPOSE)  # the old one lapsed
    applications.approve(session, approver, fresh.id)
    assert service.search_rows(session, lake, dev, "cond").total == 30
    applications.withdraw(session, dev, fresh.id)
    with pytest.raises(Forbidden):
        service.search_rows(session, lake, dev, "cond")
    with pytest.raises(Conflict):
        applications.withdraw(session, dev, fresh.id)


@pytest.mark.browser
def test_a_key_reads_a_conditional_dataset_once_approved(platform: Platform, server: str) -> None:
    with platform.factory.begin() as s:
        o, approver = _conditional(s, platform.lake)
        user = factories.make_user(s, roles=[])
        dev = accounts.principal_for(user)
        _key, raw = developers.create_key(s, dev, name="研究脚本")
    ckan = RemoteCKAN(server, apikey=raw)
    assert ckan.action.package_show(id="cond")["name"] == "cond"  # listed to everyone
    refused_calls = [
        lambda: ckan.action.datastore_search(resource_id="cond", limit=2),
        lambda: ckan.action.datastore_search_sql(sql='SELECT count(*) AS n FROM "cond"'),
        lambda: ckan.action.datastore_search_sql(
            sql="SELECT count(*) AS n FROM (SELECT uscc FROM \"cond\" WHERE city = '福州市') AS s"
        ),
    ]
    for call in refused_calls:
        with pytest.raises(NotAuthorized) as caught:
            call()
        assert "apply for it" in str(caught.value)
    r = httpx.post(f"{server}/api/3/action/datastore_search", json={"resource_id": "cond"},
                   headers={"X-CKAN-API-Key": raw})  # fmt: skip
    assert r.status_code == 403 and r.json()["error"]["__type"] == "Authorization Error"
    assert "35010019800101" not in r.text and "91350100MA" not in r.text
    r = httpx.get(f"{server}/opendata/datasets/cond/download.csv", headers={"X-CKAN-API-Key": raw})
    assert r.status_code == 403 and "91350100MA" not in r.text

    with platform.factory.begin() as s:
        denied = s.scalars(select(AuditRecord).where(AuditRecord.actor == dev.label,
                                                     AuditRecord.outcome == "denied")).all()  # fmt: skip
        assert len(denied) >= 3 and all("dataset=cond" in (d.detail or "") for d in denied)
        app = applications.apply(s, dev, "cond", purpose=PURPOSE)
        applications.approve(s, approver, app.id, reason="同意")

    rows = ckan.action.datastore_search(resource_id="cond", limit=2)
    assert rows["total"] == 30 and len(rows["records"]) == 2
    assert {f["id"] for f in rows["fields"]} >= {"uscc", "name"} and "capital" not in str(rows)
    answer = ckan.action.datastore_search_sql(
        sql="SELECT count(*) AS n FROM (SELECT uscc FROM \"cond\" WHERE city = '福州市') AS s"
    )
    assert answer["records"] == [{"n": 10}]
    r = httpx.get(f"{server}/opendata/datasets/cond/download.csv", headers={"X-CKAN-API-Key": raw})
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    assert r.text.count("\n") == 31  # the header and 30 rows
    with pytest.raises(NotAuthorized):  # the sibling dataset still needs its own approval
        ckan.action.datastore_search(resource_id="cond-fz")
    with pytest.raises(ValidationError):  # nothing beyond the release, approved or not
        ckan.action.datastore_search_sql(sql="SELECT capital FROM cond")
    assert RemoteCKAN(server).action.package_show(id="cond")["name"] == "cond"
    with pytest.raises(NotAuthorized):  # anonymous: still refused
        RemoteCKAN(server).action.datastore_search(resource_id="cond")
    with platform.factory.begin() as s:
        reads = s.scalars(select(AuditRecord.detail).where(AuditRecord.actor == dev.label,
                                                           AuditRecord.action == "resource.read",
                                                           AuditRecord.outcome == "success")).all()  # fmt: skip
        assert len(reads) == 3 and all("policy=open-application" in (d or "") for d in reads)
        assert sum(f"key={raw[4:16]}" in (d or "") for d in reads) == 3
    assert o.resource.code


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_apply_and_decide_on_the_pages(platform: Platform) -> None:
    with platform.factory.begin() as s:
        o, _approver = _conditional(s, platform.lake)
        org_id = o.provider.id
    app = create_app(platform)
    dev = signed_in(app, platform, [], None)
    page = dev.get("/opendata/datasets/cond", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'id="od-apply-form"' in page.text
    short = dev.post(
        "/opendata/datasets/cond/apply", data={"csrf": _csrf(page.text), "purpose": "短"}
    )
    assert short.status_code == 422 and 'id="od-purpose-error"' in short.text
    made = dev.post("/opendata/datasets/cond/apply",
                    data={"csrf": _csrf(page.text), "purpose": PURPOSE})  # fmt: skip
    assert made.status_code == 303 and made.headers["location"].startswith("/opendata/developer")
    mine = dev.get("/opendata/developer")
    assert 'id="od-applications"' in mine.text and PURPOSE in mine.text
    assert "state-submitted" in mine.text

    approver = signed_in(app, platform, ["approver"], org_id)
    inbox = approver.get("/opendata/applications")
    found = re.search(r'action="/opendata/applications/(\d+)/reject"', inbox.text)
    assert inbox.status_code == 200 and found is not None and PURPOSE in inbox.text
    number = found.group(1)
    empty = approver.post(f"/opendata/applications/{number}/reject",
                          data={"csrf": _csrf(inbox.text), "reason": ""})  # fmt: skip
    assert empty.status_code == 422 and 'role="alert"' in empty.text
    assert dev.post(f"/opendata/applications/{number}/approve",  # the applicant decides nothing
                    data={"csrf": _csrf(mine.text)}).status_code == 403  # fmt: skip
    done = approver.post(f"/opendata/applications/{number}/approve",
                         data={"csrf": _csrf(inbox.text), "days": "90"})  # fmt: skip
    assert done.status_code == 303
    opened = dev.get("/opendata/datasets/cond", headers={"accept": "text/html"})
    assert 'id="od-preview"' in opened.text and 'id="download-csv"' in opened.text
    csv = dev.get("/opendata/datasets/cond/download.csv")
    assert csv.status_code == 200 and csv.text.count("\n") == 31
    assert TestClient(app).get("/opendata/applications").status_code in (401, 403)


def test_a_key_applies_and_sees_the_decision_over_the_api(platform: Platform) -> None:
    with platform.factory.begin() as s:
        _o, approver = _conditional(s, platform.lake)
        dev = accounts.principal_for(factories.make_user(s, roles=[]))
        _key, raw = developers.create_key(s, dev, name="脚本")
    client = TestClient(create_app(platform))
    key = {"X-CKAN-API-Key": raw}
    made = client.post("/api/v1/open-applications", json={"dataset": "cond", "purpose": PURPOSE},
                       headers=key)  # fmt: skip
    assert made.status_code == 201 and made.json()["status"] == "submitted"
    again = client.post("/api/v1/open-applications", json={"dataset": "cond", "purpose": PURPOSE},
                        headers=key)  # fmt: skip
    assert again.status_code == 409
    anonymous = client.post(
        "/api/v1/open-applications", json={"dataset": "cond", "purpose": PURPOSE}
    )
    assert anonymous.status_code == 401
    with platform.factory.begin() as s:
        applications.reject(s, approver, made.json()["id"], reason="用途不明确")
    mine = client.get("/api/v1/open-applications", headers=key).json()
    assert [(a["dataset"], a["status"], a["decision_reason"]) for a in mine] == [
        ("cond", "rejected", "用途不明确")
    ]
