"""Jobs: every long or bulk operation, with state, progress, result and resume point.

A job row lives in the control plane in both modes. `inline` runs it in this process
(a thread, or in the foreground for the CLI); `worker` enqueues it on procrastinate's
PostgreSQL queue inside the caller's transaction, so the job exists if and only if the
change that asked for it committed, and a `minyun worker` process runs it.
"""

from __future__ import annotations

import logging
import threading
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import JSON, BigInteger, CursorResult, Integer, String, Text, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from minyun.core import audit, clock
from minyun.core.db import Base, UTCDateTime, on_commit
from minyun.core.errors import ConfigError, Invalid, NotFound

if TYPE_CHECKING:
    from minyun.core.security import Principal

log = logging.getLogger(__name__)

QUEUE = "minyun"
STALE_AFTER = timedelta(seconds=60)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Job(Base):
    """One long operation and where it stands."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    state: Mapped[str] = mapped_column(String(12), index=True, default=JobState.QUEUED)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int | None] = mapped_column(BigInteger, default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    resume: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    @property
    def finished(self) -> bool:
        return self.state in (JobState.SUCCEEDED, JobState.FAILED)

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return min(100.0, 100.0 * self.done / self.total)


@dataclass
class JobContext:
    """What a handler gets: its parameters, where it left off, and ways to report."""

    job_id: str
    params: dict[str, Any]
    resume: dict[str, Any] | None
    factory: sessionmaker[Session]
    on_progress: Callable[[int, int | None, str | None], None] | None = None
    _last: dict[str, Any] = field(default_factory=dict)

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Record progress (its own small transaction, so the page sees it at once)."""
        with self.factory.begin() as session:
            values: dict[str, Any] = {"done": done, "heartbeat_at": clock.now()}
            if total is not None:
                values["total"] = total
            if message is not None:
                values["message"] = message
            session.execute(update(Job).where(Job.id == self.job_id).values(**values))
        if self.on_progress is not None:
            self.on_progress(done, total, message)

    def save_point(self, state: dict[str, Any]) -> None:
        """Remember how far the job got; after a crash the next attempt starts from here."""
        with self.factory.begin() as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(resume=state, heartbeat_at=clock.now())
            )
        self.resume = state


Handler = Callable[[JobContext], dict[str, Any] | None]
HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of `kind`; it must be safe to run again."""

    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


class Dispatcher:
    """How a committed job gets run: a thread here, or a worker via the queue."""

    def __init__(self, mode: str, factory: sessionmaker[Session] | None = None) -> None:
        if mode not in ("inline", "worker"):
            raise ConfigError(f"unknown jobs mode {mode!r}")
        self.mode = mode
        self.factory = factory
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def enqueue(self, session: Session, job: Job) -> None:
        """Called inside the submitting transaction."""
        if self.mode == "worker":
            _defer_on_queue(session, job.id)
        else:
            on_commit(session, lambda: self._run_in_thread(job.id))

    def _run_in_thread(self, job_id: str) -> None:
        if self.factory is None:
            return  # the caller runs it in the foreground (CLI)
        with self._lock:
            if self._closed:
                # Stays queued; `recover` runs it when this node starts next.
                log.info("job %s stays queued: this process is shutting down", job_id)
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="minyun-job")
            self._pool.submit(run, self.factory, job_id)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            pool = self._pool
        if pool is not None:
            pool.shutdown(wait=True)


def _defer_on_queue(session: Session, job_id: str) -> None:
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        raise ConfigError("jobs mode 'worker' needs PostgreSQL as the control-plane database")
    raw = connection.connection.driver_connection
    task = queue_app().configure_task("minyun.run_job", queue=QUEUE, connection=raw)
    task.defer(job_id=job_id)


_QUEUE_APP: Any = None


def queue_app() -> Any:
    """The procrastinate app used to defer from inside a transaction (no pool of its own)."""
    global _QUEUE_APP
    if _QUEUE_APP is None:
        import procrastinate

        _QUEUE_APP = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
    return _QUEUE_APP


def submit(
    session: Session,
    actor: Principal,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    key: str | None = None,
) -> Job:
    """Create a job (or return the one with the same key); it runs once this transaction commits."""
    if kind not in HANDLERS:
        raise Invalid(f"unknown job kind {kind!r}", field="kind")
    if key is not None:
        existing = session.scalars(select(Job).where(Job.key == key)).first()
        if existing is not None and existing.state != JobState.FAILED:
            return existing
        if existing is not None:
            existing.state = JobState.QUEUED
            existing.error = None
            audit.record(session, actor, "job.retry", target=existing.id, target_type="job")
            _dispatcher(session).enqueue(session, existing)
            return existing
    job = Job(
        id=uuid.uuid4().hex,
        kind=kind,
        key=key,
        params=params or {},
        created_by=actor.label,
        state=JobState.QUEUED,
    )
    session.add(job)
    session.flush()
    audit.record(session, actor, "job.submit", target=job.id, target_type="job", detail=kind)
    _dispatcher(session).enqueue(session, job)
    return job


def _dispatcher(session: Session) -> Dispatcher:
    dispatcher = session.info.get("jobs")
    if dispatcher is None:
        return Dispatcher("inline")
    assert isinstance(dispatcher, Dispatcher)
    return dispatcher


def get_job(session: Session, job_id: str) -> Job:
    """The job, or NotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def list_jobs(session: Session, *, limit: int = 50, state: str | None = None) -> list[Job]:
    """The newest jobs first."""
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if state is not None:
        query = query.where(Job.state == state)
    return list(session.scalars(query))


