"""The sharing story in headless Chromium: a consumer applies in the marketplace, an approver
approves one field fewer, the consumer looks a record up and sees the masked fields masked;
then the grant's usage page on a phone. Screenshots land in test-results/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from minyun.core.platform import Platform
from minyun.query.service import refresh_index
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep
from tests.query.data import add_resource, people
from tests.query.test_lookup import _set_masks

pytestmark = pytest.mark.browser

CODE = "ppl-online"
PHONE = {"width": 375, "height": 812}
DESK = {"width": 1280, "height": 900}
MASKS = {"name": ("secret", "name"), "born": ("secret", "date(year)"), "score": ("secret", None)}


def test_apply_approve_fewer_fields_and_look_up_masked(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with platform.factory.begin() as s:
        provider, consumer_org = factories.make_org(s), factories.make_org(s)
        resource = add_resource(
            s, platform.lake, provider_id=provider.id, code=CODE, versions=[people(30)],
            primary_key=["id"],
        )  # fmt: skip
        resource.legal_basis = "《福建省政务数据管理办法》"
        _set_masks(s, resource.id, MASKS)
        refresh_index(s, platform.lake, CODE)
        consumer = factories.make_user(s, roles=["consumer"], organization_id=consumer_org.id)
        approver = factories.make_user(s, roles=["approver"], organization_id=provider.id)

    def shot(page: Any, name: str, width: int) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1, page.url
        page.screenshot(path=tmp_path / name, full_page=True)
        keep(tmp_path / name)

    def sign_in(browser: Any, user: Any, viewport: dict[str, int]) -> Any:
        context = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE)
        page = context.new_page()
        page.goto(f"{server}/login")
        page.fill("#username", user.username)
        page.fill("#password", factories.PASSWORD)
        page.click("form.stack button[type=submit]")
        page.wait_for_url(f"{server}/")
        return page

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # The consumer applies for four fields in the marketplace.
            page = sign_in(browser, consumer, DESK)
            page.goto(f"{server}/sharing")
            page.click(f"#offer-{CODE} a.button")
            for name in ("id", "name", "city", "age"):
                page.check(f"input[name=fields][value={name}]")
            page.fill("#purpose", "核验低保申请人身份")
            page.fill("#legal_basis", "《社会救助暂行办法》第十条")
            page.click("form.admin-form button[type=submit]")
            page.wait_for_url(f"{server}/sharing/mine?applied=*")
            page.context.close()
            # The approver gives one field fewer (not the age).
            page = sign_in(browser, approver, DESK)
            page.goto(f"{server}/sharing/inbox")
            page.uncheck("#waiting input[name=fields][value=age]")
            page.click("#waiting button:has-text('批准')")
            page.wait_for_url(f"{server}/sharing/inbox")
            expect(page.locator("#inbox-empty")).to_be_visible()
            page.context.close()
            # The consumer looks a person up on a phone: the name masked, no age, no score.
            page = sign_in(browser, consumer, PHONE)
            page.goto(f"{server}/sharing/mine")
            page.click(f"#held a[href='/sharing/lookup/{CODE}']")
            page.fill("#key", "7")
            page.fill("#purpose", "低保复核")
            page.click("#lookup-form button[type=submit]")
            expect(page.locator("#field-name dd")).to_have_text("居*****7")
            expect(page.locator("#field-name .state-masked")).to_be_visible()
            expect(page.locator("#field-id dd")).to_have_text("7")
            expect(page.locator("#field-city .state-masked")).to_have_count(0)
            expect(page.locator("#field-age")).to_have_count(0)
            expect(page.locator("#field-score")).to_have_count(0)
            shot(page, "sharing-lookup-masked-phone.png", PHONE["width"])
            # The filtered query on the phone: rows as cards, the name masked.
            page.click("#to-query")
            page.fill("#filter", "id <= 3")
            page.click("#query-form button[type=submit]")
            expect(page.locator("#rows tbody tr")).to_have_count(3)
            expect(page.locator("#rows")).to_contain_text("居*****1")
            shot(page, "sharing-query-phone.png", PHONE["width"])
            # The grant's usage, with its chart, on the phone.
            page.goto(f"{server}/sharing/mine")
            page.click("#held a:has-text('用量')")
            expect(page.locator("#usage-chart canvas")).to_have_count(1)
            expect(page.locator("#usage-totals")).to_contain_text("2 次调用 · 4 行已交付")
            shot(page, "sharing-grant-usage-phone.png", PHONE["width"])
        finally:
            browser.close()
