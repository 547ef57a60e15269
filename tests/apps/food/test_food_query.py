"""EPCIS 2.0 queries: every official example queried back with each parameter that applies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.apps.food.conftest import EXAMPLES, Repo, example

E1 = "ni:///sha-256;df7bb3c352fef055578554f09f5e2aa41782150ced7bd0b8af24dd3ccb30ba69?ver=CBV2.0"
E2 = "ni:///sha-256;00e1e6eba3a7cc6125be4793a631f0af50f8322e0ab5f2c0bab994a11cec1d79?ver=CBV2.0"
AGG = "ni:///sha-256;87b5f18a69993f0052046d4687dfacdf48f7c988cfabda2819688c86b4066a49?ver=CBV2.0"
SENSOR = "ni:///sha-256;74f1dc48ee22289bc40ddd9f1d0ecae0dd09a2f4c3dfa66fdbca16cb2d8a4e77?ver=CBV2.0"
ALL = {E1, E2, AGG, SENSOR}
SGTIN_2018 = "urn:epc:id:sgtin:0614141.107346.2018"

# parameter → value → the examples' events it selects. Identifiers in URN and Digital Link
# form; CBV values bare and as URNs.
CASES: list[tuple[str, str, set[str]]] = [
    ("eventType", "ObjectEvent", {E1, E2, SENSOR}),
    ("eventType", "AggregationEvent|TransformationEvent", {AGG}),
    ("GE_eventTime", "2005-04-04T12:00:00Z", {E2, AGG, SENSOR}),
    ("LT_eventTime", "2005-04-04T12:00:00+08:00", {E1}),
    ("GE_recordTime", "2020-01-01T00:00:00Z", ALL),
    ("LT_recordTime", "2020-01-01T00:00:00Z", set()),
    ("EQ_action", "OBSERVE", ALL),
    ("EQ_action", "ADD", set()),
    ("EQ_bizStep", "receiving", {E2, AGG}),
    ("EQ_bizStep", "urn:epcglobal:cbv:bizstep:shipping", {E1}),
    ("EQ_bizStep", "inspecting|shipping", {E1, SENSOR}),
    ("EQ_disposition", "in_progress", {E2, AGG}),
    ("EQ_disposition", "in_transit", {E1}),
    ("EQ_readPoint", "urn:epc:id:sgln:0614141.07346.1234", {E1}),
    ("EQ_readPoint", "https://id.gs1.org/414/0614141073467/254/1234", {E1}),
    ("WD_readPoint", "urn:epc:id:sgln:4012345.00005.0", {SENSOR}),
    ("EQ_bizLocation", "urn:epc:id:sgln:0012345.11111.0", {E2}),
    ("EQ_bizLocation", "https://id.gs1.org/414/0614141008889", {AGG}),
    ("MATCH_epc", SGTIN_2018, {E1, E2, AGG}),
    ("MATCH_epc", "https://id.gs1.org/01/10614141073464/21/2017", {E1, AGG}),
    ("MATCH_epc", "https://example.com/01/10614141073464/21/2017?linkType=all", {E1, AGG}),
    ("MATCH_epc", "urn:epc:idpat:sgtin:0614141.107346.*", {E1, E2, AGG}),
    ("MATCH_parentID", "urn:epc:id:sscc:0614141.1234567890", {AGG}),
    ("MATCH_anyEPC", "urn:epc:id:sscc:0614141.1234567890", {AGG}),
    ("MATCH_anyEPC", "urn:epc:id:sgtin:4012345.011111.9876", {SENSOR}),
    ("MATCH_inputEPC", SGTIN_2018, set()),
    ("MATCH_outputEPC", SGTIN_2018, set()),
    ("MATCH_epcClass", "urn:epc:class:lgtin:4012345.012345.998877", {AGG}),
    ("MATCH_anyEPCClass", "https://id.gs1.org/01/04012345123456/10/998877", {AGG}),
    ("MATCH_inputEPCClass", "urn:epc:class:lgtin:4012345.012345.998877", set()),
    ("EQ_quantity", "200.5", {AGG}),
    ("GE_quantity", "100", {AGG}),
    ("GT_quantity", "500", set()),
    ("LT_quantity", "11", {AGG}),
    ("LE_quantity", "9", set()),
    ("EQ_eventID", E2, {E2}),
    ("EQ_eventID", f"{E1}|{SENSOR}", {E1, SENSOR}),
    ("EQ_bizTransaction_po", "http://transaction.acme.com/po/12345678", {E1, E2}),
    ("EQ_bizTransaction_desadv", "urn:epcglobal:cbv:bt:0614141073467:1152", {E2}),
    ("EXISTS_errorDeclaration", "true", set()),
    ("EXISTS_errorDeclaration", "false", ALL),
    ("EQ_type", "Temperature", {SENSOR}),
    ("EQ_type", "Humidity", set()),
    ("EQ_deviceID", "urn:epc:id:giai:4000001.111", {SENSOR}),
    ("GE_value_Temperature", "26.1", {SENSOR}),
    ("GT_value_Temperature", "30", set()),
    ("LT_value_Speed", "160.5", {SENSOR}),
    ("GE_startTime", "2019-01-01T00:00:00Z", set()),
    ("EQ_transformationID", "urn:epc:id:gdti:4012345.55555.1234", set()),
    ("EQ_persistentDisposition_set", "completeness_inferred", set()),
    ("EQ_errorReason", "incorrect_data", set()),
    ("EQ_correctiveEventID", E1, set()),
]


@pytest.fixture
def full(repo: Repo) -> Iterator[Repo]:
    for name in EXAMPLES:
        assert repo.capture(example(name)).status_code == 202
    yield repo


def _ids(events: list[dict[str, Any]]) -> set[str]:
    return {e["eventID"] for e in events}


def test_every_parameter_that_applies_selects_the_right_events(full: Repo) -> None:
    wrong = []
    for name, value, expected in CASES:
        got = _ids(full.event_list(**{name: value}))
        if got != expected:
            wrong.append((name, value, got, expected))
    assert not wrong


def test_parameters_are_anded(full: Repo) -> None:
    got = full.event_list(EQ_bizStep="receiving", eventType="ObjectEvent", MATCH_epc=SGTIN_2018)
    assert _ids(got) == {E2}


def test_order_limits_and_paging(full: Repo) -> None:
    times = [e["eventID"] for e in full.event_list(orderBy="eventTime", orderDirection="DESC")]
    assert times == [SENSOR, AGG, E2, E1]
    assert len(full.event_list(eventCountLimit="2")) == 2
    r = full.events(maxEventCount="2")
    assert r.status_code == 413 and r.json()["type"] == "epcisException:QueryTooLargeException"
    seen: list[str] = []
    url: str | None = "/epcis/events?perPage=1&orderBy=eventTime"
    while url:
        r = full.http.get(url, headers=full.headers)
        assert r.status_code == 200
        seen += [
            e["eventID"] for e in r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        ]
        link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert seen == [E1, E2, AGG, SENSOR]


def test_a_token_of_another_query_or_forged_is_refused(full: Repo) -> None:
    r = full.events(perPage="1")
    token = r.headers["Link"].split("nextPageToken=")[1].split("&")[0].split(">")[0]
    other = full.events(perPage="1", EQ_action="OBSERVE", nextPageToken=token)
    assert other.status_code == 400
    assert other.json()["type"] == "epcisException:QueryParameterException"
    assert full.events(nextPageToken=token[:-3] + "abc").status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"EQ_colour": "red"},
        {"eventType": "CreateEvent"},
        {"GE_eventTime": "yesterday"},
        {"GE_quantity": "many"},
        {"EXISTS_errorDeclaration": "maybe"},
        {"orderBy": "bizStep"},
        {"perPage": "0"},
        {"MATCH_epc": "not a uri"},
    ],
)
def test_a_bad_query_is_refused_with_the_binding_error(full: Repo, params: dict[str, str]) -> None:
    r = full.events(**params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "epcisException:QueryParameterException"


def test_resource_paths(full: Repo) -> None:
    assert {"receiving", "shipping", "inspecting"} <= set(full.events("/epcis/bizSteps").json())
    assert "ObjectEvent" in full.events("/epcis/eventTypes").json()
    assert "https://id.gs1.org/01/10614141073464/21/2018" in full.events("/epcis/epcs").json()
    paths = {
        "/epcis/bizSteps/receiving/events": {E2, AGG},
        "/epcis/dispositions/in_transit/events": {E1},
        "/epcis/eventTypes/AggregationEvent/events": {AGG},
        f"/epcis/epcs/{quote(SGTIN_2018, safe='')}/events": {E1, E2, AGG},
        "/epcis/epcs/https://id.gs1.org/01/10614141073464/21/2018/events": {E1, E2, AGG},
        f"/epcis/readPoints/{quote('urn:epc:id:sgln:4012345.00005.0', safe='')}/events": {SENSOR},
        f"/epcis/bizLocations/{quote('urn:epc:id:sgln:0012345.11111.0', safe='')}/events": {E2},
    }
    for path, expected in paths.items():
        assert _ids(full.event_list(path)) == expected, path
    narrowed = full.event_list("/epcis/bizSteps/receiving/events", eventType="ObjectEvent")
    assert _ids(narrowed) == {E2}
    missing = full.events(f"/epcis/events/{quote('urn:uuid:nothing', safe='')}")
    assert missing.status_code == 404
    assert missing.json()["type"] == "epcisException:NoSuchResourceException"


def test_named_queries(full: Repo) -> None:
    body = {
        "name": "receivingObjects",
        "query": {"EQ_bizStep": ["receiving"], "eventType": ["ObjectEvent", "AggregationEvent"]},
    }
    r = full.http.post("/epcis/queries", json=body, headers=full.headers)
    assert r.status_code == 201 and r.headers["Location"] == "/epcis/queries/receivingObjects"
    again = full.http.post("/epcis/queries", json=body, headers=full.headers)
    assert again.status_code == 409
    assert again.json()["type"] == "epcisException:ResourceAlreadyExistsException"
    bad = {"name": "bad", "query": {"EQ_colour": ["red"]}}
    assert full.http.post("/epcis/queries", json=bad, headers=full.headers).status_code == 400
    assert [q["name"] for q in full.events("/epcis/queries").json()] == ["receivingObjects"]
    doc = full.events("/epcis/queries/receivingObjects/events").json()
    assert doc["epcisBody"]["queryResults"]["queryName"] == "receivingObjects"
    assert _ids(doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == {E2, AGG}
    gone = full.events("/epcis/queries/nothing/events")
    assert gone.status_code == 404 and gone.json()["type"] == "epcisException:NoSuchNameException"
    assert (
        full.http.delete("/epcis/queries/receivingObjects", headers=full.headers).status_code == 204
    )
    assert full.events("/epcis/queries/receivingObjects").status_code == 404


def test_query_results_are_valid_query_documents_with_extension_prefixes(full: Repo) -> None:
    from minyun.apps.food import epcis

    doc = full.events(EQ_eventID=E2).json()
    epcis.validate_document(doc)  # the official schema accepts what we answer
    assert {"example": "http://ns.example.com/epcis/"} in doc["@context"]
    assert doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"][0]["example:myField"]


def test_a_page_token_can_be_released(repo: Repo) -> None:
    r = repo.http.delete("/epcis/nextPageToken/anything", headers=repo.headers)
    assert r.status_code == 204 and r.headers["GS1-EPCIS-Version"] == "2.0.0"
    assert repo.http.delete("/epcis/nextPageToken/anything").status_code == 401
