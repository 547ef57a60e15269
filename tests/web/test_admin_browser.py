"""An administrator runs the console in headless Chromium, on a phone and at a desk."""

from __future__ import annotations

from pathlib import Path

import pytest

from minyun.core.platform import Platform
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 812}
DESK = {"width": 1280, "height": 800}


def test_an_administrator_registers_an_organisation_and_a_client_on_a_phone(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with platform.factory.begin() as s:
        admin = factories.make_user(s, roles=["admin"], display_name="省大数据局管理员")
        other = factories.make_user(s, roles=["steward"], display_name="林专员")
        factories.make_org(s, division_code="350000", name="福建省大数据管理局")
    uscc = factories.make_uscc(8101, "350100")
    bad_uscc = uscc[:-1] + ("0" if uscc[-1] != "0" else "1")

    def shot(page: object, name: str) -> None:
        page.screenshot(path=tmp_path / name, full_page=True)  # type: ignore[attr-defined]
        keep(tmp_path / name)

    def fits(page: object) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
        assert width <= PHONE["width"], page.url  # type: ignore[attr-defined]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
            )
            phone = context.new_page()
            phone.goto(f"{server}/login")
            phone.fill("#username", admin.username)
            phone.fill("#password", factories.PASSWORD)
            phone.click("form.stack button[type=submit]")
            phone.wait_for_url(f"{server}/")
            phone.tap(".nav-button")
            phone.click("text=系统管理")
            phone.wait_for_url(f"{server}/admin")
            expect(phone.locator("h1")).to_have_text("系统管理")
            fits(phone)
            shot(phone, "admin-console-phone.png")

            # An organisation with a mistyped credit code: the reason by the field, input kept.
            phone.goto(f"{server}/admin/orgs/new")
            phone.fill("#f-code", "fz-data")
            phone.fill("#f-name", "福州市数据管理局")
            phone.fill("#f-uscc", bad_uscc)
            phone.select_option("#f-division_code", "350100")
            phone.click("form.stack button[type=submit]")
            expect(phone.locator("#f-uscc-error")).to_contain_text("统一社会信用代码无效")
            expect(phone.locator("#f-name")).to_have_value("福州市数据管理局")
            fits(phone)
            shot(phone, "admin-org-error-phone.png")
            phone.fill("#f-uscc", uscc)
            phone.click("form.stack button[type=submit]")
            phone.wait_for_url(f"{server}/admin/orgs?done=org-created")
            expect(phone.locator(".alert.ok")).to_have_text("单位已登记。")
            fits(phone)
            shot(phone, "admin-orgs-phone.png")

            # An API client of it; the secret is shown once.
            phone.goto(f"{server}/admin/clients/new")
            phone.fill("#f-name", "不动产登记系统")
            phone.select_option("#f-organization", "fz-data")
            phone.check("input[name=scopes][value='resource.read']")
            phone.click("form.stack button[type=submit]")
            expect(phone.locator("h1")).to_have_text("接口客户端已登记")
            secret = phone.locator("#client-secret").inner_text()
            client_id = phone.locator("#client-id").inner_text()
            assert len(secret) >= 40 and client_id.startswith("mc_")
            fits(phone)
            shot(phone, "admin-client-secret-phone.png")

            # Revoking asks first.
            phone.goto(f"{server}/admin/clients/{client_id}")
            assert secret not in phone.content()
            phone.click("text=吊销")
            expect(phone.locator("h1")).to_have_text("吊销此客户端？")
            fits(phone)
            shot(phone, "admin-client-revoke-phone.png")
            phone.click("form.stack button.danger")
            expect(phone.locator(".alert.ok")).to_contain_text("客户端已吊销")

            for path in ("/admin/users", f"/admin/users/{other.id}", "/admin/users/new",
                         f"/admin/users/{other.id}/reset", "/admin/clients",
                         "/admin/orgs/fz-data/edit"):  # fmt: skip
                phone.goto(f"{server}{path}")
                fits(phone)
            shot(phone, "admin-org-edit-phone.png")
            phone.goto(f"{server}/admin/users/{other.id}")
            shot(phone, "admin-user-phone.png")

            desk = browser.new_page(viewport=DESK)
            desk.context.add_cookies(context.cookies())  # type: ignore[arg-type]
            for path, name in (("/admin/users", "admin-users-desk.png"),
                               ("/admin/clients", "admin-clients-desk.png"),
                               ("/admin/orgs/new", "admin-org-new-desk.png")):  # fmt: skip
                desk.goto(f"{server}{path}")
                shot(desk, name)
        finally:
            browser.close()
