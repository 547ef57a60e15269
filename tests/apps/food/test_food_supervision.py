"""Risk scores explained per factor, the inspection worklist, pulling from another repository."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from minyun.apps.food import epcis, pull, sample
from minyun.apps.food.models import FoodEvent
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.orgs.models import Organization
from minyun.web.app import create_app
from tests import factories
from tests.apps.food.conftest import CAPTURE, EXAMPLES, QUERY, Repo, example
from tests.conftest import make_settings

ADMIN = Principal(kind="user", name="admin", user_id=1, roles=frozenset({"admin"}),
                  account_kind="staff")  # fmt: skip


def _at(hours: int, **event: Any) -> dict[str, Any]:
    return {"eventTime": f"2024-05-01T{hours:02d}:00:00+08:00", "eventTimeZoneOffset": "+08:00",
            **event}  # fmt: skip


def careless_shop() -> dict[str, Any]:
    """A business whose events show every kind of risk once."""
    where = {"readPoint": {"id": sample.gln("50001")}, "bizLocation": {"id": sample.gln("50001")}}
    lot = [{"epcClass": sample.lot("077777", "X9"), "quantity": 10, "uom": "KGM"}]
    hot = [{"sensorReport": [{"type": "Temperature", "value": 15.0, "uom": "CEL"}]}]
    return sample.document([
        _at(1, type="ObjectEvent", action="OBSERVE", bizStep="shipping", quantityList=lot, **where,
            epcList=[sample.sscc("0000000099")]),
        _at(2, type="ObjectEvent", action="OBSERVE", bizStep="inspecting",
            disposition="non_conformant", quantityList=lot, **where),
        _at(3, type="ObjectEvent", action="OBSERVE", bizStep="holding", disposition="recalled",
            quantityList=lot, **where),
        _at(4, type="ObjectEvent", action="OBSERVE", bizStep="storing", quantityList=lot,
            sensorElementList=hot, **where),
        _at(5, type="ObjectEvent", action="OBSERVE", bizStep="storing", quantityList=lot, **where,
            errorDeclaration={"declarationTime": "2024-05-02T00:00:00Z", "reason": "incorrect_data"}),
    ])  # fmt: skip


@pytest.fixture
def two_businesses(repo: Repo) -> Iterator[tuple[Repo, dict[str, str]]]:
    assert repo.capture(sample.chain()).json()["success"]
    with repo.node.factory.begin() as s:
        found = s.scalars(select(Organization.id).where(Organization.code == "shop")).first()
        shop = found or factories.make_org(s, code="shop", name="粗心食品店").id
    shop_headers = factories.api_client_token(repo.http, repo.node, shop, [CAPTURE])[1]
    r = repo.http.post("/epcis/capture", content=json.dumps(careless_shop()),
                       headers={**shop_headers, "Content-Type": "application/json"})  # fmt: skip
    assert r.json()["success"], r.text
    yield repo, shop_headers


def test_risk_scores_are_explained_per_factor(two_businesses: tuple[Repo, dict[str, str]]) -> None:
    repo, _ = two_businesses
    scores = {s["name"]: s for s in repo.http.get("/api/v1/food/risk", headers=repo.headers).json()}
    shop = scores["粗心食品店"]
    factors = {f["name"]: (f["evidence"], f["points"]) for f in shop["factors"]}
    assert factors == {
        "cold_chain": (1, 10),
        "failed_inspections": (1, 15),
        "recalls": (1, 10),
        "error_declarations": (1, 5),
        "chain_gaps": (1, 5),
    }
    assert shop["score"] == 45 and shop["level"] == "medium"
    tea = scores["福建省市场监督管理局"]
    assert [f["name"] for f in tea["factors"]] == ["cold_chain"]  # the truck at 12.5 °C
    assert tea["level"] == "low"
    worklist = repo.http.get("/api/v1/food/worklist", headers=repo.headers).json()
    assert [w["name"] for w in worklist] == ["粗心食品店"]


def test_risk_needs_a_civil_servant(two_businesses: tuple[Repo, dict[str, str]]) -> None:
    repo, _ = two_businesses
    assert repo.http.get("/api/v1/food/risk").status_code == 401


@pytest.fixture
def other(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A second minyun node holding the official examples: another province's platform."""
    node = Platform.open(make_settings(tmp_path_factory.mktemp("other") / "var"))
    node.migrate()
    with node.factory.begin() as s:
        org = factories.make_org(s, code="other-food").id
    with TestClient(create_app(node)) as http:
        headers = factories.api_client_token(http, node, org, [CAPTURE, QUERY])[1]
        for name in EXAMPLES:
            r = http.post("/epcis/capture", json=example(name), headers=headers)
            assert r.json()["success"]
        yield http, headers
    node.close()


