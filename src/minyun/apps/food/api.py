"""The EPCIS 2.0 REST binding under `/epcis`: capture, events, resources, named queries.

Routes only translate HTTP: the service decides. Errors leave as the binding's RFC 7807
problems (`type: epcisException:…`, its status), every response carries the standard
`GS1-*` headers, and lists page with `perPage` / `nextPageToken` and a `Link: rel="next"`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Body, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from minyun.apps.food import epcis, product, pull, risk, subscriptions, trace
from minyun.apps.food import service as svc
from minyun.core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthenticated
from minyun.web.deps import ActorDep, PlatformDep, SessionDep

HEADERS = {
    "GS1-EPCIS-Version": epcis.EPCIS_VERSION,
    "GS1-CBV-Version": epcis.CBV_VERSION,
    "GS1-EPCIS-Min": epcis.EPCIS_VERSION,
    "GS1-EPCIS-Max": epcis.EPCIS_VERSION,
    "GS1-CBV-Min": epcis.CBV_VERSION,
    "GS1-CBV-Max": epcis.CBV_VERSION,
    "GS1-Extensions": "",
    "GS1-Vendor-Version": "minyun-0.1",
    "GS1-EPCIS-Capture-Limit": str(svc.CAPTURE_LIMIT),
    "GS1-Capture-Error-Behaviour": "rollback",
}
STATUS = {
    "ValidationException": 400,
    "QueryParameterException": 400,
    "CaptureLimitExceededException": 413,
    "QueryTooLargeException": 413,
    "NoSuchResourceException": 404,
    "NoSuchNameException": 404,
    "ResourceAlreadyExistsException": 409,
    "UnsupportedMediaTypeException": 415,
    "NotAcceptableException": 406,
    "SecurityException": 403,
    "ImplementationException": 500,
}
MEDIA = ("application/json", "application/ld+json")
RESOURCES = ("eventTypes", "epcs", "bizSteps", "bizLocations", "readPoints", "dispositions")


def _exception_of(exc: DomainError) -> tuple[str, int]:
    if exc.code in STATUS:
        return exc.code, STATUS[exc.code]
    if isinstance(exc, Unauthenticated):
        return "SecurityException", 401
    if isinstance(exc, Forbidden):
        return "SecurityException", 403
    if isinstance(exc, NotFound):
        return "NoSuchResourceException", 404
    if isinstance(exc, Conflict):
        return "ResourceAlreadyExistsException", 409
    return "ValidationException", 400


def epcis_problem(kind: str, status: int, detail: str, **extra: Any) -> JSONResponse:
    """The binding's problem response."""
    body = {"type": f"epcisException:{kind}", "title": kind, "status": status,
            "detail": detail, **extra}  # fmt: skip
    headers = dict(HEADERS)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="minyun epcis"'
    return JSONResponse(body, status, media_type="application/problem+json", headers=headers)


def epcis_error(exc: Exception) -> JSONResponse:
    """A refusal of an `/epcis` route as the binding's problem (`web.problems` calls this for
    the `/epcis` paths, after the unit of work rolled back and audited the refusal)."""
    if isinstance(exc, DomainError):
        kind, status = _exception_of(exc)
        extra = {k: v for k, v in exc.extra.items() if k == "errors"}
        return epcis_problem(kind, status, str(exc), **extra)
    if isinstance(exc, RequestValidationError):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
        )
        return epcis_problem("QueryParameterException", 400, detail)
    if isinstance(exc, StarletteHTTPException):
        kind = {404: "NoSuchResourceException", 405: "ValidationException",
                413: "CaptureLimitExceededException"}.get(exc.status_code, "ImplementationException")  # fmt: skip
        return epcis_problem(kind, exc.status_code, str(exc.detail))
    return epcis_problem("ImplementationException", 500, "the request could not be completed")


class EpcisRoute(APIRoute):
    """Every answer of these routes carries the binding's `GS1-*` headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            response = await handler(request)
            for name, value in HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return route


epcis_router = APIRouter(prefix="/epcis", tags=["epcis"], route_class=EpcisRoute)


def _json(body: Any, status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(body, status, headers={**HEADERS, **headers})


def _json_with(body: Any, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(body, 200, headers={**HEADERS, **headers})


@epcis_router.get("")
def top_level(actor: ActorDep, session: SessionDep) -> JSONResponse:
    """The repository's top-level resources."""
    svc.list_queries(session, actor)  # the same right as any query
    return _json(["capture", "events", *RESOURCES, "queries"])


