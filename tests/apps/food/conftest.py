"""Food traceability fixtures: a node with its app, a company's EPCIS client, the examples."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from minyun.apps.food import lake as food_lake
from minyun.apps.food.models import (
    CaptureJob,
    FoodEvent,
    FoodEventTerm,
    FoodName,
    NamedQuery,
    PullSource,
    QuerySubscription,
)
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests import factories
from tests.conftest import make_settings

DATA = Path(__file__).resolve().parents[2] / "data" / "epcis"
EXAMPLES = sorted(p.name for p in DATA.glob("*.jsonld"))
CAPTURE = "epcis.capture"
QUERY = "epcis.query"


def example(name: str) -> dict[str, Any]:
    """An official EPCIS 2.0 example document (tests/data/epcis)."""
    loaded: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return loaded


@dataclass
class Repo:
    """A node's EPCIS repository seen by a company's client holding both scopes."""

    node: Platform
    http: TestClient
    headers: dict[str, str]
    org_id: int

    def capture(self, doc: Any, **headers: str) -> Any:
        return self.http.post(
            "/epcis/capture",
            content=json.dumps(doc),
            headers={**self.headers, "Content-Type": "application/ld+json", **headers},
        )

    def events(self, path: str = "/epcis/events", **params: Any) -> Any:
        return self.http.get(path, params=params, headers=self.headers)

    def event_list(self, path: str = "/epcis/events", **params: Any) -> list[dict[str, Any]]:
        r = self.events(path, **params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["type"] == "EPCISQueryDocument"
        found: list[dict[str, Any]] = body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        return found

    def token(self, scopes: list[str]) -> dict[str, str]:
        return factories.api_client_token(self.http, self.node, self.org_id, scopes)[1]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """One node per test module and backend (a node takes seconds to set up); each test
    starts from an empty repository (`repo`)."""
    if request.param not in getattr(request.module, "BACKENDS", ("sqlite", "postgresql")):
        pytest.skip(f"{request.module.__name__} runs on SQLite only")
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_databases").create()
    var = tmp_path_factory.mktemp("food") / "var"
    settings = make_settings(var, **({"database_url": url} if url else {}))
    node = Platform.open(settings)
    node.migrate()
    yield node
    node.close()


@pytest.fixture(scope="module")
def shared(node: Platform) -> Iterator[Repo]:
    with node.factory.begin() as s:
        org = factories.make_org(s, code="fj-food", name="福建省市场监督管理局")
        org_id = org.id
    with TestClient(create_app(node)) as http:
        headers = factories.api_client_token(http, node, org_id, [CAPTURE, QUERY])[1]
        yield Repo(node, http, headers, org_id)


@pytest.fixture
def repo(shared: Repo) -> Iterator[Repo]:
    """The module's repository, emptied after the test (index tables and the lake table)."""
    yield shared
    with shared.node.factory.begin() as s:
        for table in (FoodEventTerm, FoodEvent, FoodName, QuerySubscription, NamedQuery,
                      PullSource, CaptureJob):  # fmt: skip
            s.execute(delete(table))
    shutil.rmtree(shared.node.lake.table_uri(food_lake.CODE), ignore_errors=True)