def test_events_are_pulled_from_another_repository_page_by_page_once(
    repo: Repo, other: tuple[TestClient, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, headers = other
    monkeypatch.setattr(pull, "PER_PAGE", 2)
    token = headers["Authorization"].split()[1]
    with repo.node.factory.begin() as s:
        source = pull.add_source(s, ADMIN, name="other-province", base_url="http://testserver/epcis",
                                 token=token, organization_id=repo.org_id).id  # fmt: skip
    with repo.node.factory.begin() as s:
        first = pull.run_source(s, repo.node.lake, source, http)
    assert (first.pages, first.received, first.captured) == (2, 4, 4)
    sent = {e["eventID"] for n in EXAMPLES for e in example(n)["epcisBody"]["eventList"]}
    got = repo.event_list(perPage="10")
    assert {e["eventID"] for e in got} == sent
    epcis.validate_document(repo.events().json())
    with repo.node.factory.begin() as s:
        again = pull.run_source(s, repo.node.lake, source, http)
    assert again.captured == 0
    with repo.node.factory() as s:
        assert s.scalar(select(func.count(FoodEvent.id))) == 4


def test_a_pull_source_needs_a_steward_or_admin(repo: Repo) -> None:
    from minyun.core.errors import Forbidden

    someone = Principal(kind="user", name="x", user_id=2, account_kind="staff")
    with repo.node.factory() as s, pytest.raises(Forbidden):
        pull.add_source(s, someone, name="x", base_url="http://example.cn/epcis")


def test_a_bulk_upload_is_captured_all_or_nothing(repo: Repo) -> None:
    files = {"file": ("chain.jsonld", json.dumps(sample.chain()), "application/ld+json")}
    r = repo.http.post("/api/v1/food/uploads", files=files, headers=repo.headers)
    assert r.status_code == 201 and r.json()["success"] is True
    bad = {"file": ("bad.json", b'{"type": "EPCISDocument"}', "application/json")}
    r = repo.http.post("/api/v1/food/uploads", files=bad, headers=repo.headers)
    assert r.status_code == 422 and r.json()["type"] == "/problems/ValidationException"
    with repo.node.factory() as s:
        assert s.scalar(select(func.count(FoodEvent.id))) == len(sample.steps())


def test_the_scheduled_pull_job_reads_another_node_over_http(
    repo: Repo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.browser import serve

    node = Platform.open(make_settings(tmp_path_factory.mktemp("remote") / "var"))
    node.migrate()
    try:
        with node.factory.begin() as s:
            org = factories.make_org(s, code="remote-food").id
        app = create_app(node)
        with TestClient(app) as http:
            headers = factories.api_client_token(http, node, org, [CAPTURE, QUERY])[1]
            assert http.post("/epcis/capture", json=sample.chain(), headers=headers).json()[
                "success"
            ]
        with serve(app) as base:
            with repo.node.factory.begin() as s:
                pull.add_source(s, ADMIN, name="remote", base_url=f"{base}/epcis",
                                token=headers["Authorization"].split()[1],
                                query={"EQ_bizStep": ["shipping|receiving"]},
                                organization_id=repo.org_id)  # fmt: skip
                job_id = pull.submit(s, ADMIN, repo.node.settings).id
            with repo.node.factory.begin() as s:  # the same period: the same job
                assert pull.submit(s, ADMIN, repo.node.settings).id == job_id
            from minyun.core import jobs

            for _ in range(200):
                with repo.node.factory() as s:
                    job = s.get(jobs.Job, job_id)
                    assert job is not None
                    if job.state in (jobs.JobState.SUCCEEDED, jobs.JobState.FAILED):
                        break
                import time

                time.sleep(0.1)
            assert job.state == jobs.JobState.SUCCEEDED, job.error
        shipped = [e for e in sample.chain()["epcisBody"]["eventList"]
                   if e["bizStep"] in ("shipping", "receiving")]  # fmt: skip
        assert len(repo.event_list(perPage="100")) == len(shipped)
    finally:
        node.close()
