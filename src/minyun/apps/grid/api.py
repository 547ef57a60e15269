"""Open311 GeoReport v2 at /open311/v2 (XML and JSON), and the reports' photos.

HTTP only: each route parses the spec's parameters, calls the grid service once and writes
the spec's document. Errors are the spec's error list in the requested format, with its
status codes (400 bad input, 403 api_key, 404 unknown service, request, token or
jurisdiction, 429 over the key's rate); nothing of a refused request is kept.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from minyun.apps.grid import apikeys, open311, service
from minyun.apps.grid.photos import process, store_for
from minyun.apps.grid.service import NewReport
from minyun.core.errors import DomainError, Invalid, NotFound, TooManyRequests
from minyun.core.platform import Platform
from minyun.web.deps import IdPath, PlatformDep, SessionDep

router = APIRouter(prefix="/open311/v2", tags=["open311"])
CONTACT_FIELDS = ("email", "device_id", "account_id", "first_name", "last_name", "phone")


def document(fmt: str, root: str, body: Any, status: int = 200, **headers: str) -> Response:
    """The body in the format the path asked for (.xml or .json)."""
    if fmt == "json":
        return JSONResponse(body, status, media_type=open311.FORMATS["json"], headers=headers)
    return Response(open311.to_xml(root, body), status, media_type=open311.FORMATS["xml"],
                    headers=headers)  # fmt: skip


def error(fmt: str, exc: DomainError) -> Response:
    """A refusal as the spec's error list."""
    if isinstance(exc, NotFound):
        status = 404
    elif exc.code == "api-key" or exc.code in ("forbidden", "unauthenticated"):
        status = 403
    elif isinstance(exc, TooManyRequests):
        status = 429
    else:
        status = 400
    headers = {}
    if "retry_after" in exc.extra:
        headers["Retry-After"] = str(exc.extra["retry_after"])
    return document(fmt if fmt in open311.FORMATS else "xml", "errors",
                    open311.error_list(status, str(exc)), status, **headers)  # fmt: skip


def _check(fmt: str, jurisdiction_id: str | None) -> None:
    if fmt not in open311.FORMATS:
        raise NotFound(f"format {fmt} is not served: use xml or json", code="format")
    if jurisdiction_id not in (None, "", open311.JURISDICTION):
        raise NotFound(f"jurisdiction_id {jurisdiction_id} not found", code="jurisdiction")


def _media_url(platform: Platform) -> Any:
    base = platform.settings.base_url.rstrip("/")
    return lambda photo_id: f"{base}/open311/v2/media/{photo_id}.jpg"


def _answer(session: Session, fmt: str, build: Any) -> Response:
    try:
        return build()  # type: ignore[no-any-return]
    except DomainError as exc:
        session.rollback()
        return error(fmt, exc)


@router.get("/discovery.{fmt}")
def discovery(fmt: str, session: SessionDep, platform: PlatformDep) -> Response:
    """Service discovery: the endpoint, its specification and formats."""

    def build() -> Response:
        _check(fmt, None)
        return document(fmt, "discovery", open311.discovery(platform.settings.base_url))

    return _answer(session, fmt, build)


@router.get("/services.{fmt}")
def services(fmt: str, session: SessionDep, jurisdiction_id: str | None = None) -> Response:
    """The service list (report categories)."""

    def build() -> Response:
        _check(fmt, jurisdiction_id)
        body = [open311.service_entry(s) for s in service.list_services(session)]
        return document(fmt, "services", body)

    return _answer(session, fmt, build)


@router.get("/services/{code}.{fmt}")
def service_definition(
    code: str, fmt: str, session: SessionDep, jurisdiction_id: str | None = None
) -> Response:
    """One service's definition: its attributes."""

    def build() -> Response:
        _check(fmt, jurisdiction_id)
        found = service.get_service(session, code)
        return document(fmt, "service_definition", open311.service_definition(found))

    return _answer(session, fmt, build)


@router.get("/requests.{fmt}")
def requests_list(
    fmt: str,
    session: SessionDep,
    platform: PlatformDep,
    jurisdiction_id: str | None = None,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
) -> Response:
    """Service requests by ids, or by service codes, dates and status (last 90 days, 1000)."""

    def build() -> Response:
        _check(fmt, jurisdiction_id)
        ids = open311.split(service_request_id)
        if any(not i.isdigit() or len(i) > 9 for i in ids):
            raise Invalid("service_request_id is a comma-separated list of ids",
                          field="service_request_id")  # fmt: skip
        found = service.find_requests(
            session,
            ids=[int(i) for i in ids],
            service_codes=open311.split(service_code),
            start=open311.parse_time(start_date, "start_date") if start_date else None,
            end=open311.parse_time(end_date, "end_date") if end_date else None,
            statuses=open311.split(status),
            limit=open311.LIST_LIMIT,
            default_days=open311.DEFAULT_DAYS,
        )
        body = open311.request_entries(session, found, _media_url(platform))
        return document(fmt, "service_requests", body)

    return _answer(session, fmt, build)


