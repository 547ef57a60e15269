"""A grid worker files a report with a photo from a phone-sized Chromium (one thumb), and the
overview map at desk size. Screenshots are kept in test-results/ (grid-report-phone.png,
grid-report-filed-phone.png, grid-overview-desk.png, grid-overview-phone.png)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from minyun.apps.grid import service
from minyun.core.platform import Platform
from tests import factories
from tests.apps.grid.conftest import DONGJIEKOU, SYSTEM, jpeg, org
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 812}
DESK = {"width": 1280, "height": 800}


def test_a_report_with_a_photo_from_a_phone(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with platform.factory.begin() as session:
        service.load_gulou(session, SYSTEM)
        factories.make_user(session, username="wangge", display_name="东街网格员",
                            organization=org(session, "gl-st-004"))  # fmt: skip
    photo = tmp_path / "fire-lane.jpg"
    photo.write_bytes(jpeg(gps=DONGJIEKOU, size=(1200, 900)))

    def shot(page: Any, name: str, full: bool = False) -> None:
        page.screenshot(path=tmp_path / name, full_page=full)
        keep(tmp_path / name)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                          has_touch=True)  # type: ignore[arg-type]  # fmt: skip
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server}/login?next=/grid/report")
            page.fill("#username", "wangge")
            page.fill("#password", factories.PASSWORD)
            page.click("form.stack button[type=submit]")
            page.wait_for_url(f"{server}/grid/report")
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            send = page.locator("#send").bounding_box()
            # The send button sits in the thumb's reach: the bottom of the screen, full width.
            assert send is not None and send["y"] + send["height"] > PHONE["height"] - 80
            assert send["width"] > PHONE["width"] * 0.8 and send["height"] >= 48
            page.locator(".grid-category", has_text="占用消防通道").tap()
            page.locator(".grid-choice", has_text="完全堵塞").tap()
            page.set_input_files("#photo", str(photo))
            page.fill("textarea[name=description]", "小区消防通道被私家车堵住")
            shot(page, "grid-report-phone.png", full=True)
            page.locator("#send").tap()
            page.wait_for_url(re.compile(r".*/grid/reports/\d+$"))
            expect(page.locator("#timeline li")).to_have_count(4)
            expect(page.locator("#tasks li")).to_have_count(3)
            expect(page.locator(".grid-photos img")).to_have_count(1)
            assert "东街街道" in page.locator("header.page-head").inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            shot(page, "grid-report-filed-phone.png", full=True)
            assert errors == []

            with platform.factory.begin() as session:
                factories.make_user(
                    session, username="jiaojing", organization=org(session, "gl-traffic")
                )
            desk = browser.new_page(viewport=DESK)  # type: ignore[arg-type]
            desk.on("pageerror", lambda e: errors.append(str(e)))
            desk.goto(f"{server}/login?next=/grid")
            desk.fill("#username", "jiaojing")
            desk.fill("#password", factories.PASSWORD)
            desk.click("form.stack button[type=submit]")
            desk.wait_for_url(f"{server}/grid")
            expect(desk.locator(".grid-map path.leaflet-interactive").first).to_be_visible()
            expect(desk.locator(".grid-label", has_text="鼓东街道")).to_be_visible()
            expect(desk.locator("path.grid-report-open")).to_have_count(1)
            desk.wait_for_function("document.querySelector('#grid-chart canvas') !== null")
            shot(desk, "grid-overview-desk.png", full=True)
            phone = context.new_page()
            phone.goto(f"{server}/grid")
            assert phone.url.endswith("/grid")
            assert errors == []
        finally:
            browser.close()


def test_the_grid_centre_keeps_keys_and_rules_from_a_phone_and_a_desk(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from minyun.core.security import Role

    with platform.factory.begin() as session:
        service.load_gulou(session, SYSTEM)
        factories.make_user(session, username="zhongxin", display_name="网格中心管理员",
                            roles=[Role.STEWARD], organization=org(session, "gl-grid-centre"))  # fmt: skip

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=tmp_path / name, full_page=True)
        keep(tmp_path / name)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            errors: list[str] = []
            for size, viewport in (("phone", PHONE), ("desk", DESK)):
                context = browser.new_context(viewport=viewport, device_scale_factor=2,  # type: ignore[arg-type]
                                              is_mobile=size == "phone", has_touch=size == "phone")  # fmt: skip
                page = context.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{server}/login?next=/grid/keys")
                page.fill("#username", "zhongxin")
                page.fill("#password", factories.PASSWORD)
                page.click("form.stack button[type=submit]")
                page.wait_for_url(f"{server}/grid/keys")
                page.fill("input[name=name]", f"fixmystreet-{size}")
                page.locator("#create-key button[type=submit]").click()
                expect(page.locator("#key-secret")).to_contain_text("o311_")
                assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
                shot(page, f"grid-keys-created-{size}.png")
                page.goto(f"{server}/grid/keys")
                expect(page.locator("#key-secret")).to_have_count(0)  # shown once
                row = page.locator("#keys tr", has_text=f"fixmystreet-{size}")
                row.get_by_role("button").click()
                page.wait_for_url(f"{server}/grid/keys")
                expect(page.locator("#keys tr", has_text=f"fixmystreet-{size}")).to_contain_text(
                    "已吊销"
                )
                assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
                shot(page, f"grid-keys-{size}.png")

                page.goto(f"{server}/grid/rules")
                card = page.locator("#service-streetlight")
                card.locator("input[name=arrive_minutes]").fill("90")
                card.get_by_role("button", name="保存时限").click()
                page.wait_for_url(re.compile(r".*/grid/rules(#.*)?$"))
                expect(
                    page.locator("#service-streetlight input[name=arrive_minutes]")
                ).to_have_value("90")
                if size == "phone":
                    card = page.locator("#service-streetlight")
                    card.locator("summary").click()
                    card.locator("select[name=area_code]").select_option(label="鼓东街道")
                    card.locator("select[name=org_code]").select_option("gl-housing")
                    card.get_by_role("button", name="添加", exact=True).click()
                    page.wait_for_url(re.compile(r".*/grid/rules(#.*)?$"))
                expect(
                    page.locator("#service-streetlight .grid-rules li", has_text="鼓东街道")
                ).to_have_count(1)
                assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
                shot(page, f"grid-rules-{size}.png")
                context.close()
            assert errors == []
        finally:
            browser.close()
