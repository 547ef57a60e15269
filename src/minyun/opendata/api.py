"""Open data over HTTP: the CKAN-compatible Action API, downloads, DCAT, the steward's API.

`/api/3/action/{action}` and `/api/action/{action}` (GET with query parameters, POST with a
JSON or form body) answer in CKAN's envelope: `{"help", "success": true, "result"}` or
`{"help", "success": false, "error": {"__type", "message", …}}` with CKAN's status codes
(400 unknown action, 403 Authorization Error, 404 Not Found Error, 409 Validation Error and
Search Query Error), so `ckanapi.RemoteCKAN` and CKAN harvesters work unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from minyun.core.errors import DomainError, Invalid, NotFound, Unauthenticated
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.opendata import applications, ckan, dcat, developers, downloads, service
from minyun.opendata.models import OpenDataset
from minyun.web import problems
from minyun.web.deps import ActorDep, PlatformDep, SessionDep, get_actor

router = APIRouter(tags=["opendata"])
HELP = "/api/3/action/help_show?name={action}"
MAX_BODY = 100_000


def _help(request: Request, action: str) -> str:
    return str(request.base_url).rstrip("/") + HELP.format(action=action)


def ckan_error(request: Request, status: int, exc: DomainError) -> Response:
    """A domain error in CKAN's envelope and status codes."""
    action = request.url.path.rsplit("/", 1)[-1]
    message = str(exc)
    error: dict[str, Any]
    if isinstance(exc, ckan.SearchQueryError):
        status, error = 409, {"__type": "Search Query Error", "message": message}
    elif isinstance(exc, NotFound):
        error = {"__type": "Not Found Error", "message": f"Not found: {message}"}
    elif isinstance(exc, Invalid):
        status = 409
        field = str(exc.extra.get("field") or "message")
        error = {"__type": "Validation Error", field: [message], "message": message}
    elif isinstance(exc, Unauthenticated) or status in (401, 403):
        status, error = (
            403,
            {"__type": "Authorization Error", "message": f"Access denied: {message}"},
        )
    else:
        error = {"__type": exc.title, "message": message}
    body = {"help": _help(request, action), "success": False, "error": error}
    headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else None
    return JSONResponse(body, status, headers=headers)


problems.ERROR_FORMATS["/api/3/action/"] = ckan_error
problems.ERROR_FORMATS["/api/action/"] = ckan_error


async def _data(request: Request) -> dict[str, Any]:
    if request.method == "GET":
        data: dict[str, Any] = {}
        for key in request.query_params:
            values = request.query_params.getlist(key)
            data[key] = values if len(values) > 1 else values[0]
        return data
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Invalid("the request body is too large", field="body")
    kind = request.headers.get("content-type", "")
    if not body.strip():
        return {}
    if "json" in kind or body.lstrip().startswith(b"{"):
        try:
            parsed = json.loads(body)
        except ValueError:
            raise Invalid("the body is not valid JSON", field="body") from None
        if not isinstance(parsed, dict):
            raise Invalid("the body must be a JSON object", field="body")
        return parsed
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def action_data(request: Request) -> dict[str, Any]:
    """The action's data_dict (a dependency, so its errors pass the request's transaction)."""
    return await _data(request)


@dataclass(frozen=True)
class Caller:
    """Who calls an action: a developer key's owner (and the key), a token's client, or nobody."""

    actor: Principal
    key: str | None = None


def ckan_caller(request: Request, session: SessionDep, platform: PlatformDep) -> Caller:
    """A developer key as CKAN clients send it (`X-CKAN-API-Key`, or `Authorization` without
    a scheme), counted against its limit; else the usual bearer token or anonymous."""
    raw = request.headers.get("x-ckan-api-key", "")
    authorization = request.headers.get("authorization", "")
    if not raw and authorization and " " not in authorization.strip():
        raw = authorization
    if raw:
        use = developers.use_key(session, raw)
        developers.count_call(platform.settings.rate_limit_uri, use)
        return Caller(use.actor, use.prefix)
    return Caller(get_actor(request, session, platform))


