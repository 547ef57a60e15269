"""Grids, placement, photos, routing, work and escalation through the service."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.apps.grid import geo, layout, photos, service, stats
from minyun.apps.grid.models import Area, Report, ReportState, Task, TaskState
from minyun.apps.grid.photos import PhotoStore
from minyun.apps.grid.service import NewReport
from minyun.core import clock, events
from minyun.core.audit import AuditRecord
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from minyun.core.security import Principal
from tests.apps.grid.conftest import DONGJIEKOU, SYSTEM, jpeg, officer


def test_gulou_has_its_real_streets_and_every_grid_a_polygon(gulou: Session) -> None:
    streets = {a.name for a in service.areas(gulou, "street")}
    assert {"鼓东街道", "鼓西街道", "东街街道", "南街街道", "温泉街道", "洪山镇"} <= streets
    grids = service.areas(gulou, "grid")
    assert len(grids) == 116
    assert all(g.geometry["type"] == "Polygon" for g in grids)
    assert service.load_gulou(gulou, SYSTEM) == 0  # a second run adds nothing


def test_a_point_is_placed_in_grid_community_street_and_district(
    sqlite_only: None, gulou: Session
) -> None:
    place = geo.locate(gulou, *DONGJIEKOU, district_code=layout.DISTRICT)
    assert place.street_name == "东街街道" and place.street_code == "350102004"
    assert place.community_code is not None and place.community_code.startswith("350102004")
    assert place.grid_code is not None and place.grid_code.startswith(place.community_code)
    assert place.district_code == "350102"
    west_lake = geo.locate(gulou, 26.095, 119.287, district_code=layout.DISTRICT)
    assert west_lake.street_name == "鼓西街道"
    nowhere = geo.locate(gulou, 26.2, 119.5, district_code=layout.DISTRICT)
    assert nowhere.grid_code is None


def test_photo_location_is_read_and_stripped() -> None:
    data = jpeg(gps=DONGJIEKOU)
    assert Image.open(__import__("io").BytesIO(data)).getexif().get_ifd(0x8825)
    done = photos.process(data)
    assert done.lat == pytest.approx(DONGJIEKOU[0], abs=1e-4)
    assert done.long == pytest.approx(DONGJIEKOU[1], abs=1e-4)
    stored = Image.open(__import__("io").BytesIO(done.jpeg))
    assert dict(stored.getexif()) == {}
    assert b"TestCam" not in done.jpeg and b"GPS" not in done.jpeg
    thumb = Image.open(__import__("io").BytesIO(done.thumb))
    assert max(thumb.size) <= photos.THUMB_SIDE


def test_a_turned_photo_is_stored_upright_and_a_comment_is_dropped() -> None:
    image = Image.new("RGB", (300, 100), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, comment=b"secret note")
    done = photos.process(out.getvalue())
    assert (done.width, done.height) == (100, 300)
    assert b"secret note" not in done.jpeg and b"secret note" not in done.thumb


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"<html>not an image</html>", "photo-type"),
        (b"GIF89a" + b"\0" * 100, "photo-type"),
        (b"\xff" * (photos.MAX_BYTES + 1), "photo-too-large"),
        (b"", "photo-empty"),
    ],
)
def test_bad_photos_are_refused(data: bytes, code: str) -> None:
    with pytest.raises(Invalid) as caught:
        photos.process(data)
    assert caught.value.code == code


def test_a_gif_is_refused_even_when_pillow_reads_it() -> None:
    out = __import__("io").BytesIO()
    Image.new("RGB", (10, 10)).save(out, "GIF")
    with pytest.raises(Invalid) as caught:
        photos.process(out.getvalue())
    assert caught.value.code == "photo-type"


def test_fire_lane_report_reaches_three_departments_and_closes(
    gulou: Session, store: PhotoStore
) -> None:
    worker = officer(gulou, "gl-st-004")
    head = events.head(gulou)
    report = service.file_report(
        gulou, worker, store,
        NewReport("fire-lane", "小区消防通道被私家车堵住", attributes={"BLOCKING": ["full"]},
                  photos=[jpeg(gps=DONGJIEKOU)]),
    )  # fmt: skip
    assert report.street_code == "350102004" and report.lat == pytest.approx(DONGJIEKOU[0], 1e-4)
    routed = sorted(t.org_id for t in report.tasks)
    assert len(routed) == 3
    routed_events = events.read_after(gulou, head, limit=10)
    assert [e.kind for e in routed_events] == ["grid.report.routed"]
    assert sorted(routed_events[0].data["departments"]) == ["gl-fire", "gl-housing", "gl-traffic"]
    assert stats.summary(gulou, SYSTEM).by_category[0].arrive_minutes is None  # nobody there yet
    for task in list(report.tasks):
        dept = officer(gulou, _code_of(gulou, task.org_id))
        service.accept_task(gulou, dept, task.id)
        assert report.state == ReportState.IN_PROGRESS
        service.close_task(gulou, dept, store, task.id, note="已处置", photo=jpeg())
    assert report.state == ReportState.CLOSED and report.closed_at is not None
    kinds = [s.kind for s in report.steps]
    assert kinds[:4] == ["reported", "routed", "routed", "routed"]
    assert kinds.count("accepted") == 3 and kinds.count("closed") == 3 and kinds[-1] == "resolved"
    assert [p.kind for p in report.photos] == ["report", "result", "result", "result"]
    assert all(store.exists(p.key) for p in report.photos)
    numbers = stats.summary(gulou, SYSTEM)
    assert (numbers.reports, numbers.closed_reports) == (1, 1)
    [category] = numbers.by_category
    assert (category.name, category.tasks, category.closed, category.overdue) == (
        "占用消防通道",
        3,
        3,
        0,
    )
    assert category.arrive_minutes is not None and category.close_minutes is not None
    assert {r.name for r in numbers.by_street} == {"东街街道"}
    assert len(numbers.by_department) == 3
    last = events.read_after(gulou, head, limit=20)
    assert last[-1].kind == "grid.report.closed"
    actions = set(
        gulou.scalars(select(AuditRecord.action).where(AuditRecord.object_id == str(report.id)))
    )
    assert {"grid.report", "grid.accept", "grid.close"} <= actions


def _code_of(session: Session, org_id: int) -> str:
    from minyun.orgs.models import Organization

    found = session.get(Organization, org_id)
    assert found is not None
    return found.code


def test_another_department_cannot_touch_a_task(gulou: Session, store: PhotoStore) -> None:
    worker = officer(gulou, "gl-st-004")
    report = service.file_report(
        gulou, worker, store, NewReport("illegal-parking", "人行道停车", *DONGJIEKOU)
    )
    outsider = officer(gulou, "gl-fire")
    with pytest.raises(NotFound):
        service.accept_task(gulou, outsider, report.tasks[0].id)
    owner = officer(gulou, "gl-traffic")
    with pytest.raises(Conflict):
        service.close_task(gulou, owner, store, report.tasks[0].id, note="x", photo=jpeg())


@pytest.mark.parametrize(
    ("new", "code"),
    [
        (NewReport("no-such", "x", *DONGJIEKOU), "unknown-service"),
        (NewReport("fire-lane", "x", attributes={"BLOCKING": ["full"]}), "location-missing"),
        (NewReport("fire-lane", "x", 39.9, 116.4, attributes={"BLOCKING": ["full"]}),
         "location-outside"),
        (NewReport("fire-lane", "x", 24.48, 118.09, attributes={"BLOCKING": ["full"]}),
         "location-ungridded"),
        (NewReport("fire-lane", "x", *DONGJIEKOU), "attribute-required"),
        (NewReport("fire-lane", "x", *DONGJIEKOU, attributes={"BLOCKING": ["maybe"]}),
         "attribute-value"),
        (NewReport("garbage", "<script>alert(1)</script>", *DONGJIEKOU), "markup"),
        (NewReport("garbage", "x", *DONGJIEKOU, photos=[b"not an image"]), "photo-type"),
    ],
)  # fmt: skip
def test_bad_reports_are_refused_and_nothing_is_stored(
    sqlite_only: None, gulou: Session, store: PhotoStore, new: NewReport, code: str
) -> None:
    worker = officer(gulou, "gl-st-004")
    with pytest.raises((Invalid, NotFound)) as caught:
        service.file_report(gulou, worker, store, new)
    assert caught.value.code == code
    assert gulou.scalar(select(func.count()).select_from(Report)) == 0


def test_anonymous_cannot_report(sqlite_only: None, gulou: Session, store: PhotoStore) -> None:
    with pytest.raises(Unauthenticated):
        service.file_report(gulou, Principal.anonymous(), store,
                            NewReport("garbage", "x", *DONGJIEKOU))  # fmt: skip


def test_street_office_reroutes_and_overdue_tasks_escalate(
    gulou: Session, store: PhotoStore
) -> None:
    worker = officer(gulou, "gl-st-004")
    report = service.file_report(gulou, worker, store, NewReport("garbage", "垃圾", *DONGJIEKOU))
    other_office = officer(gulou, "gl-st-001")
    with pytest.raises(NotFound):
        service.reroute(gulou, other_office, report.id, add=["gl-housing"])
    service.reroute(
        gulou, worker, report.id, add=["gl-housing"], remove=["gl-urban"], note="转房管"
    )
    live = [t for t in report.tasks if t.state != TaskState.WITHDRAWN]
    assert [_code_of(gulou, t.org_id) for t in live] == ["gl-housing"]
    later = clock.now() + timedelta(hours=2)
    assert service.escalate_overdue(gulou, SYSTEM, now=later) == 1
    assert live[0].escalation == 1
    assert service.escalate_overdue(gulou, SYSTEM, now=later) == 0
    assert service.escalate_overdue(gulou, SYSTEM, now=clock.now() + timedelta(days=3)) == 1
    assert live[0].escalation == 2
    assert gulou.scalar(select(func.count()).select_from(Task)) == 2
    assert report.steps[-1].kind == "escalated"


def test_location_comes_from_the_photo_when_none_is_given(
    gulou: Session, store: PhotoStore
) -> None:
    worker = officer(gulou, "gl-st-004")
    report = service.file_report(gulou, worker, store,
                                 NewReport("garbage", "垃圾", photos=[jpeg(gps=(26.095, 119.287))]))  # fmt: skip
    area = gulou.get(Area, report.street_code)
    assert area is not None and area.name == "鼓西街道"
    assert report.photos[0].had_location


def test_departments_read_the_report_events_and_citizens_do_not(
    gulou: Session, store: PhotoStore
) -> None:
    from minyun.push.service import read_events

    head = events.head(gulou)
    service.file_report(gulou, officer(gulou, "gl-st-004"), store,
                        NewReport("garbage", "垃圾", *DONGJIEKOU))  # fmt: skip
    page = read_events(gulou, officer(gulou, "gl-urban"), after=head)
    assert [e.kind for e in page.events] == ["grid.report.routed"]
    assert page.events[0].data["departments"] == ["gl-urban"]
    citizen = Principal(kind="user", name="citizen", user_id=None, account_kind="citizen")
    with pytest.raises(Forbidden):
        read_events(gulou, citizen, after=head)
