"""Per-request context and the headers every answer carries, as a plain ASGI middleware.

For each HTTP request: its id (the client's `X-Request-ID` when it is 8 to 64 printable
characters, else a fresh one) goes to `request.state.request_id`, to the audit context
(`core.context.request_id`, with the client's address in `core.context.client_ip`) and back
in the answer's `X-Request-ID`; every answer also gets `X-Content-Type-Options`,
`Referrer-Policy` and `X-Frame-Options` unless the route set its own.

A plain ASGI middleware rather than Starlette's `BaseHTTPMiddleware`: that one runs the rest
of the app in a task of its own and passes the response through memory streams, which
cost the key lookup more than its database round trip.
"""

from __future__ import annotations

import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minyun.core import context

SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
)


def request_id_of(incoming: str) -> str:
    """The client's request id when it is fit to keep (8 to 64 printable characters), else new."""
    if 8 <= len(incoming) <= 64 and incoming.isprintable():
        return incoming
    return uuid.uuid4().hex


class RequestContext:
    """Request id and client address for the audit log; request id and security headers out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = request_id_of(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        client = scope.get("client")
        id_token = context.request_id.set(request_id)
        ip_token = context.client_ip.set(client[0] if client else None)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            context.client_ip.reset(ip_token)
            context.request_id.reset(id_token)
