"""The online key lookup of API clients, answered before FastAPI's router (decision 0007).

`GET /api/v1/resources/{code}/rows/{key}` with a bearer token is the sharing platform's
online call, its hottest request by far. FastAPI's generic path (route matching over every
route of the app, the exception middleware, the dependency and parameter machinery) costs
more CPU per call than the whole governed lookup. So this small ASGI layer, inside the
request context (request id, client address, security headers) and before the session
middleware, recognises that one request and answers it itself, through the same
`KeyLookups.lookup` as the route: token, access plan, serving index, masks and the durable
audit record, with the same answers and the same problem+json errors
(`tests/query/test_online.py` checks both paths give the same answer to every kind of
request). Everything else (other paths, other methods, browser sessions without a token)
goes on to the app, and the FastAPI route stays for them and for the OpenAPI document.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from minyun.core.errors import DomainError, Invalid
from minyun.query.lookup import KeyLookups
from minyun.web import problems

# The route's path: `{code}` and `{key}` are Starlette `str` parameters (no slash).
_PATH = re.compile(r"/api/v1/resources/([^/]+)/rows/([^/]+)")
PURPOSE_MAX = 500


class KeyLookupRoute:
    """Serves bearer-token key lookups itself; passes every other request on."""

    def __init__(self, app: ASGIApp, *, lookups: KeyLookups) -> None:
        self.app = app
        self.lookups = lookups

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        authorization = _authorization(scope) if match else None
        if match is None or authorization is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            fields, purpose = row_query(request) if scope["query_string"] else (None, None)
            found = await self.lookups.lookup(
                authorization, match[1], match[2], fields=fields, purpose=purpose
            )
        except DomainError as exc:
            response = await problems.domain_error(request, exc)
            await response(scope, receive, send)
            return
        # What `Response(body, media_type=…, headers=…)` sends, without building one.
        body = found.json()
        headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            (b"x-resource-version", str(found.version).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def row_query(request: Request) -> tuple[str | None, str | None]:
    """`fields` and `purpose` of a key lookup (the last of each, as FastAPI takes them)."""
    query = request.query_params
    fields, purpose = query.get("fields"), query.get("purpose")
    if purpose is not None and len(purpose) > PURPOSE_MAX:
        raise Invalid(f"purpose: at most {PURPOSE_MAX} characters", field="purpose")
    return fields, purpose


def _authorization(scope: Scope) -> str | None:
    """The Authorization header's text, if the request has a non-empty one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            return text or None
    return None
