"""The air map's server side: stations outside their city, label places, and whose findings an
officer sees; the demo's alert from the real day."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy.orm import Session

from minyun.apps.ecocloud import geo, response, views
from minyun.apps.ecocloud.models import Anomaly, DeadLetter, Station
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.demo import province
from tests import factories

SQUARE = {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]]}
# A square city with a square hole (a county of another city inside it).
HOLED = {
    "type": "Polygon",
    "coordinates": [[[2, 0], [4, 0], [4, 2], [2, 2], [2, 0]], [[2.5, 0.5], [3.5, 0.5], [3.5, 1.5], [2.5, 1.5], [2.5, 0.5]]],
}  # fmt: skip
COLLECTION = {
    "features": [
        {"properties": {"level": "city", "code": "1", "name": "A市"}, "geometry": SQUARE},
        {"properties": {"level": "county", "code": "11", "city": "1", "name": "a"}, "geometry": SQUARE},
        {"properties": {"level": "city", "code": "2", "name": "B市"}, "geometry": HOLED},
        {"properties": {"level": "county", "code": "21", "city": "2", "name": "b"}, "geometry": HOLED},
    ]
}  # fmt: skip


def test_point_in_polygon_follows_rings_and_holes() -> None:
    shapes = geo.shapes_from(COLLECTION)
    lon = np.array([0.5, 1.5, 3.0, 2.2])
    lat = np.array([0.5, 0.5, 1.0, 1.0])
    assert geo.inside(shapes["A市"], lon, lat).tolist() == [True, False, False, False]
    assert geo.inside(shapes["B市"], lon, lat).tolist() == [False, False, False, True]


def test_a_station_far_outside_its_city_is_flagged_one_near_its_edge_is_not() -> None:
    shapes = geo.shapes_from(COLLECTION)
    flagged = geo.outside_their_city(
        shapes,
        ["A市", "A市", "A市", "C市"],
        [0.5, 1.01, 3.0, 50.0],  # inside; 1 km off the edge; far off; a city without outline
        [0.5, 0.5, 0.5, 50.0],
    )
    assert flagged == [False, False, True, False]


def test_label_places_are_inside_the_city_and_away_from_its_stations() -> None:
    shapes = geo.shapes_from(COLLECTION)
    spots = geo.label_spots(shapes, [0.2], [0.2], step=0.1)
    assert [s["name"] for s in spots] == ["A市", "B市"]  # the smaller city first
    lat, lon = spots[0]["spots"][0]
    assert 0 < lon < 1 and 0 < lat < 1 and (lon - 0.2) ** 2 + (lat - 0.2) ** 2 > 0.3


@pytest.fixture
def demo_day(platform: Platform) -> Platform:
    with platform.factory.begin() as session:
        province.load_departments(session)
        province.ingest_air_day(session)
    return platform


def _officer(session: Session, org_code: str) -> Principal:
    from minyun.accounts.service import principal_for
    from minyun.orgs.service import get_organization

    user = factories.make_user(
        session, roles=[Role.STEWARD], organization=get_organization(session, org_code)
    )
    return principal_for(user)


def test_the_demo_day_flags_the_zhangzhou_station_in_guangdong(demo_day: Platform) -> None:
    with demo_day.factory.begin() as session:
        stations = views.station_map(session, Principal.system())
    assert [s.code for s in stations if s.outside_city] == ["3216A"]


def test_the_demo_plants_alerts_and_each_officer_sees_their_citys(demo_day: Platform) -> None:
    with demo_day.factory.begin() as session:
        every = response.list_alerts(session, Principal.system())
        assert len(every) == 2 and all(a.threshold == 75 for a in every)
        zhangzhou = _officer(session, "zz-eco")
        fuzhou = _officer(session, "fz-eco")
        provincial = _officer(session, "fj-eco")
        assert [a.cities for a in response.list_alerts(session, zhangzhou)] == [
            ["漳州市", "龙岩市"]
        ]
        assert response.list_alerts(session, fuzhou) == []
        assert len(response.list_alerts(session, provincial)) == 2
        # Findings too: Fuzhou's officer sees Fuzhou's stations' anomalies and dead letters only.
        session.add_all(
            [
                Anomaly(rule="jump", station_code=code, hour=every[0].start_hour, value=1,
                        detail="test", detected_at=every[0].detected_at)
                for code in ("1282A", "2075A")
            ]
        )  # fmt: skip
        session.add_all(
            [
                DeadLetter(payload=json.dumps({"station_code": code}), reason="test",
                           source="file", received_at=every[0].detected_at)
                for code in ("1282A", "2075A")
            ]
        )  # fmt: skip
        session.flush()
        fuzhou_codes = {s.code for s in session.query(Station).filter(Station.city == "福州市")}
        assert {a.station_code for a in views.anomalies(session, fuzhou)} == {"1282A"}
        assert {a.station_code for a in views.anomalies(session, fuzhou)} <= fuzhou_codes
        assert {a.station_code for a in views.anomalies(session, provincial)} >= {"1282A", "2075A"}
        letters = [
            json.loads(d.payload).get("station_code") for d in views.dead_letters(session, fuzhou)
        ]
        assert letters == ["1282A"]
        assert len(views.dead_letters(session, Principal.system())) >= 3  # the day's own too
