"""The portal's pages over HTTP: anonymous browsing, a conditional dataset, the key page."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.opendata import kit
from tests.query.test_query_api import signed_in

HTML = {"accept": "text/html"}


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_anonymous_portal_and_a_developer_makes_and_revokes_a_key(platform: Platform) -> None:
    with platform.factory.begin() as s:
        kit.portal(s, platform.lake)
    app = create_app(platform)
    anonymous = TestClient(app)
    page = anonymous.get("/opendata?q=企业&domain=market-regulation", headers=HTML)
    assert page.status_code == 200 and "福州市企业登记信息" in page.text
    one = anonymous.get("/opendata/datasets/ents", headers=HTML)
    assert one.status_code == 200 and 'id="od-preview"' in one.text
    cond = anonymous.get("/opendata/datasets/cond", headers=HTML)
    assert (
        cond.status_code == 200 and 'id="od-apply"' in cond.text and "od-preview" not in cond.text
    )
    assert anonymous.get("/opendata/datasets/nothing", headers=HTML).status_code == 404
    assert "/login?next=/opendata/developer" in anonymous.get("/opendata/developer").text

    client = signed_in(app, platform, [], None)
    form = client.get("/opendata/developer")
    made = client.post("/opendata/developer/keys", data={"csrf": _csrf(form.text), "name": "脚本"})
    secret = re.search(r"odk_[0-9a-f]{12}\.[\w-]+", made.text)
    assert made.status_code == 200 and secret is not None
    refused = client.post("/opendata/developer/keys", data={"csrf": _csrf(made.text), "name": " "})
    assert refused.status_code == 422 and 'id="key-error"' in refused.text
    prefix = secret.group(0)[4:16]
    revoked = client.post(
        f"/opendata/developer/keys/{prefix}/revoke", data={"csrf": _csrf(made.text)}
    )
    assert revoked.status_code == 200 and "state-revoked" in revoked.text
    forged = client.post("/opendata/developer/keys", data={"csrf": "forged", "name": "x"})
    assert forged.status_code == 403
