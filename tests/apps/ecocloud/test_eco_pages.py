"""Eco-cloud pages and API: public air page, map data, ranking, charts, the response by forms."""

from __future__ import annotations

import itertools
import json
import re

import pyarrow as pa
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from minyun.accounts.models import User
from minyun.apps.ecocloud import ingest
from minyun.apps.ecocloud.models import Reading
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.web.app import create_app
from tests import factories
from tests.apps.ecocloud.conftest import make_city_eco_orgs

_addresses = itertools.count(1)


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


@pytest.fixture
def fuzhou_user(platform: Platform, episode_rows: pa.Table) -> User:
    """The episode ingested, and the officer on duty at Fuzhou's environment bureau."""
    with platform.factory.begin() as session:
        orgs = make_city_eco_orgs(session)
        ingest.ingest_readings(session, Principal.system(), episode_rows)
        return factories.make_user(
            session, roles=[Role.OPERATOR, Role.CONSUMER], organization=orgs["fz-eco"]
        )


def client(app: FastAPI, *, html: bool = True) -> TestClient:
    n = next(_addresses)
    accept = "text/html,application/xhtml+xml" if html else "application/json"
    return TestClient(
        app,
        headers={"Accept": accept},
        client=(f"10.88.{n // 250}.{n % 250 + 1}", 50000),
        follow_redirects=False,
    )


def csrf_of(page: Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def signed_in(app: FastAPI, user: User) -> TestClient:
    browser = client(app)
    token = csrf_of(browser.get("/login"))
    answer = browser.post(
        "/login",
        data={"username": user.username, "password": factories.PASSWORD, "csrf": token},
    )
    assert answer.status_code == 303
    return browser


def test_public_air_page_needs_no_sign_in(app: FastAPI, fuzhou_user: User) -> None:
    page = client(app).get("/air")
    assert page.status_code == 200
    assert page.text.count('class="panel eco-city"') == 9 and "福州市" in page.text
    api = client(app, html=False).get("/api/v1/eco/public/cities")
    assert api.status_code == 200 and len(api.json()) == 9


def test_the_map_needs_sign_in_and_carries_every_station(app: FastAPI, fuzhou_user: User) -> None:
    assert client(app).get("/eco").status_code == 401
    assert client(app, html=False).get("/api/v1/eco/stations").status_code == 401
    page = signed_in(app, fuzhou_user).get("/eco")
    assert page.status_code == 200
    found = re.search(r'id="eco-map-data">(.*?)</script>', page.text, re.S)
    assert found
    data = json.loads(found.group(1))
    assert len(data["stations"]) == 42 and len(data["labels"]) == 9
    assert data["labels"][0]["name"] == "厦门市"  # the smallest city places its name first
    assert data["boundaries"] == "/static/vendor/fujian.geojson"
    assert "/static/vendor/leaflet/leaflet.js" in page.text
    assert "tile" not in page.text.lower()  # no map tiles: nothing loads from the internet


def test_ranking_and_station_pages_have_chart_data(app: FastAPI, fuzhou_user: User) -> None:
    browser = signed_in(app, fuzhou_user)
    ranking = browser.get("/eco/cities?city=福州市")
    assert ranking.status_code == 200 and "eco-chart-data" in ranking.text
    station = browser.get("/eco/stations/1282A")
    assert station.status_code == 200 and "师大" in station.text
    assert browser.get("/eco/stations/NOPE").status_code == 404


def test_joint_response_through_the_pages(app: FastAPI, fuzhou_user: User) -> None:
    browser = signed_in(app, fuzhou_user)
    inbox = browser.get("/eco/alerts")
    found = re.search(r'href="/eco/alerts/(\d+)"', inbox.text)
    assert found
    url = f"/eco/alerts/{found.group(1)}"
    page = browser.get(url)
    token = csrf_of(page)
    steps = [
        ("consultation", {"departments": "xm-eco", "note": "视频会商"}),
        ("level", {"level": "yellow", "note": "重度污染"}),
        ("actions", {"note": "工地停工"}),
        ("close", {"note": "解除"}),
    ]
    for path, form in steps:
        answer = browser.post(f"{url}/{path}", data={**form, "csrf": token})
        assert answer.status_code == 303, answer.text
    final = browser.get(url)
    assert 'id="alert-state">已关闭' in final.text
    assert "黄色预警" in final.text and "工地停工" in final.text
    api = client(app, html=False)
    api.cookies = browser.cookies
    body = api.get(f"/api/v1/eco/alerts/{found.group(1)}").json()
    assert body["state"] == "closed" and body["seconds_to_response"] >= 0
    assert [s["kind"] for s in body["steps"]][-4:] == ["consultation", "level", "action", "closed"]


def test_a_step_without_csrf_token_is_refused(app: FastAPI, fuzhou_user: User) -> None:
    browser = signed_in(app, fuzhou_user)
    answer = browser.post("/eco/alerts/1/consultation", data={"departments": "xm-eco"})
    assert answer.status_code == 403


def test_readings_api_refuses_bad_input_with_reasons(app: FastAPI, fuzhou_user: User) -> None:
    browser = signed_in(app, fuzhou_user)
    api = client(app, html=False)
    api.cookies = browser.cookies
    # A change through the API with the session cookie carries the session's CSRF token.
    token = csrf_of(browser.get("/"))
    answer = api.post(
        "/api/v1/eco/readings",
        headers={"X-CSRF-Token": token},
        json=[
            {"station": "1282A", "hour": "2022-01-05T01:00:00+08:00", "pm2_5": 30, "co": 0.5},
            {"station": "1282A", "hour": "2022-01-05T02:00:00+08:00", "pm2_5": -1},
        ],
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["inserted"] == 1 and answer.json()["refused"] == 1
    letters = api.get("/api/v1/eco/dead-letters").json()
    assert letters[0]["reason"] == "negative concentration: pm2_5=-1"


def test_a_partial_hour_is_marked_on_the_pages_and_in_the_api(
    app: FastAPI, fuzhou_user: User, platform: Platform
) -> None:
    with platform.factory.begin() as session:
        latest = session.scalar(select(func.max(Reading.hour)))
        assert latest is not None
        hour = latest.isoformat()
        row = {"station_code": "1282A", "hour": hour, "pm10": 76, "pm2_5": 37, "o3": 8,
               "no2": 76, "so2": 3, "co": None}  # fmt: skip
        ingest.ingest_readings(session, Principal.system(), pa.Table.from_pylist([row]))
    browser = signed_in(app, fuzhou_user)
    page = browser.get("/eco/stations/1282A")
    assert page.status_code == 200 and "缺测：CO" in page.text
    assert "缺测：CO" in browser.get("/eco").text  # the station list
    assert 'data-missing-label="缺测：%s"' in browser.get("/eco").text  # the map's popups
    api = client(app, html=False)
    api.cookies = browser.cookies
    readings = api.get("/api/v1/eco/stations/1282A/readings?hours=1").json()
    assert readings[-1]["partial"] is True and readings[-1]["missing"] == ["CO"]
    assert readings[-1]["aqi"] is not None
    stations = {s["code"]: s for s in api.get("/api/v1/eco/stations").json()}
    assert stations["1282A"]["partial"] is True and stations["1282A"]["missing"] == ["CO"]
    assert stations["1280A"]["partial"] is False and stations["1280A"]["missing"] == []
    cities = api.get("/api/v1/eco/cities").json()
    assert all(c["missing"] == [] and c["partial"] is False for c in cities)