CallerDep = Annotated[Caller, Depends(ckan_caller)]
DataDep = Depends(action_data)


def _call(
    action: str, request: Request, session: Session, caller: Caller, platform: Platform,
    data: dict[str, Any],
) -> JSONResponse:  # fmt: skip
    handler = ckan.ACTIONS.get(action)
    if handler is None:
        body = {"help": _help(request, action), "success": False,
                "error": {"__type": "Bad request", "message": f"Action name not known: {action}"}}  # fmt: skip
        return JSONResponse(body, 400)
    call = ckan.Call(session, platform.lake, caller.actor, data,
                     platform.settings.base_url.rstrip("/"), caller.key)  # fmt: skip
    result = handler(call)
    return JSONResponse({"help": _help(request, action), "success": True, "result": result})


@router.get("/api/3/action/{action}")
def action_get(
    action: str, request: Request, session: SessionDep, caller: CallerDep, platform: PlatformDep,
    data: dict[str, Any] = DataDep,
) -> JSONResponse:  # fmt: skip
    """A CKAN action (status_show, package_list, package_search, package_show,
    organization_list, organization_show, group_list, tag_list, resource_show,
    datastore_search, datastore_search_sql), its arguments as query parameters."""
    return _call(action, request, session, caller, platform, data)


@router.post("/api/3/action/{action}")
def action_post(
    action: str, request: Request, session: SessionDep, caller: CallerDep, platform: PlatformDep,
    data: dict[str, Any] = DataDep,
) -> JSONResponse:  # fmt: skip
    """A CKAN action, its arguments as a JSON object (or a form)."""
    return _call(action, request, session, caller, platform, data)


@router.api_route("/api/action/{action}", methods=["GET", "POST"], include_in_schema=False)
def action(
    action: str, request: Request, session: SessionDep, caller: CallerDep, platform: PlatformDep,
    data: dict[str, Any] = DataDep,
) -> JSONResponse:  # fmt: skip
    return _call(action, request, session, caller, platform, data)


@router.get("/opendata/datasets/{name}/download.{fmt}")
def download(
    name: str, fmt: str, session: SessionDep, caller: CallerDep, platform: PlatformDep
) -> StreamingResponse:
    """The dataset's rows as CSV (UTF-8 with BOM), XLSX, JSON or Parquet, streamed.

    Anonymous, signed in, or with a developer key (`X-CKAN-API-Key`), as the CKAN API."""
    if fmt not in downloads.ENCODERS:
        raise NotFound(f"no download format {fmt}")
    found = service.open_download(session, platform.lake, caller.actor, name, fmt=fmt,
                                  key=caller.key)  # fmt: skip
    body = downloads.ENCODERS[fmt](found.schema, found.batches)
    filename = f"{found.dataset.name}-v{found.dataset.version}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(body, media_type=downloads.MEDIA[fmt], headers=headers)


def _dcat_response(text: str, fmt: str) -> Response:
    media = "text/turtle" if fmt == "ttl" else "application/ld+json"
    return Response(text, media_type=f"{media}; charset=utf-8")


@router.get("/opendata/catalog.{fmt}")
def dcat_catalog(fmt: str, session: SessionDep, platform: PlatformDep) -> Response:
    """The open catalogue as DCAT: `catalog.ttl` (Turtle) or `catalog.jsonld` (JSON-LD)."""
    if fmt not in ("ttl", "jsonld"):
        raise NotFound(f"no catalogue format {fmt}")
    found = session.scalars(service.listed_query().order_by(OpenDataset.name))
    graph = dcat.catalog_graph(found, platform.settings.base_url.rstrip("/"))
    return _dcat_response(dcat.serialize(graph, fmt), fmt)


