"""Integers past what the databases hold answer 422 problem+json, not 500 (issue 11, item 8).

An attacker sent 2^63 as `offset`, `before`, `limit`, `version` and alert ids: the SQLite driver
raised OverflowError and the node answered a plain-text 500. Every integer a route takes now
has bounds within a signed 64-bit integer, and a walk over every route keeps it so.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from minyun.core.platform import Platform
from minyun.web.app import create_app
from minyun.web.deps import INT32_MAX, INT64_MAX
from tests.ingest import loadkit
from tests.query.test_query_api import signed_in

BIG = 2**63


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest) -> Platform:
    return request.getfixturevalue("platform" if request.param == "sqlite" else "pg_platform")


@pytest.fixture
def app(node: Platform) -> Iterator[FastAPI]:
    yield create_app(node)


def _routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    def walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
        for r in routes:
            if hasattr(r, "original_router"):
                yield from walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif isinstance(r, APIRoute):
                yield prefix + r.path, r

    yield from walk(app.routes)


def _is_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    return any(_is_int(a) for a in typing.get_args(annotation))


def _models(annotation: Any) -> list[type[BaseModel]]:
    found = [a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type)]
    return [a for a in found if issubclass(a, BaseModel)]


def _bounds(field: FieldInfo) -> tuple[int | None, int | None]:
    low = high = None
    for rule in field.metadata:
        low = next((getattr(rule, k) for k in ("ge", "gt") if hasattr(rule, k)), low)
        high = next((getattr(rule, k) for k in ("le", "lt") if hasattr(rule, k)), high)
    return low, high


def _integer_fields(dependant: Dependant) -> Iterator[tuple[str, FieldInfo]]:
    """Every integer a route takes: path, query, header, cookie, form and JSON body fields."""
    kinds = ("path_params", "query_params", "header_params", "cookie_params", "body_params")
    for kind in kinds:
        for param in getattr(dependant, kind):
            if _is_int(param.field_info.annotation):
                yield param.name, param.field_info
            pending = _models(param.field_info.annotation)
            while pending:
                model = pending.pop()
                for name, field in model.model_fields.items():
                    if _is_int(field.annotation):
                        yield f"{param.name}.{name}", field
                    pending.extend(_models(field.annotation))
    for sub in dependant.dependencies:
        yield from _integer_fields(sub)


def test_every_integer_a_route_takes_is_bounded(app: FastAPI) -> None:
    unbounded = []
    seen = 0
    for path, route in _routes(app):
        for name, field in _integer_fields(route.dependant):
            seen += 1
            low, high = _bounds(field)
            if low is None or high is None or low < -(2**63) or high > INT64_MAX:
                unbounded.append(f"{sorted(route.methods)} {path} {name}: {low}..{high}")
    assert seen >= 15  # the walk sees the integers (alert ids, limits, offsets, versions)
    assert unbounded == [], "bound these with Query/Path(ge=…, le=…) or web.deps.IdPath"


class _Inner(BaseModel):
    n: int


class _Outer(BaseModel):
    inner: _Inner | None = None


def test_the_walk_sees_integers_in_bodies() -> None:
    app = FastAPI()

    @app.post("/x/{i}")
    def x(i: int, body: _Outer) -> None: ...

    route = next(r for _, r in _routes(app) if r.path == "/x/{i}")
    assert [name for name, _ in _integer_fields(route.dependant)] == ["i", "body.n"]


def _problem(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in {e["field"] for e in response.json()["errors"]}


def test_integers_past_their_bound_answer_422_problems(app: FastAPI, node: Platform) -> None:
    code, _ = loadkit.make_resource(node)
    admin = signed_in(app, node, ["admin"], None)
    admin.headers["Origin"] = node.settings.base_url  # cookie changes come from our own pages
    # url, the field named in the problem, the largest value the route takes
    gets = [
        ("/api/v1/audit?before={n}", "before", INT64_MAX),
        ("/api/v1/audit?limit={n}", "limit", 500),
        ("/api/v1/jobs?limit={n}", "limit", 500),
        ("/api/v1/resources?offset={n}", "offset", INT32_MAX),
        ("/api/v1/resources?limit={n}", "limit", 500),
        (f"/api/v1/resources/{code}/rows?version={{n}}", "version", INT32_MAX),
        (f"/api/v1/resources/{code}/rows?limit={{n}}", "limit", 10_000),
        (f"/api/v1/resources/{code}/rejects?version={{n}}", "version", INT32_MAX),
        (f"/api/v1/resources/{code}/rejects?limit={{n}}", "limit", 100_000),
        ("/api/v1/eco/alerts/{n}", "alert_id", INT32_MAX),
    ]
    for url, field, top in gets:
        for n in (top + 1, BIG, -BIG - 1, 10**30):
            _problem(admin.get(url.format(n=n)), field)
        # The largest value is a fair question with a plain answer (data, none, or not found).
        answer = admin.get(url.format(n=top))
        assert answer.status_code in (200, 404), (url, top, answer.text[:300])
    for step in ("consultation", "level", "actions", "close"):
        for n in (INT32_MAX + 1, BIG):
            _problem(admin.post(f"/api/v1/eco/alerts/{n}/{step}", json={}), "alert_id")
        answer = admin.post(f"/api/v1/eco/alerts/{INT32_MAX}/{step}", json={"note": "x"})
        assert answer.status_code in (404, 422), answer.text[:300]


def test_pages_answer_an_html_422_for_integers_of_2_63(app: FastAPI, node: Platform) -> None:
    admin = signed_in(app, node, ["admin"], None)
    html = {"accept": "text/html"}
    for url in (f"/audit?before={BIG}", f"/eco/alerts/{BIG}"):
        r = admin.get(url, headers=html)
        assert r.status_code == 422, (url, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
