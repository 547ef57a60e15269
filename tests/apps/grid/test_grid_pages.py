"""End to end through the pages: a citizen reports with a photo, three departments accept and
close with photos, the reporter's page shows the timeline and the statistics count it."""

from __future__ import annotations

import itertools
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from minyun.accounts.models import AccountKind
from minyun.apps.grid import service
from minyun.apps.grid.models import Report, Task
from minyun.core import events
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests import factories
from tests.apps.grid.conftest import DONGJIEKOU, SYSTEM, jpeg, org

_addresses = itertools.count(1)


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    with platform.factory.begin() as session:
        service.load_gulou(session, SYSTEM)
    return create_app(platform)


def browser(app: FastAPI) -> TestClient:
    n = next(_addresses)
    return TestClient(app, headers={"Accept": "text/html,application/xhtml+xml"},
                      client=(f"10.91.{n // 250}.{n % 250 + 1}", 50000), follow_redirects=False)  # fmt: skip


def csrf_of(page: Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def signed_in(app: FastAPI, username: str) -> TestClient:
    client = browser(app)
    token = csrf_of(client.get("/login"))
    answer = client.post("/login", data={"username": username, "password": factories.PASSWORD,
                                         "csrf": token})  # fmt: skip
    assert answer.status_code == 303, answer.text[:300]
    return client


def test_report_with_photo_reaches_three_departments_who_close_it(
    platform: Platform, app: FastAPI
) -> None:
    with platform.factory.begin() as session:
        factories.make_user(session, username="citizen1", kind=AccountKind.CITIZEN,
                            organization=None, organization_id=None,
                            ric=factories.identifiers.make_ric("350102", __import__("datetime").date(1990, 1, 2), 7))  # fmt: skip
        for code in ("gl-traffic", "gl-fire", "gl-housing"):
            factories.make_user(
                session, username=f"officer-{code}", organization=org(session, code)
            )
        head = events.head(session)
    citizen = signed_in(app, "citizen1")
    form = citizen.get("/grid/report")
    assert form.status_code == 200 and "占用消防通道" in form.text
    filed = citizen.post(
        "/grid/report",
        data={"csrf": csrf_of(form), "service_code": "fire-lane", "description": "消防通道被堵",
              "attribute[BLOCKING]": "full"},
        files={"photo": ("fire-lane.jpg", jpeg(gps=DONGJIEKOU), "image/jpeg")},
    )  # fmt: skip
    assert filed.status_code == 303, filed.text[:2000]
    report_url = filed.headers["location"]
    with platform.factory() as session:
        report = session.scalars(select(Report)).one()
        assert report.street_code == "350102004"  # placed by the photo's own location
        tasks = {t.org_id: t.id for t in report.tasks}
        routed = [
            e for e in events.read_after(session, head, limit=50) if e.kind == "grid.report.routed"
        ]
        assert sorted(routed[0].data["departments"]) == ["gl-fire", "gl-housing", "gl-traffic"]
        org_ids = {code: org(session, code).id for code in ("gl-traffic", "gl-fire", "gl-housing")}

    for code, org_id in org_ids.items():
        officer = signed_in(app, f"officer-{code}")
        work = officer.get("/grid/work")
        assert work.status_code == 200 and report_url in work.text
        page = officer.get(report_url)
        accepted = officer.post(f"/grid/tasks/{tasks[org_id]}/accept", data={"csrf": csrf_of(page)})
        assert accepted.status_code == 303
        no_photo = officer.post(f"/grid/tasks/{tasks[org_id]}/close",
                                data={"csrf": csrf_of(page), "note": "已清理"})  # fmt: skip
        assert no_photo.status_code == 422 and "照片" in no_photo.text
        closed = officer.post(f"/grid/tasks/{tasks[org_id]}/close",
                              data={"csrf": csrf_of(page), "note": "已清理通道"},
                              files={"photo": ("done.jpg", jpeg(), "image/jpeg")})  # fmt: skip
        assert closed.status_code == 303

    timeline = citizen.get(report_url)
    assert timeline.status_code == 200
    assert timeline.text.count("grid-step-closed") == 3 and "grid-step-resolved" in timeline.text
    assert "福州市鼓楼区消防救援大队" in timeline.text and "已清理通道" in timeline.text
    assert timeline.text.count(".thumb.jpg") == 4
    photo_page = re.search(r'href="(/grid/photos/\d+)"', timeline.text)
    assert photo_page and citizen.get(photo_page.group(1)).status_code == 200
    assert citizen.get("/grid").status_code in (401, 403)  # statistics are for civil servants

    officer = signed_in(app, "officer-gl-fire")
    overview = officer.get("/grid")
    assert overview.status_code == 200
    figures = re.search(r'id="grid-figures".*?</section>', overview.text, re.S)
    assert figures and re.findall(r'class="figure">(\d+)<', figures.group(0)) == ["1", "0", "1"]
    assert "占用消防通道" in overview.text


def test_a_refused_report_comes_back_with_what_was_typed(platform: Platform, app: FastAPI) -> None:
    with platform.factory.begin() as session:
        factories.make_user(session, username="worker1", organization=org(session, "gl-st-004"))
    worker = signed_in(app, "worker1")
    form = worker.get("/grid/report")
    answer = worker.post("/grid/report", data={"csrf": csrf_of(form), "service_code": "garbage",
                                               "description": "门口垃圾没人清"})  # fmt: skip
    assert answer.status_code == 422
    assert "门口垃圾没人清" in answer.text and "位置" in answer.text
    bad_photo = worker.post("/grid/report", data={"csrf": csrf_of(form), "service_code": "garbage",
                                                  "lat": "26.0853", "long": "119.3006"},
                            files={"photo": ("x.jpg", b"not a photo", "image/jpeg")})  # fmt: skip
    assert bad_photo.status_code == 422
    with platform.factory() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 0
        assert session.scalar(select(func.count()).select_from(Task)) == 0
    assert browser(app).get("/grid/report").status_code == 303  # sign in first


def test_the_street_office_reroutes_from_the_report_page(platform: Platform, app: FastAPI) -> None:
    with platform.factory.begin() as session:
        office = factories.make_user(
            session, username="jiedao1", organization=org(session, "gl-st-004")
        )
        service.assign_worker(session, SYSTEM, "35010200400101", office.id)
        other = factories.make_user(
            session, username="jiedao2", organization=org(session, "gl-st-001")
        )
        del other
    clerk = signed_in(app, "jiedao1")
    form = clerk.get("/grid/report")
    filed = clerk.post("/grid/report", data={"csrf": csrf_of(form), "service_code": "garbage",
                                             "lat": "26.0800", "long": "119.2960"})  # fmt: skip
    assert filed.status_code == 303
    page = clerk.get(filed.headers["location"])
    assert "reroute-form" in page.text and "网格员" in page.text
    report_id = filed.headers["location"].rsplit("/", 1)[1]
    moved = clerk.post(f"/grid/reports/{report_id}/reroute",
                       data={"csrf": csrf_of(page), "add": "gl-housing", "remove": "gl-urban"})  # fmt: skip
    assert moved.status_code == 303
    after = clerk.get(filed.headers["location"]).text
    assert "grid-step-withdrawn" in after and "住房和城乡建设局" in after
    stranger = signed_in(app, "jiedao2")
    seen = stranger.get(filed.headers["location"])
    assert "reroute-form" not in seen.text
    refused = stranger.post(f"/grid/reports/{report_id}/reroute",
                            data={"csrf": csrf_of(seen), "add": "gl-fire"})  # fmt: skip
    assert refused.status_code == 404  # another street's office: as if the report were not there
