"""Query API: a resource's rows as JSON, CSV or Parquet, one page at a time."""

from __future__ import annotations

import io
import json
from enum import StrEnum
from typing import Annotated, Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from minyun.core.serving import json_value
from minyun.core.uow import unit_of_work
from minyun.query import service
from minyun.query.lookup import Found, KeyLookups
from minyun.query.online import PURPOSE_MAX, row_query
from minyun.web.deps import INT32_MAX, ActorDep, PlatformDep, SessionDep, browser_actor

router = APIRouter(prefix="/api/v1", tags=["query"])
PARQUET = "application/vnd.apache.parquet"


class RowFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


_DOWNLOADS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'One page of rows; `Link: <…>; rel="next"` points to the next page.',
        "content": {
            "application/json": {},
            "text/csv": {},
            PARQUET: {},
        },
    }
}


@router.get("/resources/{code}/rows", response_class=Response, responses=_DOWNLOADS)
def read_rows(
    request: Request,
    code: str,
    session: SessionDep,
    platform: PlatformDep,
    actor: ActorDep,
    fields: Annotated[str | None, Query(description="fields to return: `a,b,c`")] = None,
    filter: Annotated[
        str | None, Query(description="e.g. `age >= 18 and city in ('福州', '厦门')`")
    ] = None,
    sort: Annotated[str | None, Query(description="`field,-other` (- for descending)")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = service.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the page before")] = None,
    version: Annotated[
        int | None, Query(ge=0, le=INT32_MAX, description="a past version (time travel)")
    ] = None,
    format: RowFormat = RowFormat.JSON,
    purpose: Annotated[str | None, Query(max_length=PURPOSE_MAX)] = None,
) -> Response:
    """Rows of a resource (its provider's staff and admins); every page is audited."""
    page = service.query_rows(
        session,
        platform.lake,
        actor,
        code,
        fields=fields,
        filter=filter,
        sort=sort,
        limit=limit,
        cursor=cursor,
        version=version,
        purpose=purpose,
    )
    headers = {"X-Resource-Version": str(page.version)}
    if page.next_cursor is not None:
        following = request.url.include_query_params(cursor=page.next_cursor)
        headers["Link"] = f'<{following}>; rel="next"'
    if format == RowFormat.CSV:
        buffer = io.BytesIO()
        pacsv.write_csv(page.table, buffer)
        headers["Content-Disposition"] = f'attachment; filename="{code}.csv"'
        return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
    if format == RowFormat.PARQUET:
        buffer = io.BytesIO()
        pq.write_table(page.table, buffer)
        headers["Content-Disposition"] = f'attachment; filename="{code}.parquet"'
        return Response(buffer.getvalue(), media_type=PARQUET, headers=headers)
    body = {
        "rows": page.table.to_pylist(),
        "next_cursor": page.next_cursor,
        "version": page.version,
    }
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=json_value)
    return Response(content.encode(), media_type="application/json", headers=headers)


# The key lookup's query parameters, read by `online.row_query` (FastAPI's parameter
# machinery costs more per call than the rest of the route; decision 0007).
_ROW_QUERY = [
    {
        "name": "fields", "in": "query", "required": False,
        "description": "fields to return: `a,b,c`", "schema": {"type": "string"},
    },
    {
        "name": "purpose", "in": "query", "required": False,
        "schema": {"type": "string", "maxLength": PURPOSE_MAX},
    },
]  # fmt: skip


@router.get(
    "/resources/{code}/rows/{key}",
    response_class=Response,
    openapi_extra={"parameters": _ROW_QUERY},
)
async def read_row(request: Request, code: str, key: str) -> Response:
    """One row by its primary key, as the caller's access plan shows it; audited.

    The online call of the sharing platform: API clients send their bearer token; a
    signed-in browser session reads the same row through the ordinary row query.
    """
    fields, purpose = row_query(request)
    lookups: KeyLookups = request.app.state.lookups
    authorization = request.headers.get("authorization", "")
    if authorization:
        found = await lookups.lookup(authorization, code, key, fields=fields, purpose=purpose)
    else:
        found = await run_in_threadpool(
            _browser_lookup, request, lookups, code, key, fields, purpose
        )
    headers = {"X-Resource-Version": str(found.version)}
    return Response(found.json(), media_type="application/json", headers=headers)


def _browser_lookup(
    request: Request,
    lookups: KeyLookups,
    code: str,
    key: str,
    fields: str | None,
    purpose: str | None,
) -> Found:
    with unit_of_work(lookups.platform.factory) as session:
        actor = browser_actor(request, session)
    return lookups.read_as(actor, code, key, fields=fields, purpose=purpose)
