"""The SLA schedule: overdue tasks are escalated by themselves, as a `grid.escalate` job.

A ticker (`Escalator`) looks every minute whether any task's clock has run out (one small
query) and, only then, submits the `grid.escalate` job keyed by the minute: however many
processes tick (several API workers in production), each minute has one job. The job runs
where every job runs — a thread of this process in the embedded default, `minyun worker`
on the PostgreSQL queue in production — and `service.escalate_overdue` moves each task up
once, even when two runs overlap. The web app starts the ticker (the grid pages' router
lifespan, which FastAPI merges into the app's); `minyun grid escalate --follow` does the same work without
a web process.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from minyun.apps.grid import service
from minyun.core import clock, jobs
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work

log = logging.getLogger(__name__)

KIND = "grid.escalate"
EVERY_SECONDS = 60.0
SCHEDULER = Principal.system(on_behalf_of="grid.schedule")


def due(session: Session, now: datetime) -> bool:
    """Whether any task's next escalation is due."""
    return bool(session.scalar(select(exists().where(service.overdue(now)))))


def submit_due(
    session: Session, actor: Principal, *, now: datetime | None = None
) -> jobs.Job | None:
    """Queue this minute's escalation run if a clock has run out; None when nothing is due.

    Keyed by the minute, so asking again (another process, another tick) returns the same job.
    """
    now = now or clock.now()
    if not due(session, now):
        return None
    return jobs.submit(session, actor, KIND, {"due_at": now.isoformat(timespec="seconds")},
                       key=f"{KIND}:{now:%Y-%m-%dT%H:%M}")  # fmt: skip


@jobs.handler(KIND)
def escalate_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Escalate what is overdue when the job runs; safe to run again (each step once)."""
    with unit_of_work(ctx.factory) as session:
        moved = service.escalate_overdue(session, Principal.system(on_behalf_of=KIND))
    return {"escalated": moved}


class Escalator:
    """A thread that submits the escalation job whenever something is due."""

    def __init__(self, factory: sessionmaker[Session], *, every: float = EVERY_SECONDS) -> None:
        self.factory = factory
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> str | None:
        """One look: the id of the job submitted (or found for this minute), else None."""
        try:
            with unit_of_work(self.factory) as session:
                job = submit_due(session, SCHEDULER)
                return job.id if job is not None else None
        except IntegrityError:
            # Another process submitted this minute's job between our look and our insert.
            return None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="minyun-grid-escalate",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.warning("grid escalation: looking for overdue tasks failed", exc_info=True)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
