"""A citizen opens a licence on a phone; a verifier takes its QR text: valid, then revoked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from minyun.accounts.models import AccountKind
from minyun.core.uow import unit_of_work
from minyun.licences import service
from minyun.licences.models import Licence
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep
from tests.ingest import loadkit
from tests.licences.live import live_node

pytestmark = pytest.mark.browser
PHONE = {"width": 375, "height": 812}
DESK = {"width": 1280, "height": 900}


def _resident_permits(node: Any, tmp_path: Path) -> tuple[Any, str]:
    """A person resource of a police bureau and its 居住证 type; the citizen holds row 1's."""
    code, steward = loadkit.make_resource(node)
    path = loadkit.write_csv(tmp_path / "people.csv", [loadkit.person(n) for n in (1, 2)])
    assert loadkit.load(node, steward, code, path).state == "succeeded"
    with unit_of_work(node.factory) as session:
        org = session.get(factories.Organization, steward.organization_id)
        fields = [
            f
            for f in loadkit.PERSON_SCHEMA["fields"]
            if f["name"] in ("id", "ric", "name", "birth")
        ]
        service.define_type(session, steward, service.TypeSpec(
            code="residence-permit", name="居住证", issuer=org.code, holder_kind="person",
            schema={"fields": fields, "primaryKey": ["id"]}, source=code, holder_field="ric",
            holder_name_field="name", validity={"years": 3},
            template="<p>{{ name }}</p><p>{{ birth }}</p>",
        ))  # fmt: skip
        citizen = factories.make_user(session, kind=AccountKind.CITIZEN, organization_id=None,
                                      ric=loadkit.ric(1), display_name="林小闽")  # fmt: skip
        username = citizen.username
        factories.make_user(session, username="issuer-steward", roles=["steward"],
                            organization_id=org.id)  # fmt: skip
    service.issue(node.factory, node.lake, "residence-permit")
    return steward, username


def test_a_citizen_shows_a_licence_and_a_verifier_sees_valid_then_revoked(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with live_node(tmp_path / "var") as (node, base):
        steward, username = _resident_permits(node, tmp_path)

        def shot(page: Any, name: str, width: int) -> None:
            assert page.evaluate("document.documentElement.scrollWidth") <= width + 1, page.url
            page.screenshot(path=tmp_path / name, full_page=True)
            keep(tmp_path / name)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                phone = browser.new_context(
                    viewport=PHONE, is_mobile=True, has_touch=True
                ).new_page()
                phone.goto(f"{base}/login")
                phone.fill("#username", username)
                phone.fill("#password", factories.PASSWORD)
                phone.click("form.stack button[type=submit]")
                phone.wait_for_url(f"{base}/")
                phone.goto(f"{base}/licences")
                expect(phone.locator("#licences")).to_contain_text("居住证")
                shot(phone, "licences-wallet-phone.png", PHONE["width"])
                phone.click("#licences a")
                expect(phone.locator("#state")).to_have_text("有效")
                expect(phone.locator("#qr svg")).to_be_visible()
                shot(phone, "licences-licence-phone.png", PHONE["width"])
                payload = phone.locator("#payload").input_value()
                assert payload.count(".") == 2

                counter = browser.new_context(viewport=DESK).new_page()
                counter.goto(f"{base}/licences/verify")
                counter.fill("#credential", payload)
                counter.click("#check")
                expect(counter.locator("#outcome")).to_have_text("有效")
                shot(counter, "licences-verify-valid.png", DESK["width"])

                with unit_of_work(node.factory) as session:
                    lic = session.scalars(select(Licence)).first()
                    assert lic is not None
                    service.change_status(session, steward, lic.id, to="revoked", reason="证件吊销")
                counter.fill("#credential", payload)
                counter.click("#check")
                expect(counter.locator("#outcome")).to_have_text("已吊销")
                shot(counter, "licences-verify-revoked.png", DESK["width"])

                counter.fill("#credential", payload[:-3] + "abc")
                counter.click("#check")
                expect(counter.locator("#outcome")).to_have_attribute("data-outcome", "forged")

                phone.reload()
                expect(phone.locator("#state")).to_have_text("已吊销")
                expect(phone.locator("#uses")).to_contain_text("核验方核验")
                shot(phone, "licences-licence-revoked-phone.png", PHONE["width"])

                desk = browser.new_context(viewport=PHONE, is_mobile=True).new_page()
                desk.goto(f"{base}/login")
                desk.fill("#username", "issuer-steward")
                desk.fill("#password", factories.PASSWORD)
                desk.click("form.stack button[type=submit]")
                desk.wait_for_url(f"{base}/")
                desk.goto(f"{base}/licences")
                expect(desk.locator("#stats")).to_contain_text("居住证")
                expect(desk.locator(".licence-chart canvas")).to_have_count(2)
                with node.factory() as session:
                    issuer = session.get(factories.Organization, steward.organization_id)
                    assert issuer is not None
                    issuer_name = issuer.name
                # Per issuing department too: its row counts the one kind it issues.
                expect(desk.locator("#issuers tr", has_text=issuer_name)).to_contain_text("1")
                shot(desk, "licences-stats-phone.png", PHONE["width"])
            finally:
                browser.close()