def _capture_headers(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in MEDIA:
        raise Invalid("send application/json or application/ld+json",
                      code="UnsupportedMediaTypeException")  # fmt: skip
    version = request.headers.get("GS1-EPCIS-Version")
    if version and not version.startswith("2."):
        raise Invalid(f"GS1-EPCIS-Version {version} is not served: 2.0.0",
                      code="NotAcceptableException")  # fmt: skip


@epcis_router.post("/capture", status_code=202)
async def capture(
    request: Request, actor: ActorDep, session: SessionDep, platform: PlatformDep
) -> JSONResponse:
    """Capture an EPCISDocument (JSON / JSON-LD): 202 and the capture job's Location."""
    _capture_headers(request)
    behaviour = request.headers.get("GS1-Capture-Error-Behaviour", "rollback")
    raw = await request.body()
    job = svc.capture(session, actor, platform.lake, raw, error_behaviour=behaviour)
    location = f"/epcis/capture/{job.capture_id}"
    return _json(svc.capture_document(job), 202, Location=location)


@epcis_router.get("/capture")
def captures(actor: ActorDep, session: SessionDep) -> JSONResponse:
    """The caller's organisation's newest capture jobs."""
    return _json([svc.capture_document(j) for j in svc.list_captures(session, actor)])


@epcis_router.get("/capture/{capture_id}")
def capture_job(capture_id: str, actor: ActorDep, session: SessionDep) -> JSONResponse:
    """A capture job: running, success, errors."""
    return _json(svc.capture_document(svc.get_capture(session, actor, capture_id)))


PerPage = Annotated[int | None, Query(alias="perPage", ge=1, le=1000)]
Token = Annotated[str | None, Query(alias="nextPageToken")]


def _page(request: Request, page: svc.EventPage, per_page: int | None) -> JSONResponse:
    headers: dict[str, str] = {}
    if page.next_token:
        params = [(k, v) for k, v in request.query_params.multi_items()
                  if k not in ("nextPageToken",)]  # fmt: skip
        params.append(("nextPageToken", page.next_token))
        if per_page is not None and not any(k == "perPage" for k, _ in params):
            params.append(("perPage", str(per_page)))
        headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
    return _json_with(svc.query_document(page), headers)


def _params(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


@epcis_router.get("/events")
def events(
    request: Request, actor: ActorDep, session: SessionDep, per_page: PerPage = None,
    token: Token = None,
) -> JSONResponse:  # fmt: skip
    """The events matching the standard query parameters, as an EPCISQueryDocument."""
    page = svc.query_events(session, actor, _params(request), per_page=per_page, token=token)
    return _page(request, page, per_page)


@epcis_router.post("/events", status_code=201)
async def capture_event(
    request: Request, actor: ActorDep, session: SessionDep, platform: PlatformDep
) -> JSONResponse:
    """Capture a single EPCIS event synchronously: 201 and the event's Location."""
    _capture_headers(request)
    event_id = svc.capture_event(session, actor, platform.lake, await request.body())
    return _json({"eventID": event_id}, 201, Location=f"/epcis/events/{quote(event_id, safe='')}")


@epcis_router.delete("/nextPageToken/{token}", status_code=204)
def release_token(token: str, actor: ActorDep, session: SessionDep) -> Response:
    """Release a page token's resources (none are held: tokens are signed positions)."""
    svc.release_page_token(session, actor, token)
    return Response(status_code=204, headers=HEADERS)


@epcis_router.get("/events/{event_id:path}")
def event(event_id: str, actor: ActorDep, session: SessionDep) -> JSONResponse:
    """One event by its eventID."""
    return _json(svc.query_document(svc.get_event(session, actor, event_id)))


@epcis_router.get("/queries")
def queries(actor: ActorDep, session: SessionDep) -> JSONResponse:
    """Every named query."""
    return _json([{"name": n.name, "query": n.query} for n in svc.list_queries(session, actor)])


@epcis_router.post("/queries", status_code=201)
def create_query(
    actor: ActorDep, session: SessionDep, body: Annotated[dict[str, Any], Body()]
) -> JSONResponse:
    """Save a named query (`{"name": …, "query": {…}}`); 201 and its Location."""
    name, query = body.get("name"), body.get("query")
    if not isinstance(name, str) or not isinstance(query, dict):
        raise Invalid("give a name and a query object", code="QueryParameterException")
    saved = svc.create_query(session, actor, name=name, query=query)
    return _json({"name": saved.name, "query": saved.query}, 201,
                 Location=f"/epcis/queries/{saved.name}")  # fmt: skip


@epcis_router.get("/queries/{name}")
def named_query(name: str, actor: ActorDep, session: SessionDep) -> JSONResponse:
    """A named query's definition."""
    saved = svc.get_query(session, actor, name)
    return _json({"name": saved.name, "query": saved.query})


@epcis_router.delete("/queries/{name}", status_code=204)
def delete_query(name: str, actor: ActorDep, session: SessionDep) -> Response:
    """Remove a named query."""
    svc.delete_query(session, actor, name)
    return Response(status_code=204, headers=HEADERS)


@epcis_router.get("/queries/{name}/events")
def named_query_events(
    name: str, request: Request, actor: ActorDep, session: SessionDep, per_page: PerPage = None,
    token: Token = None,
) -> JSONResponse:  # fmt: skip
    """The events of a named query."""
    saved = svc.get_query(session, actor, name)
    extra = {k: v for k, v in _params(request).items() if k not in ("perPage", "nextPageToken")}
    if extra:
        raise Invalid("a named query takes only perPage and nextPageToken",
                      code="QueryParameterException")  # fmt: skip
    page = svc.query_events(session, actor, saved.query, per_page=per_page, token=token,
                            query_name=name)  # fmt: skip
    return _page(request, page, per_page)


class SubscriptionIn(BaseModel):
    """A query subscription as the binding sends it."""

    dest: str = Field(min_length=8, max_length=2000)
    signatureToken: str | None = Field(default=None, max_length=2000)
    stream: bool = False
    schedule: dict[str, str | int] | None = None
    reportIfEmpty: bool = False
    initialRecordTime: str | None = None


@epcis_router.post("/queries/{name}/subscriptions", status_code=201)
def subscribe(
    name: str, body: SubscriptionIn, actor: ActorDep, session: SessionDep
) -> JSONResponse:
    """Subscribe a webhook to a named query's new events (streamed or scheduled)."""
    made = subscriptions.subscribe(
        session, actor, name, dest=body.dest, signature_token=body.signatureToken,
        stream=body.stream, schedule=body.schedule, report_if_empty=body.reportIfEmpty,
        initial_record_time=body.initialRecordTime,
    )  # fmt: skip
    return _json(subscriptions.as_dict(made), 201,
                 Location=f"/epcis/queries/{name}/subscriptions/{made.subscription_id}")  # fmt: skip


@epcis_router.get("/queries/{name}/subscriptions")
def query_subscriptions(name: str, actor: ActorDep, session: SessionDep) -> JSONResponse:
    """The subscriptions to a named query."""
    found = subscriptions.list_subscriptions(session, actor, name)
    return _json([subscriptions.as_dict(s) for s in found])


@epcis_router.get("/queries/{name}/subscriptions/{subscription_id}")
def query_subscription(
    name: str, subscription_id: str, actor: ActorDep, session: SessionDep
) -> JSONResponse:
    """One subscription."""
    found = subscriptions.get_subscription(session, actor, name, subscription_id)
    return _json(subscriptions.as_dict(found))


@epcis_router.delete("/queries/{name}/subscriptions/{subscription_id}", status_code=204)
def unsubscribe(name: str, subscription_id: str, actor: ActorDep, session: SessionDep) -> Response:
    """End a subscription."""
    subscriptions.unsubscribe(session, actor, name, subscription_id)
    return Response(status_code=204, headers=HEADERS)


@epcis_router.get("/{resource}")
def resource_list(resource: str, actor: ActorDep, session: SessionDep) -> JSONResponse:
    """The values of a top-level resource seen in stored events (`/epcis/bizSteps`, …)."""
    if resource not in RESOURCES:
        raise NotFound(f"no resource {resource}", code="NoSuchResourceException")
    return _json(svc.known_values(session, actor, resource))


@epcis_router.get("/{resource}/{value:path}/events")
def resource_events(
    resource: str, value: str, request: Request, actor: ActorDep, session: SessionDep,
    per_page: PerPage = None, token: Token = None,
) -> JSONResponse:  # fmt: skip
    """The events of one value of a resource (`/epcis/epcs/{epc}/events`, …), narrowed by
    further query parameters if given."""
    if resource not in RESOURCES:
        raise NotFound(f"no resource {resource}", code="NoSuchResourceException")
    params = _params(request)
    params.update(svc.resource_params(resource, value))
    extra = [svc.epc_condition(value)] if resource == "epcs" else []
    page = svc.query_events(session, actor, params, per_page=per_page, token=token,
                            extra=extra)  # fmt: skip
    return _page(request, page, per_page)


@epcis_router.get("/{resource}/{value:path}")
def resource_item(resource: str, value: str, actor: ActorDep, session: SessionDep) -> JSONResponse:
    """One value of a resource: what can be read under it."""
    if resource not in RESOURCES:
        raise NotFound(f"no resource {resource}", code="NoSuchResourceException")
    svc.list_queries(session, actor)
    return _json(["events"])


# --- supervision (minyun's own API, problem+json as everywhere under /api) -----------------

food_router = APIRouter(prefix="/api/v1/food", tags=["food"])


@food_router.get("/trace")
def trace_lot(
    actor: ActorDep,
    session: SessionDep,
    id: Annotated[str, Query(description="a lot, object or pallet: EPC URN or Digital Link")],
    direction: Annotated[str, Query(pattern="^(forward|backward)$")] = "forward",
) -> dict[str, Any]:
    """Trace a lot forward to every place it went, or backward to its origins."""
    return trace.as_dict(trace.trace(session, actor, id, direction=direction))


@food_router.get("/products/{path:path}")
def product_chain(path: str, actor: ActorDep, session: SessionDep) -> dict[str, Any]:
    """A product's chain by its Digital Link path (`01/<gtin>/10/<lot>`): public, or full
    for supervisors."""
    return product.as_dict(product.view(session, actor, path))


@food_router.get("/risk")
def risk_scores(actor: ActorDep, session: SessionDep) -> list[dict[str, Any]]:
    """Every business's risk score, explained per factor."""
    return [s.as_dict() for s in risk.scores(session, actor)]


@food_router.get("/worklist")
def inspection_worklist(actor: ActorDep, session: SessionDep) -> list[dict[str, Any]]:
    """The businesses to inspect, highest risk first."""
    return [s.as_dict() for s in risk.worklist(session, actor)]


@food_router.post("/uploads", status_code=201)
async def bulk_upload(
    actor: ActorDep, session: SessionDep, platform: PlatformDep, file: UploadFile
) -> dict[str, Any]:
    """Bulk upload of an EPCIS 2.0 document file (JSON / JSON-LD): captured all or nothing,
    by a client holding `epcis.capture`; the answer is the capture job."""
    raw = await file.read()
    job = svc.capture(session, actor, platform.lake, raw, source="upload")
    return svc.capture_document(job)


class PullSourceIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    base_url: str = Field(min_length=8, max_length=2000)
    token: str | None = Field(default=None, max_length=4000)
    query: dict[str, list[str]] = Field(default_factory=dict)


@food_router.post("/pull-sources", status_code=201)
def add_pull_source(actor: ActorDep, session: SessionDep, body: PullSourceIn) -> dict[str, Any]:
    """Register another EPCIS 2.0 repository to pull events from (admins, stewards)."""
    source = pull.add_source(session, actor, name=body.name, base_url=body.base_url,
                             token=body.token, query=body.query)  # fmt: skip
    return {"id": source.id, "name": source.name, "base_url": source.base_url}


@food_router.post("/subscription-runs", status_code=202)
def run_subscriptions(actor: ActorDep, session: SessionDep) -> dict[str, Any]:
    """Queue a delivery of every due query subscription (one per minute)."""
    job = subscriptions.submit(session, actor)
    return {"job": job.id}


@food_router.post("/pulls", status_code=202)
def run_pulls(actor: ActorDep, session: SessionDep, platform: PlatformDep) -> dict[str, Any]:
    """Queue a pull from every registered source (one per scheduling period)."""
    job = pull.submit(session, actor, platform.settings)
    return {"job": job.id}


router = APIRouter()
router.include_router(epcis_router)
router.include_router(food_router)
