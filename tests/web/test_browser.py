"""A real browser (headless Chromium via Playwright) signs in as the demo steward and sees the dashboard."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from minyun.accounts.models import User
from minyun.core import jobs
from minyun.core.jobs import JobContext
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.demo import province
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep

pytestmark = pytest.mark.browser

_release = threading.Event()


@jobs.handler("test.browser-progress")
def _half_then_wait(ctx: JobContext) -> dict[str, int]:
    """Report half done, then wait until the test lets it finish."""
    ctx.progress(5, 10, "halfway")
    _release.wait(15)
    return {"rows": 10}


def test_steward_signs_in_and_sees_the_dashboard(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    # The demo province's own departments and accounts, as `make demo` creates them.
    with platform.factory.begin() as session:
        province.load_departments(session)
        demo = {a.username: a for a in province.load_accounts(session, platform.settings.var_dir)}
    username, password = "steward", demo["steward"].password

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desktop = browser.new_page(viewport={"width": 1280, "height": 800})
            desktop.goto(f"{server}/login")
            expect(desktop.locator("html")).to_have_attribute("lang", "zh-Hans")
            desktop.fill("#username", username)
            desktop.fill("#password", password)
            desktop.click("form.stack button[type=submit]")
            desktop.wait_for_url(f"{server}/")
            expect(desktop.locator("h1")).to_contain_text("市场监管数据专员")
            expect(desktop.locator("#card-account")).to_contain_text("数据管理员")
            expect(desktop.locator("#card-jobs")).to_be_visible()
            expect(desktop.locator(".nav")).to_be_visible()
            desktop.screenshot(path=tmp_path / "dashboard-desktop.png", full_page=True)
            keep(tmp_path / "dashboard-desktop.png")

            phone_context = browser.new_context(
                viewport={"width": 375, "height": 812},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
            )
            phone_context.add_cookies(desktop.context.cookies())  # type: ignore[arg-type]
            phone = phone_context.new_page()
            phone.goto(f"{server}/")
            expect(phone.locator("h1")).to_contain_text("市场监管数据专员")
            # The menu hides behind its button on a phone and opens on a tap.
            expect(phone.locator(".nav")).to_be_hidden()
            phone.screenshot(path=tmp_path / "dashboard-phone.png", full_page=True)
            keep(tmp_path / "dashboard-phone.png")
            phone.tap(".nav-button")
            expect(phone.locator(".nav")).to_be_visible()
            expect(phone.locator(".nav")).to_contain_text("单位目录")
            phone.screenshot(path=tmp_path / "dashboard-phone-menu.png")
            keep(tmp_path / "dashboard-phone-menu.png")
            # Nothing wider than the screen: no sideways scrolling on a phone.
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 375

            phone.goto(f"{server}/orgs")
            expect(phone.locator("#results")).to_contain_text("福建省市场监督管理局")
            phone.screenshot(path=tmp_path / "orgs-phone.png", full_page=True)
            keep(tmp_path / "orgs-phone.png")

            # A running job's page follows its progress by itself (htmx polls every second).
            _release.clear()
            # A job of the steward's own department (another's would be hidden from them).
            with platform.factory.begin() as session:
                steward = session.scalars(select(User).where(User.username == username)).one()
                mine = Principal(
                    kind="user", name=username, user_id=steward.id,
                    organization_id=steward.organization_id, roles=frozenset(steward.roles),
                )  # fmt: skip
                job_id = jobs.submit(session, mine, "test.browser-progress").id
            desktop.goto(f"{server}/jobs/{job_id}")
            expect(desktop.locator("#job-progress")).to_contain_text("50% · 5 / 10")
            desktop.screenshot(path=tmp_path / "job-running.png", full_page=True)
            keep(tmp_path / "job-running.png")
            _release.set()
            expect(desktop.locator("#job-progress .state-succeeded")).to_be_visible(timeout=5000)
            expect(desktop.locator("#job-progress")).to_contain_text("100% · 10 / 10")
        finally:
            _release.set()
            browser.close()

    assert (tmp_path / "dashboard-desktop.png").stat().st_size > 10_000
