"""The FastAPI application: JSON API under /api/v1, HTML pages, one error format."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

import minyun.handlers  # noqa: F401 - inline jobs of every kind run in this process
from minyun.core.config import Settings, get_settings
from minyun.core.errors import DomainError
from minyun.core.jobs import recover
from minyun.core.platform import Platform
from minyun.core.throttle import DenialBudget
from minyun.query.lookup import KeyLookups
from minyun.query.online import KeyLookupRoute
from minyun.web import problems, sessions
from minyun.web.limits import BodyLimit
from minyun.web.request_context import RequestContext

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
# Refusals of anonymous requests recorded one by one per address (see deps.screen_denial).
DENIALS_RECORDED = "20/minute"
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def create_app(platform: Platform | None = None, settings: Settings | None = None) -> FastAPI:
    """Build the app around an open platform (or open one from the settings)."""
    node = platform or Platform.open(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if node.dispatcher.mode == "inline":
            requeued = recover(node.factory, node.dispatcher)
            if requeued:
                log.info("resumed %d interrupted jobs", len(requeued))
            # Jobs whose runner dies later (a killed CLI load, say) are found without a restart.
            node.dispatcher.start_recovery(node.factory)
        yield
        await node.audit_appender.close_loop()
        await app.state.lookups.store.close()
        if platform is None:
            node.close()

    app = FastAPI(
        title="minyun 闽云 API",
        version="0.1.0",
        description="Provincial government data platform: catalog, sharing, open data, services.",
        docs_url=None,  # served below from the vendored swagger-ui-dist
        openapi_url="/api/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.platform = node
    app.state.lookups = KeyLookups(node)
    app.state.denials = DenialBudget(node.settings.rate_limit_uri, DENIALS_RECORDED)

    app.add_exception_handler(DomainError, problems.domain_error)
    app.add_exception_handler(RequestValidationError, problems.validation_error)
    app.add_exception_handler(StarletteHTTPException, problems.http_error)
    app.add_exception_handler(Exception, problems.server_error)

    app.add_middleware(
        sessions.ServerSessions,
        store=sessions.store_for(node.settings.session_uri, node.factory),
        https_only=node.settings.base_url.startswith("https://"),
    )
    # Bearer-token key lookups are answered here, before the router (query/online.py).
    app.add_middleware(KeyLookupRoute, lookups=app.state.lookups)
    app.add_middleware(RequestContext)
    app.add_middleware(BodyLimit, upload_limit=node.settings.upload_max_bytes)

    from minyun.accounts.api import router as accounts_api
    from minyun.admin.api import router as admin_api
    from minyun.apps.ecocloud.api import router as eco_api
    from minyun.apps.ecocloud.pages import router as eco_pages
    from minyun.apps.food.api import router as food_api
    from minyun.apps.food.pages import router as food_pages
    from minyun.apps.grid.api import router as grid_open311
    from minyun.apps.grid.pages import router as grid_pages
    from minyun.catalog.api import router as catalog_api
    from minyun.exchange.api import router as exchange_api
    from minyun.exchange.batch_api import router as batch_api
    from minyun.exchange.batch_pages import router as batch_pages
    from minyun.exchange.pages import router as exchange_pages
    from minyun.ingest.api import router as ingest_api
    from minyun.licences.api import router as licences_api
    from minyun.licences.pages import router as licences_pages
    from minyun.nodes.api import router as nodes_api
    from minyun.nodes.pages import router as nodes_pages
    from minyun.opendata.api import router as opendata_api
    from minyun.opendata.pages import router as opendata_pages
    from minyun.orgs.api import router as orgs_api
    from minyun.push.api import router as events_api
    from minyun.query.api import router as query_api
    from minyun.subjects.pages import router as subjects_pages
    from minyun.web.pages import router as pages

    # The row API first: the online key lookup is the hottest route, and routes are matched
    # in order (no other router's path overlaps these).
    for router in (
        query_api,
        accounts_api,
        orgs_api,
        admin_api,
        eco_api,
        catalog_api,
        exchange_api,
        ingest_api,
        events_api,
        pages,
        eco_pages,
        exchange_pages,
        batch_api,
        batch_pages,
        nodes_api,
        nodes_pages,
        opendata_api,
        opendata_pages,
        licences_api,
        licences_pages,
        grid_open311,
        grid_pages,
        food_api,
        food_pages,
        subjects_pages,
    ):
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """The control-plane database answers and its schema is current."""
        try:
            with node.engine.connect() as connection:
                version = connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar()
        except Exception:  # any failure means not ready; the reason goes to the log only
            log.exception("readiness check: the control-plane database did not answer")
            return JSONResponse({"status": "unavailable", "detail": "database unavailable"}, 503)
        return JSONResponse({"status": "ready", "schema": version, "node": node.settings.node_name})

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        """Swagger UI over the OpenAPI schema, every file served by this node."""
        return HTMLResponse(DOCS_PAGE, headers={"Content-Security-Policy": DOCS_CSP})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>minyun 闽云 API</title>
<link rel="icon" href="/static/vendor/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="/api/openapi.json"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script>
</body>
</html>
"""
