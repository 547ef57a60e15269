"""The request-context middleware: request id in and out, audit context, security headers."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from minyun.core import context
from minyun.web.request_context import RequestContext


async def seen(request: Request) -> Response:
    """What the route sees of the request's context."""
    return JSONResponse(
        {
            "state": request.state.request_id,
            "context": context.request_id.get(),
            "ip": context.client_ip.get(),
        }
    )


async def framed(request: Request) -> Response:
    return PlainTextResponse("x", headers={"X-Frame-Options": "SAMEORIGIN"})


async def fails(request: Request) -> Response:
    raise RuntimeError("boom")


@pytest.fixture
def client() -> TestClient:
    app = Starlette(routes=[Route("/seen", seen), Route("/framed", framed), Route("/fails", fails)])
    app.add_middleware(RequestContext)
    return TestClient(app, raise_server_exceptions=False)


def test_a_fit_request_id_is_kept_everywhere(client: TestClient) -> None:
    r = client.get("/seen", headers={"X-Request-ID": "req-12345678"})
    assert r.headers["x-request-id"] == "req-12345678"
    assert r.json() == {"state": "req-12345678", "context": "req-12345678", "ip": "testclient"}


@pytest.mark.parametrize("incoming", [None, "short", "x" * 65, "bad\tid-12345"])
def test_an_unfit_or_missing_request_id_is_replaced(
    client: TestClient, incoming: str | None
) -> None:
    headers = {"X-Request-ID": incoming} if incoming is not None else {}
    r = client.get("/seen", headers=headers)
    made = r.headers["x-request-id"]
    assert len(made) == 32 and made != incoming
    assert r.json()["state"] == r.json()["context"] == made


def test_security_headers_are_added_unless_the_route_set_its_own(client: TestClient) -> None:
    r = client.get("/seen")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["x-frame-options"] == "DENY"
    own = client.get("/framed")
    assert own.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert own.headers["x-content-type-options"] == "nosniff"
    # A 404 of the router gets them too, and one request id header only.
    missing = client.get("/nowhere", headers={"X-Request-ID": "req-87654321"})
    assert missing.status_code == 404
    assert missing.headers.get_list("x-request-id") == ["req-87654321"]
    assert missing.headers["x-frame-options"] == "DENY"


def test_the_context_is_set_for_the_request_and_reset_after() -> None:
    seen_inside: list[str | None] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen_inside.append(context.request_id.get())
        await PlainTextResponse("x")(scope, receive, send)

    async def run() -> str | None:
        token = context.request_id.set("outside")
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http", "method": "GET", "path": "/", "headers": [
                (b"x-request-id", b"req-bbbbbbbb")
            ], "client": ("10.0.0.9", 1234),
        }  # fmt: skip
        await RequestContext(inner)(scope, receive, send)
        assert (b"x-request-id", b"req-bbbbbbbb") in sent[0]["headers"]
        after = context.request_id.get()
        context.request_id.reset(token)
        return after

    assert asyncio.run(run()) == "outside"
    assert seen_inside == ["req-bbbbbbbb"]


def test_an_error_still_propagates(client: TestClient) -> None:
    assert client.get("/fails").status_code == 500
