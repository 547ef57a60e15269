"""Open311 GeoReport v2 as an existing client sees it: a plain HTTP client on a served node.

Every call in XML and JSON; the documents carry the fields of the specification's examples
(tests/data/open311, copied from shared/data/standards); errors are the spec's error list.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import pytest
from sqlalchemy import func, select

from minyun.apps.grid import apikeys, service
from minyun.apps.grid.models import ApiKey, Report
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.apps.grid.conftest import DONGJIEKOU, SYSTEM, jpeg
from tests.browser import serve
from tests.conftest import make_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "open311"
ROOT = "/open311/v2"
_keys = itertools.count(1)


def example_keys(name: str) -> set[str]:
    """The field names of one of the specification's example documents."""
    text = (EXAMPLES / f"georeport_v2_example_{name}.json").read_text()
    return set(re.findall(r'"(\w+)"\s*:', text))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, str]]:
    """One served node for the module, Gulou set up (tests stay apart by their own reports)."""
    platform = Platform.open(make_settings(tmp_path_factory.mktemp("open311") / "var"))
    platform.migrate()
    with platform.factory.begin() as session:
        service.load_gulou(session, SYSTEM)
    try:
        with serve(create_app(platform)) as base:
            yield platform, base
    finally:
        platform.close()


@pytest.fixture
def platform(served: tuple[Platform, str]) -> Platform:
    return served[0]


@pytest.fixture
def node(served: tuple[Platform, str]) -> tuple[str, str]:
    """The served node and a fresh api_key of its own: (base URL, key)."""
    platform, base = served
    with platform.factory.begin() as session:
        key = apikeys.create_key(session, SYSTEM, f"client-{next(_keys)}").key
    return base, key


def xml(response: httpx.Response) -> ET.Element:
    assert response.headers["content-type"].startswith("text/xml")
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(response.content)


def post(base: str, fmt: str, **form: str) -> httpx.Response:
    return httpx.post(f"{base}{ROOT}/requests.{fmt}", data=form, timeout=10)


FIRE_LANE = {
    "service_code": "fire-lane",
    "lat": str(DONGJIEKOU[0]),
    "long": str(DONGJIEKOU[1]),
    "description": "消防通道被堵",
    "attribute[BLOCKING]": "full",
    "email": "reporter@example.cn",
}


def test_discovery_services_and_definitions_in_both_formats(node: tuple[str, str]) -> None:
    base, _key = node
    found = httpx.get(f"{base}{ROOT}/discovery.json").json()
    endpoint = found["endpoints"][0]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"].endswith(ROOT) and "text/xml" in endpoint["formats"]
    root = xml(httpx.get(f"{base}{ROOT}/discovery.xml"))
    assert root.tag == "discovery" and root.find("endpoints/endpoint/formats/format") is not None

    services = httpx.get(f"{base}{ROOT}/services.json").json()
    assert set(services[0]) == example_keys("service-list")
    fire = next(s for s in services if s["service_code"] == "fire-lane")
    assert fire["metadata"] is True and fire["type"] == "realtime"
    root = xml(httpx.get(f"{base}{ROOT}/services.xml", params={"jurisdiction_id": "350102"}))
    assert root.tag == "services"
    assert {e.findtext("service_code") for e in root.findall("service")} >= {"fire-lane"}

    definition = httpx.get(f"{base}{ROOT}/services/fire-lane.json").json()
    assert set(definition) == {"service_code", "attributes"}
    attribute = definition["attributes"][0]
    assert set(attribute) == example_keys("service-definition") - {"service_code", "attributes",
                                                                    "key", "name"}  # fmt: skip
    assert attribute["code"] == "BLOCKING" and attribute["required"] is True
    root = xml(httpx.get(f"{base}{ROOT}/services/fire-lane.xml"))
    assert root.tag == "service_definition"
    assert root.findtext("attributes/attribute/values/value/key") == "full"