@router.get("/requests/{request_id}.{fmt}")
def request_one(
    request_id: str,
    fmt: str,
    session: SessionDep,
    platform: PlatformDep,
    jurisdiction_id: str | None = None,
) -> Response:
    """One service request, as a list of one."""

    def build() -> Response:
        _check(fmt, jurisdiction_id)
        if not request_id.isdigit() or len(request_id) > 9:
            raise NotFound(f"service_request_id {request_id} not found", code="unknown-report")
        found = service.find_requests(session, ids=[int(request_id)])
        if not found:
            raise NotFound(f"service_request_id {request_id} not found", code="unknown-report")
        return document(fmt, "service_requests",
                        open311.request_entries(session, found, _media_url(platform)))  # fmt: skip

    return _answer(session, fmt, build)


@router.get("/tokens/{token}.{fmt}")
def token(
    token: str, fmt: str, session: SessionDep, jurisdiction_id: str | None = None
) -> Response:
    """The service_request_id a token stands for."""

    def build() -> Response:
        _check(fmt, jurisdiction_id)
        found = service.find_by_token(session, token)
        return document(fmt, "service_requests",
                        [{"service_request_id": found.id, "token": found.token}])  # fmt: skip

    return _answer(session, fmt, build)


@router.post("/requests.{fmt}")
async def create_request(
    fmt: str, request: Request, session: SessionDep, platform: PlatformDep
) -> Response:
    """Create a service request (form-encoded; `media` as a multipart file is accepted too)."""
    try:
        form = await request.form()
        photos = [await v.read() for k, v in form.multi_items()
                  if k == "media" and isinstance(v, UploadFile)]  # fmt: skip
    except Exception:  # a body that is not a form at all
        return error(fmt, Invalid("the body is not a form", field="body"))
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    attributes = open311.attributes_of(form.multi_items())
    store = store_for(platform.settings.lake_uri)

    def build() -> Response:
        _check(fmt, fields.get("jurisdiction_id"))
        if not fields.get("service_code"):
            raise Invalid("service_code was not provided", field="service_code")
        # The key is checked in a short read of its own, and the photos are decoded, stripped
        # and thumbnailed before the report's transaction starts: on SQLite a transaction holds
        # the node's one write lock, which the photo work must not keep for a whole decode.
        with platform.factory() as check, check.begin():
            key, actor = apikeys.check_key(check, fields.get("api_key", ""),
                                           storage_uri=platform.settings.rate_limit_uri)  # fmt: skip
            key_id = key.id
        if len(photos) > service.PHOTOS_MAX:
            raise Invalid(f"at most {service.PHOTOS_MAX} photos", field="media", code="photo-count")
        checked = [process(p) for p in photos]
        contact = {f: fields[f] for f in CONTACT_FIELDS if fields.get(f)}
        media_url = fields.get("media_url", "").strip()
        if media_url:
            if not media_url.startswith(("http://", "https://")) or len(media_url) > 500:
                raise Invalid("media_url is not an http(s) URL", field="media_url")
            contact["media_url"] = media_url
        report = service.file_report(session, actor, store, NewReport(
            service_code=fields["service_code"],
            description=fields.get("description", ""),
            lat=_coordinate(fields, "lat"),
            long=_coordinate(fields, "long"),
            address_string=fields.get("address_string", ""),
            attributes=attributes,
            photos=checked,
            contact=contact,
            api_key_id=key_id,
        ))  # fmt: skip
        notice = service.get_service(session, report.service_code).notice
        body = [{"service_request_id": report.id, "token": report.token,
                 "service_notice": notice or None, "account_id": contact.get("account_id")}]  # fmt: skip
        return document(fmt, "service_requests", body)

    return await run_in_threadpool(_answer, session, fmt, build)


def _coordinate(fields: dict[str, str], name: str) -> float | None:
    value = fields.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise Invalid(f"{name} is not a number", field=name) from None
    if number != number or abs(number) > 180:
        raise Invalid(f"{name} is out of range", field=name)
    return number


@router.get("/media/{photo_id}.thumb.jpg", include_in_schema=False)
def media_thumb(photo_id: IdPath, session: SessionDep, platform: PlatformDep) -> Response:
    """A report photo's thumbnail."""
    photo = service.get_photo(session, None, photo_id)
    data = store_for(platform.settings.lake_uri).get(photo.thumb_key)
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/media/{photo_id}.jpg", include_in_schema=False)
def media(photo_id: IdPath, session: SessionDep, platform: PlatformDep) -> Response:
    """A report's photo as stored: re-encoded, without EXIF (no location, no camera)."""
    photo = service.get_photo(session, None, photo_id)
    data = store_for(platform.settings.lake_uri).get(photo.key)
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"}
    )


CALLS = re.compile(r"(discovery|services|requests)|(services|requests|tokens)/[^/]+")


@router.api_route(
    "/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
    include_in_schema=False,
)
def not_a_call(path: str, request: Request) -> Response:
    """Anything else under the endpoint: the spec's error list, in the format the path names
    (XML otherwise) — 405 for a known call with another method, 404 for an unknown one."""
    stem, _, fmt = path.rpartition(".")
    fmt = fmt if stem and fmt in open311.FORMATS else "xml"
    if stem and CALLS.fullmatch(stem):
        exc: DomainError = Invalid(f"{request.method} is not a GeoReport v2 call on {path}",
                                   code="method")  # fmt: skip
        return document(fmt, "errors", open311.error_list(405, str(exc)), 405,
                        Allow="POST, GET" if stem == "requests" else "GET")  # fmt: skip
    return error(fmt, NotFound(f"{path} is not a GeoReport v2 call", code="unknown-call"))
