"""EPCIS 2.0 capture: every official example in, refused documents keep nothing."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from minyun.apps.food import lake as food_lake
from minyun.apps.food.models import FoodEvent
from minyun.core.audit import AuditRecord
from tests.apps.food.conftest import EXAMPLES, QUERY, Repo, example


def _stored(repo: Repo) -> int:
    with repo.node.factory() as s:
        return int(s.scalar(select(func.count(FoodEvent.id))) or 0)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_official_example_is_captured_and_read_back(repo: Repo, name: str) -> None:
    doc = example(name)
    r = repo.capture(doc)
    assert r.status_code == 202, r.text
    assert r.headers["GS1-EPCIS-Version"] == "2.0.0"
    assert r.headers["GS1-CBV-Version"] == "2.0.0"
    location = r.headers["Location"]
    job = repo.http.get(location, headers=repo.headers)
    assert job.status_code == 200
    assert job.json()["running"] is False and job.json()["success"] is True
    for sent in doc["epcisBody"]["eventList"]:
        got = repo.event_list(f"/epcis/events/{quote(sent['eventID'], safe='')}")
        assert len(got) == 1
        back = got[0]
        assert {k: v for k, v in back.items() if k != "recordTime"} == sent
        assert back["recordTime"].endswith("Z")


def test_captured_events_are_appended_to_the_lake(repo: Repo) -> None:
    for name in EXAMPLES:
        assert repo.capture(example(name)).status_code == 202
    with repo.node.factory() as s:
        from_lake = food_lake.read_events(s, repo.node.lake, purpose="test")
    sent = [e for name in EXAMPLES for e in example(name)["epcisBody"]["eventList"]]
    assert sorted(e["eventID"] for e in from_lake) == sorted(e["eventID"] for e in sent)
    assert repo.node.lake.version(food_lake.CODE) == len(EXAMPLES) - 1  # one commit a capture


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    del out["epcisBody"]["eventList"][-1][key]
    return out


def _bad_docs() -> dict[str, dict[str, Any]]:
    base = example("Example_9.6.1-ObjectEvent.jsonld")
    no_context = copy.deepcopy(base)
    del no_context["@context"]
    create = copy.deepcopy(base)
    create["epcisBody"]["eventList"][-1]["action"] = "CREATE"
    bad_date = copy.deepcopy(base)
    bad_date["epcisBody"]["eventList"][-1]["eventTime"] = "2005-13-45 25:00"
    return {
        "no @context": no_context,
        "no eventTime": _without(base, "eventTime"),
        "no eventTimeZoneOffset": _without(base, "eventTimeZoneOffset"),
        "action CREATE": create,
        "bad date": bad_date,
    }


@pytest.mark.parametrize("case", sorted(_bad_docs()))
def test_a_document_the_schema_refuses_is_refused_whole(repo: Repo, case: str) -> None:
    r = repo.capture(_bad_docs()[case])
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == "epcisException:ValidationException"
    assert body["status"] == 400 and body["errors"]
    # The first event of the document was valid: it was not stored either.
    assert _stored(repo) == 0


def test_not_json_and_wrong_media_type(repo: Repo) -> None:
    r = repo.http.post(
        "/epcis/capture",
        content=b"{nope",
        headers={**repo.headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["type"] == "epcisException:ValidationException"
    r = repo.http.post(
        "/epcis/capture",
        content=b"<x/>",
        headers={**repo.headers, "Content-Type": "application/xml"},
    )
    assert r.status_code == 415
    assert r.json()["type"] == "epcisException:UnsupportedMediaTypeException"


def test_a_duplicate_event_id_fails_the_capture_job_and_stores_nothing(repo: Repo) -> None:
    assert repo.capture(example("Example_9.6.3-AggregationEvent.jsonld")).status_code == 202
    doc = example("Example_9.6.1-ObjectEvent.jsonld")
    doc["epcisBody"]["eventList"].append(
        example("Example_9.6.3-AggregationEvent.jsonld")["epcisBody"]["eventList"][0]
    )
    r = repo.capture(doc)
    assert r.status_code == 202
    job = repo.http.get(r.headers["Location"], headers=repo.headers).json()
    assert job["running"] is False and job["success"] is False
    assert job["errors"][0]["type"] == "epcisException:ValidationException"
    assert "already stored" in job["errors"][0]["detail"]
    assert _stored(repo) == 1  # only the first capture's event
    twice = example("Example_9.6.3-AggregationEvent.jsonld")
    twice["epcisBody"]["eventList"] *= 2
    twice["epcisBody"]["eventList"][0] = dict(
        twice["epcisBody"]["eventList"][0], eventID="urn:uuid:1"
    )
    twice["epcisBody"]["eventList"][1] = dict(
        twice["epcisBody"]["eventList"][1], eventID="urn:uuid:1"
    )
    job = repo.http.get(repo.capture(twice).headers["Location"], headers=repo.headers).json()
    assert job["success"] is False and "twice" in job["errors"][0]["detail"]
    assert _stored(repo) == 1


def test_events_without_an_event_id_get_the_hash_id(repo: Repo) -> None:
    doc = example("Example_9.6.1-ObjectEvent.jsonld")
    for e in doc["epcisBody"]["eventList"]:
        del e["eventID"]
    assert repo.capture(doc).status_code == 202
    got = repo.event_list(EQ_bizStep="shipping")
    assert len(got) == 1
    assert got[0]["eventID"].startswith("ni:///sha-256;") and got[0]["eventID"].endswith(
        "?ver=CBV2.0"
    )
    # Captured again, the same event has the same id: refused as a duplicate.
    job = repo.http.get(repo.capture(doc).headers["Location"], headers=repo.headers).json()
    assert job["success"] is False


def test_a_token_without_the_scope_is_refused_and_audited(repo: Repo) -> None:
    query_only = repo.token([QUERY])
    r = repo.http.post(
        "/epcis/capture", json=example("Example_9.6.1-ObjectEvent.jsonld"), headers=query_only
    )
    assert r.status_code == 403
    assert r.json()["type"] == "epcisException:SecurityException"
    r = repo.http.get("/epcis/events")
    assert r.status_code == 401 and r.json()["type"] == "epcisException:SecurityException"
    assert _stored(repo) == 0
    with repo.node.factory() as s:
        denied = s.scalars(
            select(AuditRecord).where(
                AuditRecord.action == "epcis.capture", AuditRecord.outcome == "denied"
            )
        ).all()
        print([(a.action, a.outcome, a.detail) for a in s.scalars(select(AuditRecord))][-5:])
    assert len(denied) == 1 and "not permitted" in (denied[0].detail or "")


def test_standard_request_headers(repo: Repo) -> None:
    doc = example("Example_9.6.1-ObjectEvent.jsonld")
    old = repo.capture(doc, **{"GS1-EPCIS-Version": "1.2"})
    assert old.status_code == 406
    assert old.json()["type"] == "epcisException:NotAcceptableException"
    greedy = repo.capture(doc, **{"GS1-Capture-Error-Behaviour": "proceed"})
    assert greedy.status_code == 400 and _stored(repo) == 0
    ok = repo.capture(doc, **{"GS1-EPCIS-Version": "2.0.0"})
    assert ok.status_code == 202 and ok.headers["GS1-Capture-Error-Behaviour"] == "rollback"
    assert ok.headers["GS1-EPCIS-Capture-Limit"] == "10000"


def test_a_single_event_is_captured_at_once_and_a_repeat_is_refused(repo: Repo) -> None:
    doc = example("Example_9.6.1-ObjectEvent.jsonld")
    event = {"@context": doc["@context"], **doc["epcisBody"]["eventList"][0]}
    headers = {**repo.headers, "Content-Type": "application/json"}
    r = repo.http.post("/epcis/events", json=event, headers=headers)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/epcis/events/{quote(event['eventID'], safe='')}"
    assert r.headers["GS1-EPCIS-Version"] == "2.0.0"
    got = repo.event_list(r.headers["Location"])
    assert [e["eventID"] for e in got] == [event["eventID"]]
    again = repo.http.post("/epcis/events", json=event, headers=headers)
    assert again.status_code == 409
    assert again.json()["type"] == "epcisException:ResourceAlreadyExistsException"
    bad = repo.http.post("/epcis/events", json={**event, "action": "CREATE", "eventID": "urn:x:1"},
                         headers=headers)  # fmt: skip
    assert bad.status_code == 400 and bad.json()["type"] == "epcisException:ValidationException"
    assert _stored(repo) == 1


def test_a_time_the_schema_allows_but_no_clock_has_is_refused_whole(repo: Repo) -> None:
    doc = example("Example_9.6.1-ObjectEvent.jsonld")
    doc["epcisBody"]["eventList"][-1]["eventTime"] = "2016-12-31T23:59:60Z"  # a leap second
    r = repo.capture(doc)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "epcisException:ValidationException"
    assert _stored(repo) == 0


def test_a_value_too_long_for_the_index_is_refused_whole(repo: Repo) -> None:
    doc = example("Example_9.6.1-ObjectEvent.jsonld")
    doc["epcisBody"]["eventList"][-1]["eventID"] = "urn:uuid:" + "x" * 400
    r = repo.capture(doc)
    assert r.status_code == 400, r.text
    assert "eventList/1: eventID is longer than 300" in r.json()["detail"]
    assert _stored(repo) == 0


def test_concurrent_captures_all_land_in_the_index_and_the_lake(repo: Repo) -> None:
    """Documents captured at the same time (concurrent requests, the bench's fill) each get
    their own keys in the index and their own commit in the lake: nothing lost or mixed."""
    from concurrent.futures import ThreadPoolExecutor

    from minyun.apps.food import sample
    from minyun.apps.food import service as svc
    from minyun.core.security import Principal

    actor = Principal(kind="client", name="concurrent", organization_id=repo.org_id,
                      scopes=frozenset({svc.CAPTURE}))  # fmt: skip

    def capture(doc_no: int) -> bool:
        events = [
            {
                "type": "ObjectEvent",
                "eventID": f"urn:uuid:00000000-0000-4000-8000-{doc_no:06d}{n:06d}",
                "eventTime": f"2024-05-0{doc_no + 1}T08:00:{n:02d}.000Z",
                "eventTimeZoneOffset": "+08:00",
                "epcList": [f"urn:epc:id:sgtin:{sample.PREFIX}.054321.{doc_no}{n:03d}"],
                "action": "OBSERVE",
                "bizStep": "shipping",
            }
            for n in range(40)
        ]
        with repo.node.factory.begin() as s:
            return svc.capture(s, actor, repo.node.lake, sample.document(events)).success

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(capture, range(6))) == [True] * 6
    with repo.node.factory() as s:
        assert s.scalar(select(func.count()).select_from(FoodEvent)) == 240
        ids = set(s.scalars(select(FoodEvent.event_id)))
        from_lake = food_lake.read_events(s, repo.node.lake, purpose="test")
    assert len(ids) == 240
    assert sorted(e["eventID"] for e in from_lake) == sorted(ids)
    assert repo.node.lake.version(food_lake.CODE) == 5  # six commits, none lost to a race
    assert len(repo.event_list(MATCH_epc=f"urn:epc:id:sgtin:{sample.PREFIX}.054321.5039")) == 1


def test_master_data_names_are_kept_and_renamed_only_when_they_change(repo: Repo) -> None:
    from minyun.apps.food import sample
    from minyun.apps.food.models import FoodName

    doc = sample.chain()
    where = next(iter(sample.NAMES))
    assert repo.capture(doc).json()["success"]
    with repo.node.factory() as s:
        first = {n.uri: (n.name, n.updated_at) for n in s.scalars(select(FoodName))}
    assert len(first) == len(sample.NAMES)
    again = copy.deepcopy(doc)
    for event in again["epcisBody"]["eventList"]:
        event.pop("eventID", None)
        event["eventTime"] = event["eventTime"].replace("2024", "2025")
    vocabulary = again["epcisHeader"]["epcisMasterData"]["vocabularyList"][0]
    element = next(e for e in vocabulary["vocabularyElementList"] if e["id"] == where)
    element["attributes"][0]["attribute"] = "改名后的合作社"
    assert repo.capture(again).json()["success"]
    with repo.node.factory() as s:
        now = {n.uri: (n.name, n.updated_at) for n in s.scalars(select(FoodName))}
    renamed = [uri for uri in now if now[uri] != first[uri]]
    assert len(renamed) == 1 and now[renamed[0]][0] == "改名后的合作社"
