"""Domain errors → RFC 9457 problem+json (API) or an HTML error page (browsers)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from minyun.core.errors import (
    ConfigError,
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)

STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Unauthenticated: 401,
    Forbidden: 403,
    Conflict: 409,
    Invalid: 422,
    TooManyRequests: 429,
    ConfigError: 500,
}
MEDIA_TYPE = "application/problem+json"
# Other APIs' error formats by path prefix, checked before problem+json: the CKAN-compatible
# Action API answers in CKAN's envelope (minyun.opendata.api).
ERROR_FORMATS: dict[str, Callable[[Request, int, DomainError], Response]] = {}
log = logging.getLogger(__name__)


def status_of(exc: DomainError) -> int:
    return next((s for c, s in STATUS.items() if isinstance(exc, c)), 400)


def problem(
    status: int, code: str, title: str, detail: str, request: Request, **extra: Any
) -> JSONResponse:
    body = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
        **extra,
    }
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="minyun"'
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(body, status, media_type=MEDIA_TYPE, headers=headers)


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def _epcis(request: Request) -> bool:
    """The EPCIS 2.0 binding (apps.food) answers its errors in its own problem types."""
    return request.url.path == "/epcis" or request.url.path.startswith("/epcis/")


def _epcis_error(exc: Exception) -> Response:
    from minyun.apps.food.api import epcis_error

    return epcis_error(exc)


async def domain_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, DomainError):
        raise TypeError(f"domain_error handles DomainError, not {type(exc).__name__}")
    if _epcis(request):
        return _epcis_error(exc)
    status = status_of(exc)
    for prefix, answer in ERROR_FORMATS.items():
        if request.url.path.startswith(prefix):
            return answer(request, status, exc)
    if wants_html(request):
        from minyun.web.pages import error_page

        return error_page(request, status, exc.title, str(exc))
    return problem(status, exc.code, exc.title, str(exc), request, **exc.extra)


async def validation_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):
        raise TypeError(
            f"validation_error handles RequestValidationError, not {type(exc).__name__}"
        )
    if _epcis(request):
        return _epcis_error(exc)
    errors = [
        {"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "message": e["msg"]}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    if wants_html(request):
        from minyun.web.pages import error_page

        return error_page(request, 422, "Invalid input", detail)
    return problem(422, "invalid", "Invalid input", detail, request, errors=errors)


async def http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):
        raise TypeError(f"http_error handles HTTPException, not {type(exc).__name__}")
    if _epcis(request):
        return _epcis_error(exc)
    if wants_html(request):
        from minyun.web.pages import error_page

        return error_page(request, exc.status_code, "Error", str(exc.detail))
    code = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
        exc.status_code, "http"
    )
    return problem(exc.status_code, code, str(exc.detail), str(exc.detail), request)


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected, a failed commit included: a 500 that names no code or path.

    The traceback goes to the log with the request id; the client gets the request id only.
    """
    log.error(
        "unhandled error in %s %s (request %s)",
        request.method,
        request.url.path,
        getattr(request.state, "request_id", None),
        exc_info=exc,
    )
    detail = "the request could not be completed and nothing it changed was kept"
    if wants_html(request):
        from minyun.web.pages import error_page

        return error_page(request, 500, "Server error", detail)
    return problem(500, "server-error", "Server error", detail, request)
