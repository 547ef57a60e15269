"""The registry page (administrators) and the cities' catalog page, in the app and on a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from minyun.core.platform import Platform
from minyun.nodes import service
from minyun.web.app import create_app
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep
from tests.nodes.test_registry import _add, _entry
from tests.query.test_query_api import signed_in


def _city_catalog(platform: Platform) -> int:
    _add(platform)
    _add(platform, "province", relation="parent", name="福建省节点", division_code="350000",
         public_key="yvNKjFz-Vbc6BTF3AriCz7C5wJ28E5cbPAEBzYgK4wE")  # fmt: skip
    with platform.factory.begin() as s:
        service.receive_catalog(s, service.get_node(s, "fuzhou"), [
            _entry("fz-residents", name="福州市常住人口", summary="市公安局登记的常住人口"),
        ])  # fmt: skip
        return factories.make_org(s, division_code="350000").id


def test_the_registry_page_is_for_administrators(platform: Platform) -> None:
    _city_catalog(platform)
    app = create_app(platform)
    admin = signed_in(app, platform, ["admin"], None)
    page = admin.get("/admin/nodes")
    assert page.status_code == 200
    assert (
        "福州市节点" in page.text and "福建省节点" in page.text and "下级节点（市级）" in page.text
    )
    assert platform.settings.node_name in page.text  # this node's own id and key to give out
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = admin.post("/admin/nodes/fuzhou/revoke", data={"csrf": token.group(1), "reason": "撤网"})
    assert r.status_code == 303
    assert "已吊销" in admin.get("/admin/nodes").text or "revoked" in admin.get("/admin/nodes").text
    steward = signed_in(app, platform, ["steward"], None)
    assert steward.get("/admin/nodes").status_code == 403


def test_the_city_catalog_shows_each_resource_with_its_node(platform: Platform) -> None:
    org_id = _city_catalog(platform)
    app = create_app(platform)
    consumer = signed_in(app, platform, ["consumer"], org_id)
    page = consumer.get("/nodes")
    assert page.status_code == 200
    assert "福州市常住人口" in page.text and "福州市节点" in page.text
    assert 'action="/nodes/fuzhou/fz-residents/apply"' in page.text
    listed = consumer.get("/api/v1/nodes/catalog").json()
    assert [(r["node"], r["node_name"], r["code"]) for r in listed] == [
        ("fuzhou", "福州市节点", "fz-residents")
    ]
    assert TestClient(app).get("/api/v1/nodes/catalog").status_code == 401


@pytest.mark.browser
def test_node_pages_fit_a_phone(platform: Platform, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    org_id = _city_catalog(platform)
    with platform.factory.begin() as s:
        admin = factories.make_user(s, roles=["admin"])
        consumer = factories.make_user(s, roles=["consumer"], organization_id=org_id)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for user, path, shot in ((admin, "/admin/nodes", "nodes-registry"),
                                     (consumer, "/nodes", "nodes-catalog")):  # fmt: skip
                for size, viewport in (("phone", {"width": 375, "height": 812}),
                                       ("desk", {"width": 1280, "height": 900})):  # fmt: skip
                    context = browser.new_context(viewport=viewport)
                    page = context.new_page()
                    page.goto(f"{server}/login")
                    page.fill("#username", user.username)
                    page.fill("#password", factories.PASSWORD)
                    page.click("form.stack button[type=submit]")
                    page.wait_for_url(f"{server}/")
                    page.goto(f"{server}{path}")
                    if path == "/nodes":
                        page.click("details summary")
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= viewport["width"] + 1, (path, size, width)
                    name = f"{shot}-{size}.png"
                    page.screenshot(path=tmp_path / name, full_page=True)
                    keep(tmp_path / name)
                    context.close()
        finally:
            browser.close()


def test_the_registry_api(platform: Platform) -> None:
    app = create_app(platform)
    origin = {"Origin": platform.settings.base_url}
    admin = signed_in(app, platform, ["admin"], None)
    body = {"node_id": "xiamen", "name": "厦门市节点", "division_code": "350200",
            "public_key": "yvNKjFz-Vbc6BTF3AriCz7C5wJ28E5cbPAEBzYgK4wE",
            "base_url": "https://xm.example", "relation": "child"}  # fmt: skip
    made = admin.post("/api/v1/nodes", json=body, headers=origin)
    assert made.status_code == 201, made.text
    assert (made.json()["node_id"], made.json()["status"]) == ("xiamen", "active")
    bad = admin.post("/api/v1/nodes", json={**body, "node_id": "quanzhou", "public_key": "x"},
                     headers=origin)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["type"] == "/problems/node-key"
    assert admin.post("/api/v1/nodes", json=body, headers=origin).status_code == 409
    consumer = signed_in(app, platform, ["consumer"], None)
    refused = consumer.post("/api/v1/nodes", json={**body, "node_id": "putian"}, headers=origin)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [n["node_id"] for n in consumer.get("/api/v1/nodes").json()] == ["xiamen"]
    me = consumer.get("/api/v1/nodes/self").json()
    assert me["node_id"] == platform.settings.node_name and len(me["public_key"]) == 43
    revoked = admin.post("/api/v1/nodes/xiamen/revoke", json={"reason": "撤网"}, headers=origin)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert admin.post("/api/v1/nodes/publish", headers=origin).json() == {"sent": {}}