@router.get("/opendata/datasets/{name}.{fmt}")
def dcat_dataset(
    name: str, fmt: str, session: SessionDep, actor: ActorDep, platform: PlatformDep
) -> Response:
    """One open dataset as DCAT (`.ttl` or `.jsonld`)."""
    if fmt not in ("ttl", "jsonld"):
        raise NotFound(f"no format {fmt}")
    dataset = service.access_dataset(session, actor, name)
    graph = dcat.dataset_graph(dataset, platform.settings.base_url.rstrip("/"))
    return _dcat_response(dcat.serialize(graph, fmt), fmt)


# --- the steward's API ----------------------------------------------------------------------


class AggregateIn(BaseModel):
    fn: str
    field: str | None = None
    name: str | None = None


class DatasetCreate(BaseModel):
    resource: str
    name: str = Field(max_length=100)
    title: str = Field(max_length=200)
    description: str = Field("", max_length=5000)
    domain: str | None = None
    tags: list[str] = Field(default_factory=list, max_length=20)
    licence: str = "cc-by-4.0"
    frequency: str = "irregular"
    temporal_start: date | None = None
    temporal_end: date | None = None
    spatial: list[str] = Field(default_factory=list, max_length=50)
    fields: list[str] = Field(default_factory=list, max_length=200)
    row_filter: str | None = Field(None, max_length=2000)
    aggregates: list[AggregateIn] = Field(default_factory=list, max_length=20)
    min_group: int = Field(1, ge=1, le=1000)


class DatasetRead(BaseModel):
    key: str
    name: str
    title: str
    domain: str
    state: str
    version: int
    lake_version: int
    fields: list[str]
    row_filter: str | None
    aggregates: list[dict[str, Any]]


@router.post("/api/v1/open-datasets", status_code=201, response_model=DatasetRead)
def open_dataset(body: DatasetCreate, session: SessionDep, actor: ActorDep) -> DatasetRead:
    """Open a view of your department's resource after the release check (stewards)."""
    values = body.model_dump(exclude={"resource", "aggregates"})
    dataset = service.open_dataset(
        session,
        actor,
        body.resource,
        aggregates=[a.model_dump() for a in body.aggregates],
        **values,
    )
    return DatasetRead.model_validate(dataset, from_attributes=True)


@router.get("/api/v1/open-datasets/{name}/versions")
def dataset_versions(name: str, session: SessionDep, actor: ActorDep) -> list[dict[str, Any]]:
    """The open dataset's versions, newest first: lake version, columns, state, note."""
    dataset = service.access_dataset(session, actor, name)
    return [
        {"number": v.number, "lake_version": v.lake_version, "schema_version": v.schema_version,
         "columns": v.columns, "state": v.state, "note": v.note,
         "created_at": v.created_at.isoformat()}
        for v in service.versions(session, dataset)
    ]  # fmt: skip


# --- developers' applications for conditionally open datasets -------------------------------


class ApplicationIn(BaseModel):
    dataset: str = Field(max_length=100)
    purpose: str = Field(max_length=2000)


class ApplicationRead(BaseModel):
    id: int
    dataset: str
    purpose: str
    status: str
    decision_reason: str | None
    expires_at: datetime | None
    created_at: datetime


def _application(app: Any) -> ApplicationRead:
    return ApplicationRead(id=app.id, dataset=app.dataset.name, purpose=app.purpose,
                           status=app.status, decision_reason=app.decision_reason,
                           expires_at=app.expires_at, created_at=app.created_at)  # fmt: skip


@router.post("/api/v1/open-applications", status_code=201)
def apply(body: ApplicationIn, session: SessionDep, caller: CallerDep) -> ApplicationRead:
    """Apply for a conditionally open dataset with a purpose (signed in, or with an API key)."""
    return _application(
        applications.apply(session, caller.actor, body.dataset, purpose=body.purpose)
    )


@router.get("/api/v1/open-applications")
def my_applications(session: SessionDep, caller: CallerDep) -> list[ApplicationRead]:
    """Your applications and their state: submitted, approved (until when), rejected (why)."""
    return [_application(a) for a in applications.mine(session, caller.actor)]
