"""Request body limits enforced while the body streams in, whatever the client declares."""

from __future__ import annotations

import json

from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

DEFAULT_LIMIT = 64 * 1024 * 1024
# Multipart overhead (boundaries, part headers) on top of an upload's own size limit.
MULTIPART_SLACK = 64 * 1024


class BodyLimit:
    """Refuse a body over the limit with 413: at once if Content-Length says so, else mid-stream.

    Load uploads (`.../loads`) may be as large as `MINYUN_UPLOAD_MAX_BYTES`; every other
    request gets DEFAULT_LIMIT. Counting the streamed bytes is Starlette's
    RequestBodyLimitMiddleware, which FastAPI turns into a 413 from inside the route.
    """

    def __init__(self, app: ASGIApp, *, upload_limit: int, default_limit: int = DEFAULT_LIMIT):
        self.upload_limit = upload_limit + MULTIPART_SLACK
        self.default_limit = default_limit
        self.uploads = RequestBodyLimitMiddleware(app, self.upload_limit)
        self.others = RequestBodyLimitMiddleware(app, self.default_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.others(scope, receive, send)
            return
        path: str = scope["path"]
        upload = path.endswith("/loads")
        limit = self.upload_limit if upload else self.default_limit
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, path, int(declared), limit)
            return
        await (self.uploads if upload else self.others)(scope, receive, send)


async def _refuse(send: Send, path: str, size: int, limit: int) -> None:
    body = json.dumps(
        {
            "type": "/problems/too-large",
            "title": "Request too large",
            "status": 413,
            "detail": f"the body is {size} bytes; the limit is {limit}",
            "instance": path,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
