"""The HTML pages: sign-in, CSRF, redirects, language, role-based pages, jobs, translations."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from minyun.accounts.models import AccountKind, User
from minyun.core import identifiers, jobs
from minyun.core.audit import AuditRecord
from minyun.core.jobs import Job, JobContext
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.web import i18n
from minyun.web.app import create_app
from tests import factories

MINYUN = Path(i18n.__file__).parents[1]
_addresses = itertools.count(1)
_gates: dict[str, threading.Event] = {}


@jobs.handler("test.web-progress")
def _half_then_wait(ctx: JobContext) -> dict[str, Any]:
    """Report half done, then wait until the test lets it finish."""
    ctx.progress(2, 4, "halfway")
    _gates[ctx.params["gate"]].wait(10)
    return {"rows": 4}


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


def browser(app: FastAPI) -> TestClient:
    """A browser-like client with an address of its own (the login throttle counts per address)."""
    n = next(_addresses)
    return TestClient(
        app,
        headers={"Accept": "text/html,application/xhtml+xml"},
        client=(f"10.77.{n // 250}.{n % 250 + 1}", 50000),
        follow_redirects=False,
    )


def make_user(platform: Platform, **over: Any) -> User:
    with platform.factory.begin() as session:
        return factories.make_user(session, **over)


def csrf_of(page: Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(
    client: TestClient, username: str, password: str = factories.PASSWORD, **form: str
) -> Response:
    token = csrf_of(client.get("/login"))
    response: Response = client.post(
        "/login", data={"username": username, "password": password, "csrf": token, **form}
    )
    return response


def audit_records(platform: Platform, action: str) -> list[AuditRecord]:
    with platform.factory() as session:
        query = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        return list(session.scalars(query))


def audit_count(platform: Platform) -> int:
    with platform.factory() as session:
        return int(session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


# --- sign-in and sign-out ---------------------------------------------------------------


def test_login_goes_to_next_and_shows_the_dashboard(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform, roles=["steward"])
    client = browser(app)
    token_before = csrf_of(client.get("/login"))
    response = sign_in(client, user.username, next="/orgs")
    assert response.status_code == 303
    assert response.headers["location"] == "/orgs"
    home = client.get("/")
    assert csrf_of(home) != token_before  # a fresh session after sign-in
    assert home.status_code == 200
    assert user.display_name in home.text
    assert "数据管理员" in home.text  # the steward role, in Chinese by default
    assert 'id="card-jobs"' in home.text
    assert home.headers["cache-control"] == "no-store"


def test_wrong_password_shows_a_message_is_audited_and_changes_nothing(
    platform: Platform, app: FastAPI
) -> None:
    user = make_user(platform, roles=["steward"])
    client = browser(app)
    records_before = audit_count(platform)
    response = sign_in(client, user.username, password="not the password")
    assert response.status_code == 401
    assert "用户名或密码错误" in response.text
    assert f'value="{user.username}"' in response.text  # the form comes back filled in
    denied = audit_records(platform, "auth.login")
    assert [(r.object_id, r.outcome, r.detail) for r in denied] == [
        (user.username, "denied", "bad credentials")
    ]
    assert audit_count(platform) == records_before + 1
    with platform.factory() as session:
        assert session.get(User, user.id).last_login_at is None  # type: ignore[union-attr]
    assert 'id="card-account"' not in client.get("/").text  # still signed out


def test_too_many_attempts_are_throttled_with_a_message(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform)
    client = browser(app)
    for _ in range(platform.settings.login_attempts_per_minute):
        assert sign_in(client, user.username, password="wrong wrong").status_code == 401
    response = sign_in(client, user.username)  # even the right password must wait now
    assert response.status_code == 429
    assert "登录尝试次数过多" in response.text
    assert int(response.headers["retry-after"]) >= 1
    assert audit_records(platform, "auth.login")[-1].detail == "throttled"


def test_login_without_csrf_token_is_refused_and_audited(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform)
    client = browser(app)
    client.get("/login")
    response = client.post(
        "/login", data={"username": user.username, "password": factories.PASSWORD}
    )
    assert response.status_code == 403
    assert "表单已过期或并非来自本站" in response.text
    assert [(r.outcome, r.object_id) for r in audit_records(platform, "web.csrf")] == [
        ("denied", "/login")
    ]
    assert audit_records(platform, "auth.login") == []  # the password was never checked
    assert 'id="card-account"' not in client.get("/").text


def test_logout_needs_csrf_token_and_ends_the_session(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform)
    client = browser(app)
    sign_in(client, user.username)
    refused = client.post("/logout", data={})
    assert refused.status_code == 403
    assert [r.object_id for r in audit_records(platform, "web.csrf")] == ["/logout"]
    home = client.get("/")
    assert 'id="card-account"' in home.text  # still signed in
    response = client.post("/logout", data={"csrf": csrf_of(home)})
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert 'href="/login"' in client.get("/").text
    assert [r.actor for r in audit_records(platform, "auth.logout")] == [f"user:{user.username}"]


OFF_SITE = [
    "https://evil.example",
    "//evil.example/path",
    "/\\evil.example",
    "javascript:alert(1)",
    "https:/evil.example",
]


def test_login_never_redirects_off_site(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform)
    for target in OFF_SITE:
        response = sign_in(browser(app), user.username, next=target)
        assert (response.status_code, response.headers["location"]) == (303, "/"), target
    # An encoded line break stays an (unknown) path on this site, never a second header.
    response = sign_in(browser(app), user.username, next="/%0d%0aLocation: https://evil.example")
    location = response.headers["location"]
    assert location.startswith("/%0d%0a") and "\r" not in location and "\n" not in location


def test_signed_in_visit_to_login_goes_home(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform)
    client = browser(app)
    sign_in(client, user.username)
    response = client.get("/login", params={"next": "https://evil.example"})
    assert (response.status_code, response.headers["location"]) == (303, "/")


# --- layout and language -----------------------------------------------------------------


def test_layout_is_chinese_by_default_and_switches_to_english(app: FastAPI) -> None:
    client = browser(app)
    page = client.get("/")
    assert '<html lang="zh-Hans">' in page.text
    assert "福建省政务数据平台" in page.text
    switched = client.get("/lang/en", headers={"referer": "http://testserver/login?next=/orgs"})
    assert (switched.status_code, switched.headers["location"]) == (303, "/login?next=/orgs")
    page = client.get("/")
    assert '<html lang="en">' in page.text
    assert "Fujian provincial government data platform" in page.text
    assert "Sign in" in page.text
    back = client.get("/lang/zh", headers={"referer": "https://evil.example/"})
    assert back.headers["location"] == "/"
    assert '<html lang="zh-Hans">' in client.get("/").text


def test_unknown_language_is_not_found(app: FastAPI) -> None:
    response = browser(app).get("/lang/xx")
    assert response.status_code == 404
    assert "<html" in response.text


def test_language_choice_survives_sign_in(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform)
    client = browser(app)
    client.get("/lang/en")
    sign_in(client, user.username)
    assert "Welcome, " in client.get("/").text


def test_base_layout_is_made_for_phones(app: FastAPI) -> None:
    page = browser(app).get("/login")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
    assert 'class="nav-toggle"' in page.text  # the menu collapses behind a button
    assert "default-src 'self'" in page.headers["content-security-policy"]
    css = browser(app).get("/static/minyun.css")
    assert css.status_code == 200
    assert "@media (min-width: 760px)" in css.text


def test_pages_load_nothing_from_the_internet(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform, roles=["admin"])
    client = browser(app)
    sign_in(client, user.username)
    for path in ("/", "/orgs", "/audit", "/jobs"):
        html = client.get(path).text
        assert not re.search(r'(src|href)="(https?:)?//', html), path


# --- role-based pages -------------------------------------------------------------------


def test_anonymous_visitor_sees_the_landing_page(app: FastAPI) -> None:
    page = browser(app).get("/")
    assert page.status_code == 200
    assert 'href="/login"' in page.text
    assert 'id="card-account"' not in page.text


def test_dashboard_cards_follow_the_role(platform: Platform, app: FastAPI) -> None:
    cards = {}
    citizen = make_user(
        platform,
        kind=AccountKind.CITIZEN,
        ric=identifiers.make_ric("350102", dt.date(1990, 5, 17), 123),
    )
    people = {
        role: make_user(platform, roles=[role])
        for role in ("steward", "approver", "consumer", "auditor", "admin")
    }
    for role, user in [*people.items(), ("citizen", citizen)]:
        client = browser(app)
        sign_in(client, user.username)
        home = client.get("/").text
        cards[role] = set(re.findall(r'id="card-([a-z]+)"', home))
        if role == "citizen":  # what a citizen does here, each a link
            services = home.split('id="card-services"', 1)[1].split("</article>", 1)[0]
            for href in ("/licences", "/subjects/me", "/grid/report", "/grid/reports", "/opendata"):
                assert f'href="{href}"' in services, href
            assert "尚未上线" not in services
    assert cards["steward"] == {"department", "account", "directory", "jobs"}
    assert cards["approver"] == {"account", "directory", "approvals"}
    assert cards["consumer"] == {"account", "directory", "grants"}
    assert cards["auditor"] == {"account", "directory", "audit"}
    assert cards["admin"] == {"account", "directory", "jobs", "audit"}
    assert cards["citizen"] == {"account", "services", "air"}


def test_auditor_reads_the_audit_log_and_a_steward_is_refused(
    platform: Platform, app: FastAPI
) -> None:
    auditor = make_user(platform, roles=["auditor"])
    steward = make_user(platform, roles=["steward"])
    client = browser(app)
    sign_in(client, auditor.username)
    page = client.get("/audit")
    assert page.status_code == 200
    assert 'data-action="auth.login"' in page.text and "登录" in page.text
    assert 'data-action="user.create"' in page.text and "账号已创建" in page.text

    client = browser(app)
    sign_in(client, steward.username)
    refused = client.get("/audit")
    assert refused.status_code == 403
    assert "无权访问" in refused.text
    assert 'href="/audit"' not in client.get("/").text  # not offered in the menu either
    denied = [r for r in audit_records(platform, "audit.read") if r.outcome == "denied"]
    assert [r.actor for r in denied] == [f"user:{steward.username}"]


def test_audit_log_filters_by_action_and_pages_back(platform: Platform, app: FastAPI) -> None:
    auditor = make_user(platform, roles=["auditor"])
    client = browser(app)
    sign_in(client, auditor.username)
    page = client.get("/audit", params={"action": "user.create"})
    actions = set(re.findall(r'data-action="([a-z.\-]+)"', page.text))
    assert actions == {"user.create"}
    seqs = [
        int(s)
        for s in re.findall(
            r'<td class="mono" data-label="#">(\d+)</td>', client.get("/audit").text
        )
    ]
    assert seqs == sorted(seqs, reverse=True)
    older = client.get("/audit", params={"before": seqs[1]})
    older_seqs = [
        int(s) for s in re.findall(r'<td class="mono" data-label="#">(\d+)</td>', older.text)
    ]
    assert older_seqs and max(older_seqs) < seqs[1]


def test_anonymous_audit_visit_asks_to_sign_in(app: FastAPI) -> None:
    response = browser(app).get("/audit")
    assert response.status_code == 401
    assert 'href="/login?next=/audit"' in response.text


def test_verify_button_shows_the_chain_report(platform: Platform, app: FastAPI) -> None:
    auditor = make_user(platform, roles=["auditor"])
    client = browser(app)
    sign_in(client, auditor.username)
    token = csrf_of(client.get("/audit"))
    page = client.post("/audit/verify", data={"csrf": token})
    assert page.status_code == 200
    assert "审计链完好" in page.text and "<html" in page.text
    fragment = client.post("/audit/verify", data={"csrf": token}, headers={"HX-Request": "true"})
    assert "审计链完好" in fragment.text and "<html" not in fragment.text
    assert client.post("/audit/verify", data={}).status_code == 403


# --- organisations ----------------------------------------------------------------------


def test_directory_filters_by_division_and_name(platform: Platform, app: FastAPI) -> None:
    with platform.factory.begin() as session:
        fuzhou = factories.make_org(session, name="福州市数据管理局", division_code="350100")
        xiamen = factories.make_org(session, name="厦门市大数据中心", division_code="350200")
        user = factories.make_user(session, organization=fuzhou)
    client = browser(app)
    sign_in(client, user.username)
    everything = client.get("/orgs")
    assert (
        "福建省" in everything.text and "厦门市" in everything.text and "鼓楼区" in everything.text
    )
    in_xiamen = client.get("/orgs", params={"division": "350200"})
    assert xiamen.name in in_xiamen.text and fuzhou.name not in in_xiamen.text
    by_name = client.get("/orgs", params={"q": "大数据"}, headers={"HX-Request": "true"})
    assert xiamen.name in by_name.text and fuzhou.name not in by_name.text
    assert "<html" not in by_name.text  # htmx gets the results part only
    assert client.get("/orgs", params={"division": "999999"}).status_code == 404


def test_directory_escapes_what_the_visitor_typed(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform)
    client = browser(app)
    sign_in(client, user.username)
    page = client.get("/orgs", params={"q": '<script>alert("x")</script>'})
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;" in page.text


def test_organisation_page_shows_where_it_sits(platform: Platform, app: FastAPI) -> None:
    with platform.factory.begin() as session:
        org = factories.make_org(session, name="鼓楼区政务服务中心", division_code="350102")
        user = factories.make_user(session, organization=org)
    client = browser(app)
    sign_in(client, user.username)
    page = client.get(f"/orgs/{org.code}")
    assert page.status_code == 200
    assert org.name in page.text and org.uscc in page.text
    assert re.search(r"福建省.*福州市.*鼓楼区", page.text, re.S)
    assert client.get("/orgs/no-such-org").status_code == 404


# --- jobs -------------------------------------------------------------------------------


@pytest.fixture
def running_job(platform: Platform) -> Iterator[tuple[str, threading.Event]]:
    """A job that has reported 2 of 4 and waits for the test to let it finish."""
    gate = threading.Event()
    key = f"gate-{id(gate)}"
    _gates[key] = gate
    with platform.factory.begin() as session:
        job_id = jobs.submit(session, Principal.system(), "test.web-progress", {"gate": key}).id
    try:
        _wait_for(platform, job_id, lambda job: job.done == 2)
        yield job_id, gate
    finally:
        gate.set()
        _gates.pop(key, None)


def _wait_for(platform: Platform, job_id: str, condition: Any) -> Job:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with platform.factory() as session:
            job = session.get(Job, job_id)
            if job is not None and condition(job):
                return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not get there in time")


def test_jobs_page_shows_progress_until_the_job_ends(
    platform: Platform, app: FastAPI, running_job: tuple[str, threading.Event]
) -> None:
    job_id, gate = running_job
    steward = make_user(platform, roles=["steward"])
    client = browser(app)
    sign_in(client, steward.username)
    # A system job works for no department: a steward does not see it, an admin does.
    assert "test.web-progress" not in client.get("/jobs").text
    assert client.get(f"/jobs/{job_id}").status_code == 404
    user = make_user(platform, roles=["admin"])
    client = browser(app)
    sign_in(client, user.username)
    listing = client.get("/jobs")
    assert "test.web-progress" in listing.text
    assert '<progress value="2" max="4">' in listing.text
    page = client.get(f"/jobs/{job_id}")
    assert "50% · 2 / 4" in page.text and "halfway" in page.text
    assert f'hx-get="/jobs/{job_id}/progress"' in page.text and 'hx-trigger="every 1s"' in page.text
    assert '<meta http-equiv="refresh"' in page.text  # without JavaScript the page reloads itself

    gate.set()
    _wait_for(platform, job_id, lambda job: job.finished)
    fragment = client.get(f"/jobs/{job_id}/progress")
    assert "<html" not in fragment.text
    assert "state-succeeded" in fragment.text and "100% · 4 / 4" in fragment.text
    assert "hx-trigger" not in fragment.text  # polling stops once the job has ended
    assert "&#34;rows&#34;: 4" in fragment.text or '"rows": 4' in fragment.text


def test_consumer_cannot_see_jobs(platform: Platform, app: FastAPI) -> None:
    user = make_user(platform, roles=["consumer"])
    client = browser(app)
    sign_in(client, user.username)
    assert client.get("/jobs").status_code == 403
    assert client.get("/jobs/0123456789abcdef0123456789abcdef/progress").status_code == 403


# --- translations -----------------------------------------------------------------------


def _template_messages() -> set[str]:
    with (MINYUN / "web" / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)  # type: ignore[no-untyped-call]
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(MINYUN), method_map, options_map
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _translated(entry: Message | None) -> bool:
    if entry is None or entry.fuzzy:
        return False
    strings = [entry.string] if isinstance(entry.string, str) else list(entry.string or [])
    return bool(strings) and all(strings)


def test_every_page_message_has_a_chinese_translation() -> None:
    used = _template_messages()
    assert "Sign in" in used and "Welcome, %(name)s" in used  # extraction itself works
    with i18n.catalog_path("zh").open("rb") as po:
        catalog = read_po(po)
    missing = sorted(message for message in used if not _translated(catalog.get(message)))
    assert missing == [], f"add these to the zh_Hans catalog: {missing}"


def test_catalogs_load_without_a_compile_step() -> None:
    zh = i18n.translations("zh")
    assert zh.gettext("Sign in") == "登录"
    assert zh.ngettext("%(count)s organisation", "%(count)s organisations", 3) == "%(count)s 个单位"
    en = i18n.translations("en")
    assert en.gettext("Sign in") == "Sign in"
    assert en.ngettext("%(count)s organisation", "%(count)s organisations", 1).startswith(
        "%(count)s organisation"
    )
