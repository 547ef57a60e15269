"""Sharing on a phone (375 px) in headless Chromium: apply, a refused form, approve fewer fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from minyun.core.platform import Platform
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep
from tests.exchange.kit import parties

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 812}


def test_apply_and_approve_on_a_phone(platform: Platform, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with platform.factory.begin() as s:
        p = parties(s)
        code = p.resource.code
        consumer = factories.make_user(s, roles=["consumer"], organization_id=p.consumer_id)
        approver = factories.make_user(s, roles=["approver"], organization_id=p.provider_id)

    def fits(page: object, name: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
        assert width <= PHONE["width"] + 1, page.url  # type: ignore[attr-defined]
        page.screenshot(path=tmp_path / name, full_page=True)  # type: ignore[attr-defined]
        keep(tmp_path / name)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for user, steps in ((consumer, "consumer"), (approver, "approver")):
                context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
                phone = context.new_page()
                phone.goto(f"{server}/login")
                phone.fill("#username", user.username)
                phone.fill("#password", factories.PASSWORD)
                phone.click("form.stack button[type=submit]")
                phone.wait_for_url(f"{server}/")
                if steps == "consumer":
                    phone.goto(f"{server}/sharing")
                    fits(phone, "sharing-market-phone.png")
                    phone.click(f"#offer-{code} a.button")
                    phone.check("input[name=fields][value=ric]")
                    phone.check("input[name=fields][value=age]")
                    phone.fill("#legal_basis", "《福建省政务数据管理办法》")
                    phone.click("form.admin-form button[type=submit]")
                    expect(phone.locator("#purpose-error")).to_have_text(
                        "⚠ 此项必填。".removeprefix("⚠ ")
                    )
                    expect(phone.locator("#legal_basis")).to_have_value(
                        "《福建省政务数据管理办法》"
                    )
                    fits(phone, "sharing-apply-error-phone.png")
                    phone.fill("#purpose", "核验低保申请人身份")
                    phone.click("form.admin-form button[type=submit]")
                    phone.wait_for_url(f"{server}/sharing/mine?applied=*")
                    expect(phone.locator("#applied")).to_contain_text("审批人")
                    fits(phone, "sharing-mine-phone.png")
                else:
                    phone.click("text=打开待审批申请")
                    phone.wait_for_url(f"{server}/sharing/inbox")
                    fits(phone, "sharing-inbox-phone.png")
                    phone.uncheck("#waiting input[name=fields][value=ric]")
                    phone.click("#waiting button:has-text('批准')")
                    phone.wait_for_url(f"{server}/sharing/inbox")
                    expect(phone.locator("#inbox-empty")).to_be_visible()
                    phone.goto(f"{server}/sharing/mine")
                    expect(phone.locator("#given")).to_contain_text("age")
                    expect(phone.locator("#given code", has_text="ric")).to_have_count(0)
                    fits(phone, "sharing-given-phone.png")
                context.close()
        finally:
            browser.close()
