"""The administration console's pages: organisations, accounts, API clients; admins only."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from minyun.accounts.models import ApiClient, User
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.core.security import verify_password
from minyun.orgs.models import Organization
from minyun.web.app import create_app
from tests import factories

_addresses = itertools.count(1)


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


def browser(app: FastAPI) -> TestClient:
    """A browser-like client with an address of its own (the login throttle counts per address)."""
    n = next(_addresses)
    return TestClient(
        app,
        headers={"Accept": "text/html,application/xhtml+xml"},
        client=(f"10.78.{n // 250}.{n % 250 + 1}", 50000),
        follow_redirects=False,
    )


def csrf_of(page: Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page has no CSRF field"
    return found.group(1)


def signed_in(platform: Platform, app: FastAPI, *roles: str) -> tuple[TestClient, User]:
    with platform.factory.begin() as s:
        user = factories.make_user(s, roles=list(roles))
    client = browser(app)
    token = csrf_of(client.get("/login"))
    r = client.post(
        "/login", data={"username": user.username, "password": factories.PASSWORD, "csrf": token}
    )
    assert r.status_code == 303
    return client, user


@pytest.fixture
def admin(platform: Platform, app: FastAPI) -> Iterator[TestClient]:
    client, _user = signed_in(platform, app, "admin")
    yield client


def post_form(client: TestClient, path: str, **data: Any) -> Response:
    """Post a form the way the page's own form would: with the session's CSRF token."""
    token = csrf_of(client.get("/admin"))
    return client.post(path, data={"csrf": token, **data})


def field_errors(page: Response) -> dict[str, str]:
    return dict(re.findall(r'id="f-([a-z_]+)-error">([^<]*)<', page.text))


def records(platform: Platform, action: str) -> list[AuditRecord]:
    with platform.factory() as s:
        query = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        return list(s.scalars(query))


def count(platform: Platform, model: type[Organization] | type[ApiClient]) -> int:
    with platform.factory() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# --- who may use the console --------------------------------------------------------------

PAGES = ["/admin", "/admin/orgs", "/admin/orgs/new", "/admin/users", "/admin/users/new",
         "/admin/users/1", "/admin/users/1/disable", "/admin/clients", "/admin/clients/new"]  # fmt: skip


@pytest.mark.parametrize("role", ["steward", "auditor", "approver"])
def test_others_are_refused_every_console_page_and_the_refusal_is_audited(
    platform: Platform, app: FastAPI, role: str
) -> None:
    client, user = signed_in(platform, app, role)
    home = client.get("/")
    assert 'href="/admin"' not in home.text  # not offered in the navigation
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 403, path
        assert "禁止访问" in r.text or "403" in r.text
    with platform.factory() as s:
        denied = s.scalars(
            select(AuditRecord).where(
                AuditRecord.actor == f"user:{user.username}", AuditRecord.outcome == "denied"
            )
        ).all()
    assert len(denied) == len(PAGES)
    assert {d.action for d in denied} <= {"org.manage", "user.manage", "client.manage"}
    refused = post_form(client, "/admin/orgs/new", code="x-1", name="x", uscc="x",
                        division_code="350100")  # fmt: skip
    assert refused.status_code == 403


def test_anonymous_visitors_are_asked_to_sign_in(app: FastAPI) -> None:
    r = browser(app).get("/admin/users")
    assert r.status_code == 401 and "/login?next=" in r.text


def test_the_console_is_in_chinese_and_linked_from_the_navigation(
    admin: TestClient, platform: Platform
) -> None:
    home = admin.get("/")
    assert '<a href="/admin">系统管理</a>' in home.text
    page = admin.get("/admin")
    assert page.status_code == 200
    for text in ("系统管理", "单位目录", "账号", "接口客户端", "登记单位", "新建账号"):
        assert text in page.text


# --- organisations -------------------------------------------------------------------------


def test_a_bad_credit_code_keeps_the_input_and_shows_the_reason_by_the_field(
    admin: TestClient, platform: Platform
) -> None:
    before, audited = count(platform, Organization), len(records(platform, "org.create"))
    uscc = factories.make_uscc(7101)
    bad = uscc[:-1] + ("0" if uscc[-1] != "0" else "1")
    r = post_form(admin, "/admin/orgs/new", code="fz-new", name="福州市某新局", uscc=bad,
                  division_code="350102", parent="")  # fmt: skip
    assert r.status_code == 422
    assert field_errors(r) == {
        "uscc": "统一社会信用代码无效：应为 18 位，且校验码正确（GB 32100）。"
    }
    assert 'value="福州市某新局"' in r.text and f'value="{bad}"' in r.text
    assert '<option value="350102" selected>' in r.text  # the division picker keeps its choice
    assert count(platform, Organization) == before
    assert len(records(platform, "org.create")) == audited
    ok = post_form(admin, "/admin/orgs/new", code="fz-new", name="福州市某新局", uscc=uscc,
                   division_code="350102", parent="")  # fmt: skip
    assert ok.status_code == 303 and ok.headers["location"] == "/admin/orgs?done=org-created"
    listing = admin.get(ok.headers["location"])
    assert "单位已登记。" in listing.text and "福州市某新局" in listing.text
    assert records(platform, "org.create")[-1].object_id == "fz-new"


@pytest.mark.parametrize(
    ("over", "field", "message"),
    [
        ({"division_code": ""}, "division_code", "请选择福建省内的行政区划。"),
        ({"code": "Has Space"}, "code", "请使用 2–32 位小写字母、数字或连字符，以字母或数字开头。"),
        ({"name": ""}, "name", "请填写名称，不超过 200 个字符。"),
        ({"parent": "nobody"}, "parent", "请选择已登记的单位。"),
    ],
)
def test_each_refusal_is_shown_next_to_its_field(
    admin: TestClient, over: dict[str, str], field: str, message: str
) -> None:
    form = {"code": "fz-form", "name": "某局", "uscc": factories.make_uscc(7102),
            "division_code": "350100", "parent": "", **over}  # fmt: skip
    r = post_form(admin, "/admin/orgs/new", **form)
    assert r.status_code == 422 and field_errors(r) == {field: message}
    assert 'aria-invalid="true"' in r.text


def test_a_taken_code_is_a_conflict_shown_by_the_field(
    admin: TestClient, platform: Platform
) -> None:
    with platform.factory.begin() as s:
        org = factories.make_org(s)
    r = post_form(admin, "/admin/orgs/new", code=org.code, name="重复", uscc=factories.make_uscc(
        7103), division_code="350100")  # fmt: skip
    assert r.status_code == 409 and field_errors(r) == {"code": "该代码已被其他单位使用。"}


def test_an_organisation_is_edited_with_pickers_and_audited(
    admin: TestClient, platform: Platform
) -> None:
    with platform.factory.begin() as s:
        org, parent = factories.make_org(s), factories.make_org(s, division_code="350000")
    page = admin.get(f"/admin/orgs/{org.code}/edit")
    assert page.status_code == 200
    assert f'value="{org.code}"' in page.text and "readonly" in page.text
    assert (
        '<optgroup label="厦门市">' in page.text and f'<option value="{parent.code}">' in page.text
    )
    r = post_form(admin, f"/admin/orgs/{org.code}/edit", name="改过的名称", uscc=org.uscc,
                  division_code="350200", parent=parent.code)  # fmt: skip
    assert r.status_code == 303
    with platform.factory() as s:
        saved = s.scalars(select(Organization).where(Organization.code == org.code)).one()
        assert (saved.name, saved.division_code, saved.parent_id) == (
            "改过的名称",
            "350200",
            parent.id,
        )
    detail = json.loads(records(platform, "org.edit")[-1].detail or "{}")
    assert detail["fields"] == ["division_code", "name", "parent"]
    cycle = post_form(admin, f"/admin/orgs/{parent.code}/edit", name=parent.name,
                      uscc=parent.uscc, division_code="350000", parent=org.code)  # fmt: skip
    assert cycle.status_code == 422 and "parent" in field_errors(cycle)


# --- accounts -------------------------------------------------------------------------------


def test_roles_are_ticked_and_saved(admin: TestClient, platform: Platform) -> None:
    with platform.factory.begin() as s:
        user = factories.make_user(s, roles=["steward"])
    page = admin.get(f"/admin/users/{user.id}")
    assert 'value="steward" checked' in page.text and "数据管理员" in page.text
    r = post_form(admin, f"/admin/users/{user.id}/roles", roles=["approver", "consumer"])
    assert r.status_code == 303 and "done=roles-saved" in r.headers["location"]
    assert "角色已保存。" in admin.get(r.headers["location"]).text
    with platform.factory() as s:
        assert s.get(User, user.id).roles == ["approver", "consumer"]  # type: ignore[union-attr]


def test_disable_asks_first_then_ends_sign_in_and_enable_restores_it(
    admin: TestClient, platform: Platform, app: FastAPI
) -> None:
    victim, user = signed_in(platform, app, "steward")
    assert victim.get("/").status_code == 200 and user.display_name in victim.get("/").text
    confirm = admin.get(f"/admin/users/{user.id}/disable")
    assert confirm.status_code == 200 and "停用此账号？" in confirm.text
    assert f'action="/admin/users/{user.id}/disable"' in confirm.text
    r = post_form(admin, f"/admin/users/{user.id}/disable")
    assert r.status_code == 303
    assert "账号已停用" in admin.get(r.headers["location"]).text
    assert user.display_name not in victim.get("/").text  # its session ended at once
    assert post_form(admin, f"/admin/users/{user.id}/enable").status_code == 303
    assert [len(records(platform, a)) for a in ("user.disable", "user.enable")] == [1, 1]


def test_an_administrator_cannot_disable_themselves(platform: Platform, app: FastAPI) -> None:
    client, me = signed_in(platform, app, "admin")
    r = post_form(client, f"/admin/users/{me.id}/disable")
    assert r.status_code == 409 and "不能停用自己的账号。" in r.text
    with platform.factory() as s:
        assert s.get(User, me.id).active  # type: ignore[union-attr]


def test_a_generated_password_is_shown_once_and_works(
    admin: TestClient, platform: Platform, app: FastAPI
) -> None:
    with platform.factory.begin() as s:
        user = factories.make_user(s)
    r = post_form(admin, f"/admin/users/{user.id}/reset", password="")
    assert r.status_code == 200
    found = re.search(r'id="new-password">([^<]+)<', r.text)
    assert found and "此密码只在此刻显示" in r.text
    with platform.factory() as s:
        assert verify_password(s.get(User, user.id).password_hash, found[1])  # type: ignore[union-attr]
    short = post_form(admin, f"/admin/users/{user.id}/reset", password="short")
    assert short.status_code == 422 and field_errors(short) == {
        "password": "密码至少需要 10 个字符。"
    }
    assert len(records(platform, "user.password-reset")) == 1


def test_a_locked_account_is_shown_and_unlocked(
    admin: TestClient, platform: Platform, app: FastAPI
) -> None:
    with platform.factory.begin() as s:
        user = factories.make_user(s)
    stranger = browser(app)
    for _ in range(platform.settings.login_attempts_per_minute):
        token = csrf_of(stranger.get("/login"))
        stranger.post("/login", data={"username": user.username, "password": "nope", "csrf": token})
    listing = admin.get("/admin/users", params={"q": user.username})
    assert "已锁定" in listing.text
    page = admin.get(f"/admin/users/{user.id}")
    assert "暂时被拒绝登录" in page.text and f'action="/admin/users/{user.id}/unlock"' in page.text
    r = post_form(admin, f"/admin/users/{user.id}/unlock")
    assert r.status_code == 303
    after = admin.get(r.headers["location"])
    assert "账号已解锁" in after.text and "登录未被锁定。" in after.text
    assert records(platform, "user.unlock")[-1].detail == "was locked"


def test_an_account_is_created_with_an_organisation_picker(
    admin: TestClient, platform: Platform
) -> None:
    with platform.factory.begin() as s:
        org = factories.make_org(s)
    form = admin.get("/admin/users/new")
    assert f'<option value="{org.code}">{org.name}</option>' in form.text
    bad = post_form(admin, "/admin/users/new", username="No Good", display_name="林",
                    organization=org.code, roles=["steward"])  # fmt: skip
    assert bad.status_code == 422 and "username" in field_errors(bad)
    assert (
        'value="steward" checked' in bad.text
        and f'<option value="{org.code}" selected>' in bad.text
    )
    r = post_form(admin, "/admin/users/new", username="lin.steward", display_name="林专员",
                  organization=org.code, roles=["steward"])  # fmt: skip
    assert r.status_code == 201 and re.search(r'id="new-password">[^<]{10,}<', r.text)
    taken = post_form(admin, "/admin/users/new", username="lin.steward", display_name="林",
                      organization=org.code)  # fmt: skip
    assert taken.status_code == 409 and field_errors(taken) == {"username": "该用户名已被使用。"}


# --- API clients ---------------------------------------------------------------------------


def test_a_client_is_registered_its_secret_shown_once_then_rotated_and_revoked(
    admin: TestClient, platform: Platform, app: FastAPI
) -> None:
    with platform.factory.begin() as s:
        org = factories.make_org(s)
    form = admin.get("/admin/clients/new")
    assert "读取本单位资源的数据" in form.text and f'<option value="{org.code}">' in form.text
    none = post_form(admin, "/admin/clients/new", name="审批系统", organization=org.code)
    assert none.status_code == 422 and field_errors(none) == {"scopes": "请至少选择一项权限范围。"}
    assert 'value="审批系统"' in none.text and count(platform, ApiClient) == 0
    r = post_form(admin, "/admin/clients/new", name="审批系统", organization=org.code,
                  scopes=["org.read"])  # fmt: skip
    assert r.status_code == 201
    cid = re.search(r'id="client-id">([^<]+)<', r.text)
    secret = re.search(r'id="client-secret">([^<]+)<', r.text)
    assert cid and secret and "密钥只在此刻显示" in r.text
    detail = admin.get(f"/admin/clients/{cid[1]}")
    assert detail.status_code == 200 and secret[1] not in detail.text
    assert secret[1] not in admin.get("/admin/clients").text
    api = TestClient(app)

    def token(s: str) -> int:
        return api.post(
            "/api/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid[1], s)
        ).status_code

    assert token(secret[1]) == 200
    ask = admin.get(f"/admin/clients/{cid[1]}/rotate")
    assert "为此客户端签发新密钥？" in ask.text
    rotated = post_form(admin, f"/admin/clients/{cid[1]}/rotate")
    new_secret = re.search(r'id="client-secret">([^<]+)<', rotated.text)
    assert rotated.status_code == 200 and new_secret and new_secret[1] != secret[1]
    assert token(secret[1]) == 401 and token(new_secret[1]) == 200
    ask = admin.get(f"/admin/clients/{cid[1]}/revoke")
    assert "吊销此客户端？" in ask.text and "button danger" in ask.text
    revoked = post_form(admin, f"/admin/clients/{cid[1]}/revoke")
    assert revoked.status_code == 303
    after = admin.get(revoked.headers["location"])
    assert "客户端已吊销" in after.text and "已吊销" in after.text
    assert token(new_secret[1]) == 401
    actions = [
        len(records(platform, a)) for a in ("client.create", "client.rotate", "client.revoke")
    ]
    assert actions == [1, 1, 1]


def test_pages_escape_what_was_typed(admin: TestClient) -> None:
    r = post_form(admin, "/admin/orgs/new", code="x", name="<script>alert(1)</script>",
                  uscc="bad", division_code="350100")  # fmt: skip
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;" in r.text
