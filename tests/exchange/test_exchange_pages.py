"""The sharing pages in Chinese: marketplace, application form, inbox, my grants; on SQLite."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.core.platform import Platform
from minyun.exchange.models import Application, Grant
from minyun.web.app import create_app
from tests import factories
from tests.exchange.kit import parties
from tests.query.test_query_api import signed_in


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def _setup(platform: Platform) -> tuple[str, int, int]:
    with platform.factory.begin() as session:
        p = parties(session)
        return p.resource.code, p.consumer_id, p.provider_id


def test_apply_in_the_marketplace_keeps_input_on_errors(platform: Platform) -> None:
    code, consumer_id, _ = _setup(platform)
    app = create_app(platform)
    consumer = signed_in(app, platform, ["consumer"], consumer_id)
    market = consumer.get("/sharing")
    assert market.status_code == 200 and "共享目录" in market.text
    assert f'href="/sharing/{code}/apply"' in market.text
    form = consumer.get(f"/sharing/{code}/apply")
    assert form.status_code == 200
    assert all(f'name="fields" value="{n}"' in form.text for n in ("ric", "name", "age"))
    url = f"/sharing/{code}/apply"
    data = {"csrf": _csrf(form.text), "purpose": "", "legal_basis": "《条例》第九条",
            "row_filter": "age >", "expires_on": "2027-01-01"}  # fmt: skip
    refused = consumer.post(url, data=data)
    assert refused.status_code == 422
    assert 'id="purpose-error"' in refused.text and "此项必填。" in refused.text
    assert "《条例》第九条" in refused.text  # what was typed is kept
    data["purpose"] = "核验申请人身份"
    again = consumer.post(url, data=data)
    assert "请至少选择一个字段。" in again.text and 'id="fields-error"' in again.text
    data["fields"] = ["age", "name"]  # type: ignore[assignment]
    bad_filter = consumer.post(url, data=data)
    assert bad_filter.status_code == 422 and 'id="row_filter-error"' in bad_filter.text
    assert 'value="age" checked' in bad_filter.text and 'value="ric" checked' not in bad_filter.text
    data["row_filter"] = "age >= 18"
    data["expires_on"] = "2000-01-01"
    past = consumer.post(url, data=data)
    assert "截止日期必须晚于今天。" in past.text
    data["expires_on"] = "2027-06-30"
    done = consumer.post(url, data=data)
    assert done.status_code == 303 and done.headers["location"].startswith("/sharing/mine?")
    mine = consumer.get(done.headers["location"])
    assert "您的申请已提交给提供部门的审批人。" in mine.text and "待审批" in mine.text
    # A form post without its CSRF token is refused.
    assert consumer.post(url, data={**data, "csrf": "forged"}).status_code == 403
    with platform.factory() as session:
        assert len(session.scalars(select(Application)).all()) == 1  # refused ones left nothing


def test_approver_approves_fewer_fields_and_revokes(platform: Platform) -> None:
    code, consumer_id, provider_id = _setup(platform)
    app = create_app(platform)
    consumer = signed_in(app, platform, ["consumer"], consumer_id)
    form = consumer.get(f"/sharing/{code}/apply")
    consumer.post(
        f"/sharing/{code}/apply",
        data={"csrf": _csrf(form.text), "fields": ["ric", "age"], "purpose": "办理业务",
              "legal_basis": "《条例》", "expires_on": "2027-06-30"},
    )  # fmt: skip
    approver = signed_in(app, platform, ["approver"], provider_id)
    home = approver.get("/").text
    assert 'href="/sharing/inbox"' in home
    inbox = approver.get("/sharing/inbox")
    assert inbox.status_code == 200 and "办理业务" in inbox.text
    assert 'value="ric" checked' in inbox.text and 'value="age" checked' in inbox.text
    with platform.factory() as session:
        application_id = session.scalars(select(Application.id)).one()
    token = _csrf(inbox.text)
    empty = approver.post(
        f"/sharing/applications/{application_id}/reject", data={"csrf": token, "reason": ""}
    )
    assert empty.status_code == 422 and f'id="reason-error-{application_id}"' in empty.text
    wider = approver.post(
        f"/sharing/applications/{application_id}/approve",
        data={"csrf": token, "fields": ["age", "name"], "clearance": "internal"},
    )
    assert wider.status_code == 422 and "授权不能超出申请的范围" in wider.text
    ok = approver.post(
        f"/sharing/applications/{application_id}/approve",
        data={"csrf": token, "fields": ["age"], "row_filter": "age < 60", "clearance": "internal"},
    )
    assert ok.status_code == 303
    assert "暂无待审批的申请。" in approver.get("/sharing/inbox").text
    held = consumer.get("/sharing/mine").text
    assert (
        "<code>age</code>" in held
        and "<code>ric</code>" not in held.split('id="held"')[1].split("</section>")[0]
    )
    given = approver.get("/sharing/mine").text
    with platform.factory() as session:
        grant_id = session.scalars(select(Grant.id)).one()
    assert f'action="/sharing/grants/{grant_id}/revoke"' in given
    no_reason = approver.post(
        f"/sharing/grants/{grant_id}/revoke", data={"csrf": _csrf(given), "reason": " "}
    )
    assert no_reason.status_code == 422 and f'id="revoke-error-{grant_id}"' in no_reason.text
    revoked = approver.post(
        f"/sharing/grants/{grant_id}/revoke", data={"csrf": _csrf(given), "reason": "项目结束"}
    )
    assert revoked.status_code == 303
    after = consumer.get("/sharing/mine").text
    assert 'class="badge state-revoked">已撤销' in after and "项目结束" in after
    # The consumer cannot reach another's decision: the audited error page.
    refused = consumer.post(
        f"/sharing/applications/{application_id}/approve", data={"csrf": _csrf(held)}
    )
    assert refused.status_code in (403, 409)


def test_outsiders_see_no_other_departments_applications(platform: Platform) -> None:
    code, consumer_id, _ = _setup(platform)
    app = create_app(platform)
    with platform.factory.begin() as session:
        other = factories.make_org(session).id
    consumer = signed_in(app, platform, ["consumer"], consumer_id)
    form = consumer.get(f"/sharing/{code}/apply")
    consumer.post(
        f"/sharing/{code}/apply",
        data={"csrf": _csrf(form.text), "fields": ["age"], "purpose": "机密用途XYZ",
              "legal_basis": "《条例》", "expires_on": "2027-06-30"},
    )  # fmt: skip
    stranger = signed_in(app, platform, ["approver", "consumer"], other)
    for url in ("/sharing/inbox", "/sharing/mine", "/sharing"):
        page = stranger.get(url)
        assert page.status_code == 200 and "机密用途XYZ" not in page.text
    anonymous = TestClient(app, follow_redirects=False)
    assert anonymous.get("/sharing").status_code in (302, 303, 401)
