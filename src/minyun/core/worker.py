"""The `worker` jobs mode: a procrastinate worker that runs minyun jobs from the queue."""

from __future__ import annotations

import logging
from typing import Any

from minyun.core import jobs
from minyun.core.db import libpq_url
from minyun.core.errors import ConfigError
from minyun.core.platform import Platform

log = logging.getLogger(__name__)


def _conninfo(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        raise ConfigError("the worker needs PostgreSQL (MINYUN_DATABASE_URL=postgresql://...)")
    return libpq_url(database_url)


def worker_app(platform: Platform) -> Any:
    """A procrastinate app whose one task runs a minyun job by id."""
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=_conninfo(platform.settings.database_url))
    )

    @app.task(name="minyun.run_job", queue=jobs.QUEUE, pass_context=False)
    def run_job(job_id: str) -> None:
        job = jobs.run(platform.factory, job_id)
        log.info("job %s %s: %s", job.id, job.kind, job.state)

    return app


def run_worker(platform: Platform, *, concurrency: int = 2, until_idle: bool = False) -> None:
    """Resume interrupted jobs, then run queued jobs until stopped (or the queue is empty)."""
    resumed = jobs.recover(platform.factory, platform.dispatcher)
    if resumed:
        log.info("re-queued %d interrupted jobs", len(resumed))
    platform.dispatcher.start_recovery(platform.factory)  # runners that die while this one runs
    app = worker_app(platform)
    app.run_worker(queues=[jobs.QUEUE], concurrency=concurrency, wait=not until_idle)
