"""The product page a Digital Link QR opens (consumer and supervisor), worklist, tracing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from minyun.apps.food import sample
from tests import factories
from tests.apps.food.conftest import Repo

T1 = sample.product_path(sample.TEA_T1)
# The pages add no SQL of their own: trace, risk and queries run on PostgreSQL in their tests.
BACKENDS = ("sqlite",)


@pytest.fixture
def chain(repo: Repo) -> Iterator[Repo]:
    assert repo.capture(sample.chain()).json()["success"]
    yield repo


def _sign_in(repo: Repo) -> TestClient:
    """A civil servant's browser (no data role needed to supervise food)."""
    with repo.node.factory.begin() as s:
        name = factories.make_user(s, roles=[]).username
    client = TestClient(repo.http.app, follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    r = client.post("/login", data={"username": name, "password": factories.PASSWORD,
                                    "csrf": token.group(1)})  # fmt: skip
    assert r.status_code == 303, r.text
    return client


def test_a_consumer_scanning_the_qr_sees_the_chain_without_internals(chain: Repo) -> None:
    r = chain.http.get(T1)
    assert r.status_code == 200
    page = r.text
    for name in ("安溪县感德镇茶园合作社", "泉州茶叶加工厂", "福州鼓楼超市"):
        assert name in page
    assert "12.5" in page  # the truck's warmest reading, above 8 °C
    assert "eventID" not in page and "urn:epc" not in page and "ni:///" not in page
    api = chain.http.get(f"/api/v1/food/products{T1}").json()
    assert api["view"] == "public" and "events" not in api
    assert api["cold_chain"]["break"] is True and api["cold_chain"]["max"] == 12.5


def test_a_supervisor_sees_every_event_and_the_businesses_risk(chain: Repo) -> None:
    browser = _sign_in(chain)
    r = browser.get(T1)
    assert r.status_code == 200
    assert "ni:///sha-256;" in r.text and "/food/trace?id=" in r.text
    assert "福建省市场监督管理局" in r.text  # the capturing business, with its risk


def test_an_unknown_product_or_a_bad_code_is_not_found(chain: Repo) -> None:
    assert chain.http.get("/01/06901234543216/10/NOPE").status_code == 404
    assert chain.http.get("/01/06901234543217/10/T1").status_code == 404  # check digit


def test_worklist_and_trace_pages_are_for_supervisors(chain: Repo) -> None:
    assert chain.http.get("/food", headers={"accept": "text/html"}).status_code in (401, 403)
    browser = _sign_in(chain)
    assert "福建省市场监督管理局" in browser.get("/food").text
    r = browser.get("/food/trace", params={"id": sample.LEAF_B1, "direction": "forward"})
    assert r.status_code == 200 and "莆田城厢便利店" in r.text
