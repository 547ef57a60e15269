"""A person's file in headless Chromium, on a phone and at a desk: four departments or more."""

from __future__ import annotations

from pathlib import Path

import pytest

from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.subjects import service
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep
from tests.subjects.kit import load_population
from tests.subjects.test_file import _richest

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 812}
DESK = {"width": 1280, "height": 900}


def test_a_person_file_shows_records_from_four_departments(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    load_population(platform, tmp_path, 200)
    with unit_of_work(platform.factory) as session:
        service.resolve(session, platform.lake, Principal.system(), kind="person")
    subject = _richest(platform)
    with platform.factory.begin() as s:
        admin = factories.make_user(s, roles=["admin"])

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name, viewport in (("phone", PHONE), ("desk", DESK)):
                context = browser.new_context(viewport=viewport, is_mobile=name == "phone")
                page = context.new_page()
                page.goto(f"{server}/login")
                page.fill("#username", admin.username)
                page.fill("#password", factories.PASSWORD)
                page.click("form.stack button[type=submit]")
                page.wait_for_url(f"{server}/")
                page.goto(f"{server}/subjects")
                page.fill("#q", subject)
                page.click("form.panel button[type=submit]")
                page.wait_for_url(f"{server}/subjects/{subject}")
                expect(page.locator("h1")).to_contain_text("个人档案")
                records = page.locator("#records article.record")
                departments = {t.strip() for t in records.locator("h3").all_inner_texts()}
                assert len(departments) >= 4, departments
                expect(records.first.locator(".provenance")).to_contain_text("版本")
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"] + 1
                shot = tmp_path / f"subject-file-{name}.png"
                page.screenshot(path=shot, full_page=True)
                keep(shot)
                context.close()
        finally:
            browser.close()
