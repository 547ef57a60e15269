"""Batch subscriptions on a phone (375 px) and a desk in headless Chromium: deliver, download."""

from __future__ import annotations

from pathlib import Path

import pytest

from minyun.core.platform import Platform
from minyun.exchange.sinks import BOM, SinkSpec
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep
from tests.exchange.batchkit import grant, subscribe, world

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 812}
DESK = {"width": 1280, "height": 900}


def test_deliver_and_download_from_the_subscriptions_page(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    w = world(platform, rows=30)
    grant(w, ["id", "name", "city"], row_filter="id <= 25")
    sub = subscribe(w, SinkSpec("file", "csv"), mode="full", every=1440)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            phone = context.new_page()
            phone.goto(f"{server}/login")
            phone.fill("#username", w.consumer.name)
            phone.fill("#password", factories.PASSWORD)
            phone.click("form.stack button[type=submit]")
            phone.wait_for_url(f"{server}/")
            phone.goto(f"{server}/sharing/subscriptions")
            phone.click(f"#subscription-{sub} form[action$='/deliver'] button")
            for _ in range(40):  # the job runs in a thread of the server
                phone.goto(f"{server}/sharing/subscriptions")
                if phone.locator(f"#subscription-{sub} .badge.state-delivered").count():
                    break
                phone.wait_for_timeout(250)
            row = phone.locator(f"#subscription-{sub} tbody tr").first
            expect(row).to_contain_text("已交付")
            expect(row).to_contain_text("25")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"] + 1
            phone.screenshot(path=tmp_path / "batch-subscriptions-phone.png", full_page=True)
            keep(tmp_path / "batch-subscriptions-phone.png")
            with phone.expect_download() as got:
                row.locator("a", has_text="下载").click()
            saved = tmp_path / "delivery.csv"
            got.value.save_as(saved)
            assert saved.read_bytes().startswith(BOM)
            assert len(saved.read_bytes().decode("utf-8-sig").splitlines()) == 26
            desk = browser.new_context(viewport=DESK).new_page()
            desk.context.add_cookies(context.cookies())
            desk.goto(f"{server}/sharing/subscriptions")
            desk.screenshot(path=tmp_path / "batch-subscriptions-desk.png", full_page=True)
            keep(tmp_path / "batch-subscriptions-desk.png")
        finally:
            browser.close()
