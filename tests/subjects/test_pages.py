"""The subject pages without data: the search form, the empty queue, a file-less account."""

from __future__ import annotations

from fastapi import FastAPI

from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.web.test_pages import browser, make_user, sign_in


def _app(platform: Platform) -> FastAPI:
    return create_app(platform)


def test_pages_answer_for_staff_and_citizens(platform: Platform) -> None:
    app = _app(platform)
    admin = make_user(platform, roles=["admin"])
    client = browser(app)
    sign_in(client, admin.username)
    home = client.get("/subjects")
    assert home.status_code == 200 and "一人一档" in home.text and "/subjects/reviews" in home.text
    assert client.get("/subjects/reviews").status_code == 200
    assert "暂无待裁定" in client.get("/subjects/reviews").text
    assert client.get("/subjects/P0000000001").status_code == 404
    jump = client.get("/subjects", params={"q": "p0000000001"}, follow_redirects=False)
    assert jump.status_code == 303 and jump.headers["location"] == "/subjects/P0000000001"
    assert client.get("/subjects/me").status_code == 200  # no file: a message, not an error
    clerk = make_user(platform, roles=["consumer"])
    other = browser(app)
    sign_in(other, clerk.username)
    assert other.get("/subjects").status_code == 200
    assert other.get("/subjects/reviews").status_code == 403
    citizen = make_user(platform, kind="citizen", ric="350102199003071234", organization_id=None)
    mine = browser(app)
    sign_in(mine, citizen.username)
    assert mine.get("/subjects").status_code == 403  # files of others are for civil servants
    page = mine.get("/subjects/me")
    assert page.status_code == 200 and "尚无部门记录" in page.text
