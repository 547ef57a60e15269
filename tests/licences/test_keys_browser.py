"""A department's steward rotates its signing key to SM2 and retires the old one, at a desk
and on a phone; a licence signed before the rotation still verifies at a counter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from minyun.core.uow import unit_of_work
from minyun.licences.models import Licence
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep
from tests.licences import kit
from tests.licences.live import live_node

pytestmark = pytest.mark.browser
PHONE = {"width": 375, "height": 812}
DESK = {"width": 1280, "height": 900}


def test_a_steward_rotates_and_retires_keys_at_a_desk_and_on_a_phone(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with live_node(tmp_path / "var") as (node, base):
        code, steward, org = kit.registrations(node)
        kit.load(node, steward, code, tmp_path, [kit.row(1), kit.row(2)])
        kit.define(node, steward, org, code)
        kit.issue(node)
        with unit_of_work(node.factory) as session:
            factories.make_user(session, username="key-steward", roles=["steward"],
                                organization_id=org.id)  # fmt: skip
        with node.factory() as session:
            before = session.scalars(select(Licence.credential)).first()
        assert before is not None

        def shot(page: Any, name: str, width: int) -> None:
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1, page.url
            page.screenshot(path=tmp_path / name, full_page=True)
            keep(tmp_path / name)

        def sign_in(page: Any) -> None:
            page.goto(f"{base}/login")
            page.fill("#username", "key-steward")
            page.fill("#password", factories.PASSWORD)
            page.click("form.stack button[type=submit]")
            page.wait_for_url(f"{base}/")

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                desk = browser.new_context(viewport=DESK).new_page()
                sign_in(desk)
                desk.goto(f"{base}/licences")
                desk.click("a.keys-link")
                expect(desk.locator("#keys tr[data-kid=key-1]")).to_contain_text("签名中")
                expect(desk.locator("input[name=algorithm][value=Ed25519]")).to_be_checked()
                shot(desk, "licence-keys-desk.png", DESK["width"])
                desk.check("input[name=algorithm][value=SM2]")
                desk.check("#confirm-rotate")
                desk.click("#rotate-button")
                expect(desk.locator("#made")).to_contain_text("key-2")
                expect(desk.locator("#keys tr[data-kid=key-1]")).to_contain_text("已轮换")
                expect(desk.locator("#keys tr[data-kid=key-2]")).to_contain_text("SM2")
                shot(desk, "licence-keys-rotated-desk.png", DESK["width"])
                document = desk.request.get(f"{base}/licences/issuers/{org.code}/did.json").json()
                assert [m["publicKeyJwk"]["crv"] for m in document["verificationMethod"]] == [
                    "Ed25519", "SM2",
                ]  # fmt: skip

                # A counter still accepts the licence signed before the rotation.
                counter = browser.new_context(viewport=DESK).new_page()
                counter.goto(f"{base}/licences/verify")
                counter.fill("#credential", before)
                counter.click("#check")
                expect(counter.locator("#outcome")).to_have_text("有效")

                phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
                mobile = phone.new_page()
                sign_in(mobile)
                mobile.goto(f"{base}/licences/keys/{org.code}")
                expect(mobile.locator("input[name=algorithm][value=SM2]")).to_be_checked()
                shot(mobile, "licence-keys-phone.png", PHONE["width"])
                mobile.click("#keys tr[data-kid=key-1] a.button")
                expect(mobile.locator("h1")).to_have_text("停用签名密钥")
                mobile.click("#retire-button")  # no reason: refused on the form
                expect(mobile.locator("#refusal")).to_be_visible()
                shot(mobile, "licence-keys-retire-refused-phone.png", PHONE["width"])
                mobile.fill("#reason", "密钥泄露")
                mobile.click("#retire-button")
                expect(mobile.locator("#keys tr[data-kid=key-1]")).to_contain_text("已停用")
                shot(mobile, "licence-keys-retired-phone.png", PHONE["width"])

                counter.fill("#credential", before)
                counter.click("#check")
                expect(counter.locator("#outcome")).to_have_attribute("data-outcome", "forged")
            finally:
                browser.close()