def _claim(factory: sessionmaker[Session], job_id: str) -> Job | None:
    # Only one runner may hold a job: queued, or running with a heartbeat gone stale.
    now = clock.now()
    with factory.begin() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id)
            .where(
                or_(
                    Job.state == JobState.QUEUED,
                    (Job.state == JobState.RUNNING) & (Job.heartbeat_at < now - STALE_AFTER),
                )
            )
            .values(
                state=JobState.RUNNING,
                started_at=now,
                heartbeat_at=now,
                attempts=Job.attempts + 1,
            )
        )
        if not cast("CursorResult[Any]", result).rowcount:
            return None
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def run(
    factory: sessionmaker[Session],
    job_id: str,
    *,
    on_progress: Callable[[int, int | None, str | None], None] | None = None,
) -> Job:
    """Run one job to its end; a job already running or finished is left as it is."""
    job = _claim(factory, job_id)
    if job is None:
        with factory() as session:
            return get_job(session, job_id)
    ctx = JobContext(job.id, dict(job.params), job.resume, factory, on_progress)
    try:
        result = HANDLERS[job.kind](ctx)
    except Exception as exc:  # a failed job records why; the runner lives on
        log.exception("job %s (%s) failed", job.id, job.kind)
        _finish(factory, job.id, JobState.FAILED, error=_describe(exc))
    else:
        _finish(factory, job.id, JobState.SUCCEEDED, result=result or {})
    with factory() as session:
        return get_job(session, job_id)


def _describe(exc: Exception) -> str:
    summary = f"{type(exc).__name__}: {exc}"
    tail = "".join(traceback.format_exception(exc)[-3:])
    return f"{summary}\n{tail}"[:4000]


def _finish(
    factory: sessionmaker[Session],
    job_id: str,
    state: JobState,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    from minyun.core.security import Principal

    with factory.begin() as session:
        job = get_job(session, job_id)
        job.state = state
        job.result = result
        job.error = error
        job.finished_at = clock.now()
        if state == JobState.SUCCEEDED and job.total is not None:
            job.done = job.total
        audit.record(
            session,
            Principal.system(),
            "job.finish",
            target=job_id,
            target_type="job",
            outcome=audit.Outcome.SUCCESS if state == JobState.SUCCEEDED else audit.Outcome.FAILED,
            detail=(error or "").splitlines()[0][:500] if error else job.kind,
        )


def recover(factory: sessionmaker[Session], dispatcher: Dispatcher) -> list[str]:
    """Queue again the jobs whose runner died (running with a stale heartbeat) or never ran."""
    cutoff = clock.now() - STALE_AFTER
    with factory.begin() as session:
        jobs = list(
            session.scalars(
                select(Job).where(
                    or_(
                        (Job.state == JobState.RUNNING) & (Job.heartbeat_at < cutoff),
                        Job.state == JobState.QUEUED,
                    )
                )
            )
        )
        for job in jobs:
            job.state = JobState.QUEUED
            dispatcher.enqueue(session, job)
        return [job.id for job in jobs]
