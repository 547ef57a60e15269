"""Recall tracing through transformation and aggregation events, both ways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from minyun.apps.food import gs1, sample, trace
from minyun.core.security import Principal
from tests.apps.food.conftest import Repo

SUPERVISOR = Principal(kind="user", name="inspector", user_id=1, roles=frozenset({"consumer"}),
                       account_kind="staff")  # fmt: skip
R = {k: gs1.canonical(v) for k, v in sample.RETAILERS.items()}


@pytest.fixture
def chain(repo: Repo) -> Iterator[Repo]:
    r = repo.capture(sample.chain())
    assert r.status_code == 202 and r.json()["success"], r.text
    yield repo


def _trace(repo: Repo, start: str, direction: str) -> trace.Trace:
    with repo.node.factory.begin() as s:
        return trace.trace(s, SUPERVISOR, start, direction=direction)


def test_a_contaminated_farm_lot_is_traced_forward_to_every_retailer(chain: Repo) -> None:
    # Farm B's leaves went only into tea lot T2, pallet 2, repacked for retailer R3.
    found = _trace(chain, sample.LEAF_B1, "forward")
    assert found.retailers == [R["R3"]]
    assert gs1.canonical(sample.TEA_T2) in found.ids
    assert gs1.canonical(sample.PALLET_R3) in found.ids
    assert gs1.canonical(sample.TEA_T1) not in found.ids
    # Farm A's leaves went into both tea lots: every retailer.
    everywhere = _trace(chain, sample.LEAF_A1, "forward")
    assert everywhere.retailers == sorted(R.values())
    assert everywhere.sites[R["R1"]].name == "福州鼓楼超市"


def test_a_retail_pallet_is_traced_backward_to_its_farms(chain: Repo) -> None:
    found = _trace(chain, sample.PALLET_R3, "backward")
    assert found.origins == sorted([gs1.canonical(sample.FARM_A), gs1.canonical(sample.FARM_B)])
    only_a = _trace(chain, "https://id.gs1.org" + sample.product_path(sample.TEA_T1), "backward")
    assert only_a.origins == [gs1.canonical(sample.FARM_A)]
    assert gs1.canonical(sample.LEAF_B1) not in only_a.ids


def test_the_trace_api_answers_and_refuses_clients_without_rights(chain: Repo) -> None:
    r = chain.http.get("/api/v1/food/trace", params={"id": sample.LEAF_B1, "direction": "forward"},
                       headers=chain.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["retailers"] == [R["R3"]]
    assert chain.http.get("/api/v1/food/trace", params={"id": sample.LEAF_B1}).status_code == 401
