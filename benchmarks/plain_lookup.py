"""The plain baseline of the exchange benchmark: a key lookup with no governance at all.

A minimal FastAPI app beside the product (never a switch inside it) that answers
`GET /api/v1/resources/{code}/rows/{key}` from the product's own serving index
(`serving_rows`, kept by `core.serving`) with asyncpg, the driver of the governed hot
path: one statement reads the index state and the row together, as `core.serving.lookup`
does, and the row goes back in the JSON shape of the product's row API. No token, no
access plan, no masks, no audit: what is left is the floor a governed lookup is compared
with (`exchange.governance_overhead_ratio`).

Serve it as the product is served, with the same uvicorn options and worker count:

    PLAIN_LOOKUP_DSN=postgresql://… uvicorn benchmarks.plain_lookup:app --workers 2

Each worker process opens its own small connection pool when it starts. Resource codes
are resolved to ids once per worker (the product caches its plans likewise).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request, Response

DSN_ENV = "PLAIN_LOOKUP_DSN"
POOL_SIZE_ENV = "PLAIN_LOOKUP_POOL"
DEFAULT_POOL = 8

RESOURCE_ID = "SELECT id FROM resources WHERE code = $1"
# The index state and the row in one statement (core.serving.lookup): a stale index or a
# missing key answers 404, never a row of another version.
LOOKUP = """
    SELECT s.lake_version, r.row::text
    FROM serving_state s
    LEFT JOIN serving_rows r ON r.resource_id = s.resource_id AND r.key = $2
    WHERE s.resource_id = $1
"""


def index_key(key: str) -> str:
    """The serving index's key of a one-column primary key (`core.serving.encode_key`)."""
    return json.dumps([key], ensure_ascii=False, separators=(",", ":"))


def body(row: dict[str, Any], version: int) -> bytes:
    """The response, in the shape of the product's key lookup (`{"row": …, "version": …}`)."""
    content = {"row": row, "version": version}
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


async def _keep_session(connection: asyncpg.Connection) -> None:
    """No reset: the lookup leaves no session state behind."""


def create_app(dsn: str | None = None, *, pool_size: int | None = None) -> FastAPI:
    """The baseline app over the PostgreSQL database `dsn` (default: $PLAIN_LOOKUP_DSN)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = dsn or os.environ[DSN_ENV]
        size = pool_size or int(os.environ.get(POOL_SIZE_ENV, DEFAULT_POOL))
        # As the product's pool (core.serving.PostgresFacts): a connection that ran one
        # SELECT goes back without asyncpg's reset round trip, so the ratio measures
        # governance, not pool settings.
        pool = await asyncpg.create_pool(
            url, min_size=min(2, size), max_size=size, reset=_keep_session
        )
        app.state.pool = pool
        app.state.resources = {}
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="plain lookup (benchmark baseline)", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/resources/{code}/rows/{key}")
    async def lookup(code: str, key: str, request: Request) -> Response:
        pool: asyncpg.Pool = request.app.state.pool
        resources: dict[str, int] = request.app.state.resources
        resource_id = resources.get(code)
        if resource_id is None:
            resource_id = await pool.fetchval(RESOURCE_ID, code)
            if resource_id is None:
                raise HTTPException(404, "no such resource")
            resources[code] = resource_id
        found = await pool.fetchrow(LOOKUP, resource_id, index_key(key))
        if found is None or found[1] is None:
            raise HTTPException(404, "no such row")
        return Response(body(json.loads(found[1]), found[0]), media_type="application/json")

    return app


app = create_app()