def test_post_then_get_the_request_by_id_and_token(node: tuple[str, str]) -> None:
    base, key = node
    created = post(base, "json", api_key=key, **FIRE_LANE)
    assert created.status_code == 200, created.text
    entry = created.json()[0]
    assert set(entry) >= example_keys("service-request-post")
    request_id = entry["service_request_id"]

    one = httpx.get(f"{base}{ROOT}/requests/{request_id}.json").json()
    assert len(one) == 1 and set(one[0]) == example_keys("service-request")
    assert one[0]["status"] == "open" and one[0]["service_code"] == "fire-lane"
    assert "交通警察" in one[0]["agency_responsible"] and "消防" in one[0]["agency_responsible"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", one[0]["requested_datetime"])
    assert "reporter@example.cn" not in httpx.get(f"{base}{ROOT}/requests/{request_id}.json").text

    root = xml(httpx.get(f"{base}{ROOT}/requests/{request_id}.xml"))
    assert root.tag == "service_requests" and root.findtext("request/service_request_id") == str(
        request_id
    )

    by_token = httpx.get(f"{base}{ROOT}/tokens/{entry['token']}.json").json()
    assert by_token == [{"service_request_id": request_id, "token": entry["token"]}]
    assert set(by_token[0]) == example_keys("request-from-token")
    root = xml(httpx.get(f"{base}{ROOT}/tokens/{entry['token']}.xml"))
    assert root.findtext("request/service_request_id") == str(request_id)

    created_xml = xml(post(base, "xml", api_key=key, **{**FIRE_LANE, "service_code": "garbage",
                                                      "attribute[BLOCKING]": ""}))  # fmt: skip
    assert created_xml.tag == "service_requests"
    second = created_xml.findtext("request/service_request_id")
    assert second is not None and int(second) > request_id


def test_get_requests_with_every_filter(node: tuple[str, str]) -> None:
    base, key = node
    since = datetime.now(UTC)
    first = post(base, "json", api_key=key, **FIRE_LANE).json()[0]["service_request_id"]
    garbage = {k: v for k, v in FIRE_LANE.items() if k != "attribute[BLOCKING]"}
    second = post(base, "json", api_key=key, **{**garbage, "service_code": "garbage"}).json()[0][
        "service_request_id"
    ]
    url = f"{base}{ROOT}/requests.json"
    mine = {"start_date": since.isoformat()}

    def ids(**params: str) -> list[int]:
        return [r["service_request_id"] for r in httpx.get(url, params={**mine, **params}).json()]

    everything = httpx.get(url).json()
    assert [r["service_request_id"] for r in everything][:2] == [second, first]  # newest first
    assert set(everything[0]) == example_keys("service-requests")
    assert ids() == [second, first]
    assert ids(service_code="garbage") == [second]
    assert ids(service_code="garbage,fire-lane") == [second, first]
    both = httpx.get(url, params={"service_request_id": f"{first}", "service_code": "garbage"})
    assert [r["service_request_id"] for r in both.json()] == [first]  # ids override the rest
    assert ids(status="closed") == []
    assert ids(status="open,closed") == [second, first]
    assert ids(status="open") == [second, first]
    assert httpx.get(url, params={"start_date": "2099-01-01T00:00:00Z"}).json() == []
    assert httpx.get(url, params={"end_date": "2000-01-01T00:00:00+08:00"}).json() == []
    assert ids(end_date="2099-01-01T00:00:00Z") == [second, first]
    root = xml(httpx.get(f"{base}{ROOT}/requests.xml", params={**mine, "status": "open"}))
    assert [int(e.findtext("service_request_id") or 0) for e in root.findall("request")] == [
        second,
        first,
    ]
    bad = httpx.get(url, params={"start_date": "yesterday"})
    assert bad.status_code == 400 and bad.json()[0]["code"] == 400
    unknown = httpx.get(url, params={"status": "lost"})
    assert unknown.status_code == 400


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_errors_are_the_spec_error_list(
    node: tuple[str, str], fmt: str, platform: Platform
) -> None:
    base, key = node
    with platform.factory() as session:
        before = session.scalar(select(func.count()).select_from(Report))

    def errors(response: httpx.Response) -> list[tuple[int, str]]:
        if fmt == "json":
            body = response.json()
            assert set(body[0]) == example_keys("errors")
            return [(e["code"], e["description"]) for e in body]
        root = xml(response)
        assert root.tag == "errors"
        return [(int(e.findtext("code") or 0), e.findtext("description") or "")
                for e in root.findall("error")]  # fmt: skip

    cases = [
        (post(base, fmt, **FIRE_LANE), 403),
        (post(base, fmt, api_key="o311_wrong", **FIRE_LANE), 403),
        (post(base, fmt, api_key=key, **{**FIRE_LANE, "service_code": "nope"}), 404),
        (post(base, fmt, api_key=key, **{k: v for k, v in FIRE_LANE.items() if k not in ("lat", "long")}), 400),
        (post(base, fmt, api_key=key, **{**FIRE_LANE, "lat": "39.9", "long": "116.4"}), 400),
        (post(base, fmt, api_key=key, **{**FIRE_LANE, "attribute[BLOCKING]": ""}), 400),
        (post(base, fmt, api_key=key, **{**FIRE_LANE, "description": "<b>hi</b>"}), 400),
        (post(base, fmt, api_key=key, **{**FIRE_LANE, "jurisdiction_id": "310000"}), 404),
        (httpx.get(f"{base}{ROOT}/services/nope.{fmt}"), 404),
        (httpx.get(f"{base}{ROOT}/requests/999999.{fmt}"), 404),
        (httpx.get(f"{base}{ROOT}/tokens/nope.{fmt}"), 404),
        (httpx.get(f"{base}{ROOT}/services.{fmt}", params={"jurisdiction_id": "x"}), 404),
        (post(base, fmt, api_key=key, **{**FIRE_LANE, "address_string": "<a href=x>here</a>"}), 400),
        (httpx.post(f"{base}{ROOT}/requests.{fmt}", data={**FIRE_LANE, "api_key": key},
                    files={"media": ("p.jpg", b"<html>not a photo</html>", "image/jpeg")}), 400),
        (httpx.post(f"{base}{ROOT}/requests.{fmt}", data={**FIRE_LANE, "api_key": key},
                    files={"media": ("p.jpg", b"\xff" * (8 * 1024 * 1024 + 1), "image/jpeg")}), 400),
        (httpx.get(f"{base}{ROOT}/request/1.{fmt}"), 404),  # the draft's path, not the spec's
        (httpx.delete(f"{base}{ROOT}/requests/1.{fmt}"), 405),
        (httpx.post(f"{base}{ROOT}/services.{fmt}", data={"api_key": key}), 405),
    ]  # fmt: skip
    for response, status in cases:
        assert response.status_code == status, response.text
        [(code, description)] = errors(response)
        assert code == status and description
    invalid_key = post(base, fmt, api_key="o311_wrong", **FIRE_LANE)
    assert (
        errors(invalid_key)[0][1]
        == "Invalid api_key received -- can't proceed with create_request."
    )
    with platform.factory() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == before


def test_a_photo_is_attached_stripped_and_a_revoked_key_is_refused(
    node: tuple[str, str], platform: Platform
) -> None:
    base, key = node
    with platform.factory() as session:
        name = session.scalars(select(ApiKey.name).order_by(ApiKey.id.desc())).first()
    created = httpx.post(f"{base}{ROOT}/requests.json", data={**FIRE_LANE, "api_key": key},
                         files={"media": ("p.jpg", jpeg(gps=DONGJIEKOU), "image/jpeg")})  # fmt: skip
    assert created.status_code == 200, created.text
    request_id = created.json()[0]["service_request_id"]
    media_url = httpx.get(f"{base}{ROOT}/requests/{request_id}.json").json()[0]["media_url"]
    assert media_url.endswith(".jpg")
    photo = httpx.get(base + media_url[media_url.index(ROOT) :])
    assert photo.headers["content-type"] == "image/jpeg" and b"TestCam" not in photo.content
    not_image = httpx.post(f"{base}{ROOT}/requests.json", data={**FIRE_LANE, "api_key": key},
                           files={"media": ("p.jpg", b"<svg/>", "image/jpeg")})  # fmt: skip
    assert not_image.status_code == 400
    with platform.factory.begin() as session:
        apikeys.revoke_key(session, SYSTEM, str(name))
    assert post(base, "json", api_key=key, **FIRE_LANE).status_code == 403


def test_a_key_over_its_rate_is_told_to_wait(served: tuple[Platform, str]) -> None:
    platform, base = served
    with platform.factory.begin() as session:
        key = apikeys.create_key(session, SYSTEM, "slow-client", rate_limit="2/minute").key
    answers = [post(base, "json", api_key=key, **FIRE_LANE).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    late = post(base, "json", api_key=key, **FIRE_LANE)
    assert late.status_code == 429 and int(late.headers["retry-after"]) > 0
