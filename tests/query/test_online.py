"""The online key lookup answered before the router (`query/online.py`) and the FastAPI
route `read_row` give the same answer to every kind of request.

Two apps over one node: the product as served, and the same app without the
`KeyLookupRoute` layer, so each request below reaches `read_row` through FastAPI. Their
status, body (but the request id) and headers must agree, for rows, field lists, masks,
missing keys, bad tokens, refused clients and bad parameters.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from minyun.core.platform import Platform
from minyun.query.online import KeyLookupRoute
from minyun.web.app import create_app
from tests.query.test_lookup import CODE, MASKS, _setup, _token


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest) -> Platform:
    return request.getfixturevalue("platform" if request.param == "sqlite" else "pg_platform")


def _routed_only(app: FastAPI) -> FastAPI:
    """The app without the early lookup layer: every request goes through the router."""
    app.user_middleware = [m for m in app.user_middleware if m.cls is not KeyLookupRoute]
    return app


@pytest.fixture
def clients(node: Platform) -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(create_app(node)) as fast, TestClient(_routed_only(create_app(node))) as slow:
        yield fast, slow


def _seen(response: object) -> tuple[int, object, dict[str, str]]:
    r = response  # an httpx.Response
    body = r.json()  # type: ignore[attr-defined]
    if isinstance(body, dict):
        body.pop("request_id", None)
    kept = ("content-type", "x-resource-version", "x-content-type-options", "www-authenticate")
    headers = {k: v for k, v in r.headers.items() if k in kept}  # type: ignore[attr-defined]
    return r.status_code, body, headers  # type: ignore[attr-defined]


def test_both_paths_answer_alike(node: Platform, clients: tuple[TestClient, TestClient]) -> None:
    fast, slow = clients
    org_id = _setup(node, masks=MASKS)
    _, reader = _token(fast, node, org_id, ["resource.read"])
    _, no_scope = _token(fast, node, org_id, ["org.read"])
    base = f"/api/v1/resources/{CODE}/rows"
    cases: list[tuple[str, dict[str, str]]] = [
        (f"{base}/7", {"Authorization": reader}),  # a row, two fields masked, one dropped
        (f"{base}/7?fields=id,name", {"Authorization": reader}),  # a field list
        (f"{base}/7?fields=id&fields=city", {"Authorization": reader}),  # the last one counts
        (f"{base}/7?fields=score", {"Authorization": reader}),  # a dropped field: refused
        (f"{base}/7?purpose=" + "x" * 501, {"Authorization": reader}),  # purpose too long
        (f"{base}/7?purpose=check", {"Authorization": reader}),
        (f"{base}/99999", {"Authorization": reader}),  # no such key
        (f"{base}/abc", {"Authorization": reader}),  # not an integer key
        ("/api/v1/resources/no-such/rows/1", {"Authorization": reader}),
        (f"{base}/7", {"Authorization": no_scope}),  # scope lacks resource.read
        (f"{base}/7", {"Authorization": "Bearer forged.token.text"}),
        (f"{base}/7", {"Authorization": "Basic dXNlcjpwdw=="}),
    ]
    for path, headers in cases:
        got_fast, got_slow = (
            _seen(fast.get(path, headers=headers)),
            _seen(slow.get(path, headers=headers)),
        )
        assert got_fast == got_slow, path
    # And the cases really are different answers (the comparison is not vacuous).
    statuses = {_seen(fast.get(p, headers=h))[0] for p, h in cases}
    assert statuses >= {200, 401, 403, 404, 422}


def test_other_requests_pass_through(
    node: Platform, clients: tuple[TestClient, TestClient]
) -> None:
    fast, _ = clients
    org_id = _setup(node, masks=MASKS)
    _, reader = _token(fast, node, org_id, ["resource.read"])
    # No token: the browser path of the route (anonymous: refused as the route refuses).
    anonymous = fast.get(f"/api/v1/resources/{CODE}/rows/7")
    assert anonymous.status_code in (401, 403)
    # Other methods and a trailing slash are the router's.
    assert (
        fast.post(f"/api/v1/resources/{CODE}/rows/7", headers={"Authorization": reader}).status_code
        == 405
    )
    assert (
        fast.get(f"/api/v1/resources/{CODE}/rows", headers={"Authorization": reader}).status_code
        == 200
    )
