"""The open data portal in headless Chromium, anonymous, on a phone and at desk size."""

from __future__ import annotations

from pathlib import Path

import pytest

from minyun.core.platform import Platform
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep
from tests.opendata import kit

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 812}
DESK = {"width": 1280, "height": 900}


def test_search_open_preview_chart_and_download(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with platform.factory.begin() as s:
        kit.portal(s, platform.lake)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for size, tag in ((PHONE, "phone"), (DESK, "desk")):
                context = browser.new_context(
                    viewport=size, is_mobile=tag == "phone", accept_downloads=True
                )
                page = context.new_page()
                page.goto(f"{server}/opendata")
                page.fill("#od-q", "福州企业")
                page.click("#od-search button[type=submit]")
                expect(page.locator(".od-list li")).to_have_count(1)
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= size["width"] + 1
                page.screenshot(path=tmp_path / f"opendata-search-{tag}.png", full_page=True)
                keep(tmp_path / f"opendata-search-{tag}.png")

                page.click(".od-list li a.org-name")
                expect(page.locator("#od-title")).to_have_text("福州市企业登记信息")
                expect(page.locator("#od-preview tbody tr")).to_have_count(10)
                expect(page.locator("#od-count")).to_have_text("10")

                page.goto(f"{server}/opendata/datasets/capital-by-city")
                expect(page.locator("#od-chart canvas")).to_be_visible()
                assert page.evaluate("document.documentElement.scrollWidth") <= size["width"] + 1
                page.screenshot(path=tmp_path / f"opendata-dataset-{tag}.png", full_page=True)
                keep(tmp_path / f"opendata-dataset-{tag}.png")

                with page.expect_download() as caught:
                    page.click("#download-csv")
                saved = tmp_path / f"capital-{tag}.csv"
                caught.value.save_as(saved)
                data = saved.read_bytes()
                assert data.startswith(b"\xef\xbb\xbf")
                assert data.decode("utf-8-sig").splitlines()[0] == '"city","capital","enterprises"'

                page.goto(f"{server}/opendata/domains")
                expect(page.locator(".od-domains li")).to_have_count(21)
                assert page.evaluate("document.documentElement.scrollWidth") <= size["width"] + 1
                page.goto(f"{server}/opendata/api")
                assert page.evaluate("document.documentElement.scrollWidth") <= size["width"] + 1
                page.screenshot(path=tmp_path / f"opendata-api-{tag}.png", full_page=True)
                keep(tmp_path / f"opendata-api-{tag}.png")
                context.close()
        finally:
            browser.close()


def test_apply_and_approve_on_a_phone(platform: Platform, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    from minyun.opendata import service
    from tests import factories

    with platform.factory.begin() as s:
        kit.portal(s, platform.lake)
        publisher = service.get_dataset(s, "cond").publisher_id
        developer = factories.make_user(s, roles=[]).username
        approver = factories.make_user(s, roles=["approver"], organization_id=publisher).username

    def sign_in(page: Page, username: str) -> None:
        page.goto(f"{server}/login")
        page.fill("#username", username)
        page.fill("#password", factories.PASSWORD)
        page.click("form.stack button[type=submit]")
        page.wait_for_url(f"{server}/")

    def fits(page: Page) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            dev = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
            sign_in(dev, developer)
            dev.goto(f"{server}/opendata/datasets/cond")
            expect(dev.locator("#od-preview")).to_have_count(0)
            dev.fill("#od-purpose", "研究全省企业登记的地区分布")
            fits(dev)
            dev.click("#od-apply-form button[type=submit]")
            expect(dev.locator("#od-applications .state-submitted")).to_have_count(1)
            fits(dev)
            dev.screenshot(path=tmp_path / "opendata-applied-phone.png", full_page=True)
            keep(tmp_path / "opendata-applied-phone.png")

            boss = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
            sign_in(boss, approver)
            boss.goto(f"{server}/opendata/applications")
            expect(boss.locator("article.panel")).to_have_count(1)
            fits(boss)
            boss.screenshot(path=tmp_path / "opendata-inbox-phone.png", full_page=True)
            keep(tmp_path / "opendata-inbox-phone.png")
            boss.click("article.panel form[action$='/approve'] button[type=submit]")
            expect(boss.locator("article.panel .state-approved")).to_have_count(1)

            dev.goto(f"{server}/opendata/datasets/cond")
            expect(dev.locator("#od-preview tbody tr")).to_have_count(10)
            expect(dev.locator("#download-csv")).to_be_visible()
            fits(dev)
        finally:
            browser.close()
