"""Jobs: every long or bulk operation, with state, progress, result and resume point.

A job row lives in the control plane in both modes. `inline` runs it in this process
(a thread, or in the foreground for the CLI); `worker` enqueues it on procrastinate's
PostgreSQL queue inside the caller's transaction, so the job exists if and only if the
change that asked for it committed, and a `minyun worker` process runs it.

A runner owns the job it claimed through a lease (a random token in the row): a heartbeat
thread keeps the lease fresh while the handler runs, whatever its steps do, and every
change a runner makes to the job is conditional on still holding the lease. A runner
whose heartbeat went stale lost the job; one that died this way too often (its process
was killed by the job's input) makes the job a poison job: failed, never run again.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    CursorResult,
    Integer,
    String,
    Text,
    Update,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from minyun.core import audit, clock
from minyun.core.db import Base, UTCDateTime, on_commit
from minyun.core.errors import ConfigError, Conflict, DomainError, Invalid, NotFound

if TYPE_CHECKING:
    from minyun.core.security import Principal

log = logging.getLogger(__name__)

QUEUE = "minyun"
# Defaults of `Settings.jobs_stale_after` and `Settings.jobs_max_crashes`.
STALE_AFTER = timedelta(seconds=60)
MAX_CRASHES = 3


@dataclass(frozen=True)
class Limits:
    """When a running job counts as abandoned, and how many deaths make it a poison job."""

    stale_after: timedelta = STALE_AFTER
    max_crashes: int = MAX_CRASHES

    @property
    def beat_every(self) -> float:
        """Seconds between heartbeats: several within the stale limit."""
        return max(0.05, self.stale_after.total_seconds() / 6)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


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
    # The runner that holds the job (a random token per claim); None when nobody does.
    lease: Mapped[str | None] = mapped_column(String(32), default=None)
    # How many times a runner died while holding the job (its heartbeat went stale).
    crashes: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(100), default=None)
    # The department the job works for (its submitter's, or its parent job's); None: admins'.
    organization_id: Mapped[int | None] = mapped_column(Integer, index=True, default=None)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return min(100.0, 100.0 * self.done / self.total)

    def stalled(self, limits: Limits | None = None) -> bool:
        """Running, but its runner has not beaten within the stale limit."""
        limit = (limits or Limits()).stale_after
        return self.state == JobState.RUNNING and (
            self.heartbeat_at is None or self.heartbeat_at < clock.now() - limit
        )


class JobStopped(Exception):
    """Raised inside a handler (at its next progress or save point) to make it stop."""


class Cancelled(JobStopped):
    """Someone cancelled the job."""


class LeaseLost(JobStopped):
    """Another runner owns the job now; this one must stop and write nothing."""


@dataclass
class JobContext:
    """What a handler gets: its parameters, where it left off, and ways to report.

    `progress` and `save_point` raise `Cancelled` once the job was cancelled, and
    `LeaseLost` once another runner took it over; a handler lets them through.
    """

    job_id: str
    params: dict[str, Any]
    resume: dict[str, Any] | None
    factory: sessionmaker[Session]
    on_progress: Callable[[int, int | None, str | None], None] | None = None
    lease: str | None = None
    _stop: JobStopped | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(
        self,
        done: int,
        total: int | None = None,
        message: str | None = None,
        *,
        stop: bool = True,
    ) -> None:
        """Record progress (its own small transaction, so the page sees it at once).

        `stop=False` past a point of no return (a load whose version is committed): neither
        a cancellation, a lost lease nor a busy database stops the job there; the progress
        is recorded if it can be.
        """
        if stop:
            self.check()
        values: dict[str, Any] = {"done": done, "heartbeat_at": clock.now()}
        if total is not None:
            values["total"] = total
        if message is not None:
            values["message"] = message
        if stop:
            self._write(values)
        else:
            try:
                self._write(values, stop=False)
            except Exception:
                log.warning("job %s: progress not recorded", self.job_id, exc_info=True)
        if self.on_progress is not None:
            self.on_progress(done, total, message)

    def save_point(self, state: dict[str, Any]) -> None:
        """Remember how far the job got; after a crash the next attempt starts from here."""
        self.check()
        self._write({"resume": state, "heartbeat_at": clock.now()})
        self.resume = state

    def check(self) -> None:
        """Raise if the job was cancelled or taken over (seen by the heartbeat)."""
        with self._lock:
            stop = self._stop
        if stop is not None:
            raise stop

    @property
    def cancelled(self) -> bool:
        with self._lock:
            return isinstance(self._stop, Cancelled)

    def _flag(self, stop: JobStopped) -> None:
        with self._lock:
            if self._stop is None:
                self._stop = stop

    def _owned(self, statement: Update) -> Update:
        statement = statement.where(Job.id == self.job_id)
        if self.lease is not None:
            statement = statement.where(Job.lease == self.lease, Job.state == JobState.RUNNING)
        return statement

    def _write(self, values: dict[str, Any], *, stop: bool = True) -> None:
        """Update the job if this runner still owns it; flag why not otherwise (and raise
        it, if `stop`)."""
        with self.factory.begin() as session:
            written = _rowcount(session.execute(self._owned(update(Job)).values(**values)))
            if written:
                asked = session.scalar(select(Job.cancel_requested_at).where(Job.id == self.job_id))
            else:
                asked = None
        if not written and self.lease is not None:
            self._flag(LeaseLost(f"job {self.job_id} is no longer held by this runner"))
        elif asked is not None:
            self._flag(Cancelled(f"job {self.job_id} was cancelled"))
        if stop:
            self.check()


def _rowcount(result: Any) -> int:
    return int(cast("CursorResult[Any]", result).rowcount or 0)


class _Heartbeat:
    """Keeps a running job's lease fresh from a thread of its own; sees cancellation."""

    def __init__(self, ctx: JobContext, every: float) -> None:
        self.ctx = ctx
        self.every = every
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"minyun-heartbeat-{ctx.job_id[:8]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=max(5.0, 2 * self.every))

    def _loop(self) -> None:
        while not self._done.wait(self.every):
            try:
                # A cancelled job still beats until its handler stops; a lost one does not.
                self.ctx._write({"heartbeat_at": clock.now()}, stop=False)
                if isinstance(self.ctx._stop, LeaseLost):
                    return
            except Exception as exc:  # a busy database: try again at the next beat
                # One line: a beat missed under load is not worth a traceback on the console.
                log.warning("heartbeat of job %s missed (%s); trying again in %.0f s",
                            self.ctx.job_id, describe_error(exc).splitlines()[0][:200], self.every)  # fmt: skip


Handler = Callable[[JobContext], dict[str, Any] | None]
HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of `kind`; it must be safe to run again."""

    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


class Dispatcher:
    """How a committed job gets run.

    `inline`: a thread of this process (needs the session factory to run with);
    `worker`: procrastinate's queue, for `minyun worker`; `foreground`: the caller runs
    the job itself (the CLI, or a job that runs a child job) — `take_pending` hands over
    the ids of the jobs committed since it was last asked.
    """

    def __init__(
        self,
        mode: str,
        factory: sessionmaker[Session] | None = None,
        *,
        limits: Limits | None = None,
    ) -> None:
        if mode not in ("inline", "worker", "foreground"):
            raise ConfigError(f"unknown jobs mode {mode!r}")
        self.mode = mode
        self.factory = factory
        self.limits = limits or Limits()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._pending: list[str] = []
        self._inflight: set[str] = set()
        self._recovery: threading.Thread | None = None
        self._stop_recovery = threading.Event()

    @classmethod
    def foreground(cls, limits: Limits | None = None) -> Dispatcher:
        """Jobs are run by the caller, who asks for them with `take_pending`."""
        return cls("foreground", limits=limits)

    def enqueue(self, session: Session, job: Job) -> None:
        """Called inside the submitting transaction; refuses a job nothing would run."""
        if self.mode == "worker":
            _defer_on_queue(session, job.id)
        elif self.mode == "foreground":
            job_id = job.id
            on_commit(session, lambda: self._add_pending(job_id))
        else:
            if self.factory is None:
                raise ConfigError(
                    f"nothing would run the {job.kind} job: jobs mode 'inline' without a "
                    "runner here (open the platform with run_jobs_here, or run it in the "
                    "foreground)"
                )
            job_id = job.id
            on_commit(session, lambda: self._run_in_thread(job_id))

    def _add_pending(self, job_id: str) -> None:
        with self._lock:
            if job_id not in self._pending:
                self._pending.append(job_id)

    def take_pending(self) -> list[str]:
        """The jobs committed for the caller to run (foreground), oldest first; forgets them."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def _run_in_thread(self, job_id: str) -> None:
        factory = self.factory
        if factory is None:
            return
        with self._lock:
            if self._closed:
                # Stays queued; `recover` runs it when this node starts next.
                log.info("job %s stays queued: this process is shutting down", job_id)
                return
            if job_id in self._inflight:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="minyun-job")
            self._inflight.add(job_id)
            self._pool.submit(self._run, factory, job_id)

    def _run(self, factory: sessionmaker[Session], job_id: str) -> None:
        with self._lock:  # waiting in the pool no more: it may be handed in again
            self._inflight.discard(job_id)
        try:
            run(factory, job_id)
        except Exception:
            log.exception("the runner of job %s failed", job_id)

    def start_recovery(self, factory: sessionmaker[Session], every: float | None = None) -> None:
        """From a thread, keep finding jobs whose runner died and queue them again.

        `inline` also runs the jobs left queued (say by a CLI that was killed); `worker`
        puts only the jobs it took back on the queue (the rest are on it already).
        """
        interval = every or max(0.5, self.limits.stale_after.total_seconds() / 2)

        def loop() -> None:
            while not self._stop_recovery.wait(interval):
                try:
                    if self.mode == "inline":
                        recover(factory, self)
                    else:
                        reap(factory, self)
                except Exception:
                    log.warning("looking for abandoned jobs failed", exc_info=True)

        with self._lock:
            if self._recovery is not None or self._closed:
                return
            self._recovery = threading.Thread(target=loop, name="minyun-recover", daemon=True)
            self._recovery.start()

    def shutdown(self) -> None:
        self._stop_recovery.set()
        with self._lock:
            self._closed = True
            pool = self._pool
            recovery = self._recovery
        if recovery is not None:
            recovery.join(timeout=5)
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


# The department of the job this thread is running: the jobs it submits work for it too.
_RUNNING_FOR: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "minyun_job_organization", default=None
)


def submit(
    session: Session,
    actor: Principal,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    organization_id: int | None = None,
) -> Job:
    """Create a job (or return the one with the same key); it runs once this transaction commits.

    The job works for `organization_id` (a load for the resource's provider, whoever asked),
    else for the actor's department, else for the department of the job submitting it: that
    department's staff see it.

    A ConfigError if nothing would run it (a session without a dispatcher, or an inline
    dispatcher with no runner): a job must never wait for nobody.
    """
    if kind not in HANDLERS:
        raise Invalid(f"unknown job kind {kind!r}", field="kind")
    dispatcher = _dispatcher(session)
    if key is not None:
        existing = session.scalars(select(Job).where(Job.key == key)).first()
        if existing is not None and existing.state not in (JobState.FAILED, JobState.CANCELLED):
            return existing
        if existing is not None and existing.crashes >= dispatcher.limits.max_crashes:
            return existing  # a poison job is never run again
        if existing is not None:
            existing.state = JobState.QUEUED
            existing.error = None
            existing.cancel_requested_at = None
            existing.cancelled_by = None
            audit.record(session, actor, "job.retry", target=existing.id, target_type="job")
            dispatcher.enqueue(session, existing)
            return existing
    job = Job(
        id=uuid.uuid4().hex,
        kind=kind,
        key=key,
        params=params or {},
        created_by=actor.label,
        state=JobState.QUEUED,
        organization_id=next(
            (o for o in (organization_id, actor.organization_id) if o is not None),
            _RUNNING_FOR.get(),
        ),
    )
    session.add(job)
    session.flush()
    audit.record(session, actor, "job.submit", target=job.id, target_type="job", detail=kind)
    dispatcher.enqueue(session, job)
    return job


def _dispatcher(session: Session) -> Dispatcher:
    dispatcher = session.info.get("jobs")
    if not isinstance(dispatcher, Dispatcher):
        raise ConfigError(
            "this session has no job dispatcher, so nothing would run the job: open sessions "
            "from the platform's factory, or give one with info={'jobs': Dispatcher...}"
        )
    return dispatcher


def limits_of(factory: sessionmaker[Session]) -> Limits:
    """The limits of the dispatcher the factory's sessions carry (defaults without one)."""
    dispatcher = factory.kw.get("info", {}).get("jobs")
    return dispatcher.limits if isinstance(dispatcher, Dispatcher) else Limits()


def get_job(session: Session, job_id: str) -> Job:
    """The job, or NotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def find_job(session: Session, id_or_prefix: str) -> Job:
    """The job with this id, or the one job whose id starts with it (six characters or more)."""
    job = session.get(Job, id_or_prefix)
    if job is not None:
        return job
    if len(id_or_prefix) < 6 or not re.fullmatch(r"[0-9a-f]+", id_or_prefix):
        raise NotFound(f"no job {id_or_prefix}")
    found = list(session.scalars(select(Job).where(Job.id.startswith(id_or_prefix)).limit(2)))
    if not found:
        raise NotFound(f"no job {id_or_prefix}")
    if len(found) > 1:
        raise Invalid(f"more than one job starts with {id_or_prefix}: give more of the id")
    return found[0]


def list_jobs(
    session: Session,
    *,
    limit: int = 50,
    state: str | None = None,
    organization_id: int | None = None,
    everyone: bool = True,
) -> list[Job]:
    """The newest jobs first; with `everyone=False` only those of `organization_id`."""
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if state is not None:
        query = query.where(Job.state == state)
    if not everyone:
        if organization_id is None:
            return []
        query = query.where(Job.organization_id == organization_id)
    return list(session.scalars(query))


def cancel(session: Session, actor: Principal, job: Job) -> Job:
    """Cancel a job: a queued one (or one whose runner died) at once, a running one at its
    next progress report or heartbeat. Audited; the caller has checked the actor may."""
    if job.finished:
        raise Conflict(f"job {job.id} has already {job.state}")
    now = clock.now()
    if job.state == JobState.QUEUED or job.stalled(_dispatcher_limits(session)):
        job.state = JobState.CANCELLED
        job.finished_at = now
        job.lease = None
        job.error = f"cancelled by {actor.label}"
    job.cancel_requested_at = now
    job.cancelled_by = actor.label
    audit.record(session, actor, "job.cancel", target=job.id, target_type="job", detail=job.kind)
    return job


def _dispatcher_limits(session: Session) -> Limits:
    dispatcher = session.info.get("jobs")
    return dispatcher.limits if isinstance(dispatcher, Dispatcher) else Limits()


def _stale(limits: Limits, now: datetime) -> ColumnElement[bool]:
    return (Job.state == JobState.RUNNING) & or_(
        Job.heartbeat_at.is_(None), Job.heartbeat_at < now - limits.stale_after
    )


def _reap(session: Session, limits: Limits, *, only: str | None = None) -> list[str]:
    """Take back the running jobs whose runner stopped beating: queue them again, or fail
    them for good once runners died `max_crashes` times on them, or cancel them if asked."""
    from minyun.core.security import Principal

    now = clock.now()
    query = select(Job.id, Job.lease, Job.crashes, Job.cancel_requested_at).where(
        _stale(limits, now)
    )
    if only is not None:
        query = query.where(Job.id == only)
    requeued: list[str] = []
    for job_id, lease, crashes, cancel_asked in session.execute(query).all():
        crashes += 1
        values: dict[str, Any] = {"lease": None, "crashes": crashes}
        if cancel_asked is not None:
            values.update(state=JobState.CANCELLED, finished_at=now, error="cancelled")
        elif crashes >= limits.max_crashes:
            values.update(
                state=JobState.FAILED,
                finished_at=now,
                error=(
                    f"the process running this job died {crashes} times while running it "
                    "(its input may be too large or malformed for this node); "
                    "it will not be run again"
                ),
            )
        else:
            values.update(
                state=JobState.QUEUED,
                message=f"its runner stopped ({crashes} of {limits.max_crashes}); queued again",
            )
        taken = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING)
            .where(Job.lease.is_(None) if lease is None else Job.lease == lease)
            .where(_stale(limits, now))
            .values(**values)
        )
        if not _rowcount(taken):
            continue  # its runner beat just now, or someone else took it back
        if values["state"] == JobState.QUEUED:
            requeued.append(job_id)
            continue
        audit.record(
            session, Principal.system(), "job.finish", target=job_id, target_type="job",
            outcome=audit.Outcome.FAILED, detail=str(values["error"])[:500],
        )  # fmt: skip
        log.error("job %s: %s", job_id, values["error"])
    return requeued


def _claim(factory: sessionmaker[Session], job_id: str, limits: Limits) -> tuple[Job, str] | None:
    # Only one runner may hold a job: a queued one, or one whose runner stopped beating.
    now = clock.now()
    lease = uuid.uuid4().hex
    with factory.begin() as session:
        _reap(session, limits, only=job_id)
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.QUEUED)
            .values(
                state=JobState.RUNNING,
                lease=lease,
                started_at=now,
                heartbeat_at=now,
                attempts=Job.attempts + 1,
            )
        )
        if not _rowcount(result):
            return None
        job = session.get(Job, job_id)
        if job is None:  # pragma: no cover - the row was just updated
            raise NotFound(f"no job {job_id}")
        session.expunge(job)
        return job, lease


def run(
    factory: sessionmaker[Session],
    job_id: str,
    *,
    on_progress: Callable[[int, int | None, str | None], None] | None = None,
) -> Job:
    """Run one job to its end; a job already running elsewhere or finished is left as it is."""
    limits = limits_of(factory)
    claimed = _claim(factory, job_id, limits)
    if claimed is None:
        with factory() as session:
            return get_job(session, job_id)
    job, lease = claimed
    ctx = JobContext(job.id, dict(job.params), job.resume, factory, on_progress, lease=lease)
    beat = _Heartbeat(ctx, limits.beat_every)
    beat.start()
    token = _RUNNING_FOR.set(job.organization_id)
    try:
        result = HANDLERS[job.kind](ctx)
    except Exception as exc:  # a failed job records why; the runner lives on
        stop = ctx._stop
        if isinstance(stop, LeaseLost) or isinstance(exc, LeaseLost):
            log.warning(
                "job %s (%s): another runner took it over; this one stops", job.id, job.kind
            )
        elif isinstance(stop, Cancelled) or isinstance(exc, Cancelled):
            _finish(factory, ctx, JobState.CANCELLED, error="cancelled")
        else:
            log.exception("job %s (%s) failed", job.id, job.kind)
            _finish(factory, ctx, JobState.FAILED, error=describe_error(exc))
    else:
        _finish(factory, ctx, JobState.SUCCEEDED, result=result or {})
    finally:
        _RUNNING_FOR.reset(token)
        beat.stop()
    with factory() as session:
        return get_job(session, job_id)


def run_pending(
    factory: sessionmaker[Session],
    dispatcher: Dispatcher,
    *,
    on_start: Callable[[Job], Callable[[int, int | None, str | None], None] | None] | None = None,
) -> list[Job]:
    """Run here, one after the other, the jobs a foreground dispatcher collected (and the
    jobs those jobs queue in turn); `on_start` may give each a progress callback."""
    finished: list[Job] = []
    while pending := dispatcher.take_pending():
        for job_id in pending:
            with factory() as session:
                job = get_job(session, job_id)
            finished.append(run(factory, job_id, on_progress=on_start(job) if on_start else None))
    return finished


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@+~-]+){2,}[\\/]?")
_CREDENTIALS = re.compile(r"(://)[^/@\s:]*:[^/@\s]*@")


def describe_error(exc: BaseException) -> str:
    """What a user may read of a failure: the message, without traceback or server paths.

    A rule's refusal (DomainError) is told as it is; anything else by its type and
    message. The full traceback goes to the server log only.
    """
    message = str(exc).strip() or "no detail"
    if not isinstance(exc, DomainError):
        message = f"{type(exc).__name__}: {message}"
    message = _CREDENTIALS.sub(r"\1***@", message)
    message = _PATH.sub(lambda m: "…/" + re.split(r"[\\/]", m.group(0).rstrip("/\\"))[-1], message)
    return message[:2000]


def _finish(
    factory: sessionmaker[Session],
    ctx: JobContext,
    state: JobState,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Record the end of the job, if this runner still owns it; False if it does not."""
    from minyun.core.security import Principal

    with factory.begin() as session:
        job = session.scalars(
            select(Job).where(Job.id == ctx.job_id, Job.state == JobState.RUNNING)
            .where(Job.lease == ctx.lease)
            .with_for_update()
        ).first()  # fmt: skip
        if job is None:
            log.warning(
                "job %s: not recording %s, this runner no longer holds it", ctx.job_id, state
            )
            return False
        job.state = state
        job.result = result
        job.error = error if state != JobState.CANCELLED else f"cancelled by {job.cancelled_by}"
        job.finished_at = clock.now()
        job.lease = None
        if state == JobState.SUCCEEDED and job.total is not None:
            job.done = job.total
        audit.record(
            session,
            Principal.system(),
            "job.finish",
            target=ctx.job_id,
            target_type="job",
            outcome=audit.Outcome.SUCCESS if state == JobState.SUCCEEDED else audit.Outcome.FAILED,
            detail=(error or "").splitlines()[0][:500] if error else f"{job.kind} {state}",
        )
    return True


def reap(factory: sessionmaker[Session], dispatcher: Dispatcher) -> list[str]:
    """Take back the jobs whose runner died (see `_reap`) and hand the requeued ones to
    `dispatcher`; the ids requeued."""
    with factory.begin() as session:
        requeued = _reap(session, dispatcher.limits)
        for job_id in requeued:
            job = session.get(Job, job_id)
            if job is not None:
                dispatcher.enqueue(session, job)
    return requeued


def recover(factory: sessionmaker[Session], dispatcher: Dispatcher) -> list[str]:
    """Queue again the jobs whose runner died (running with a stale heartbeat) or never ran."""
    with factory.begin() as session:
        _reap(session, dispatcher.limits)
        queued = list(session.scalars(select(Job).where(Job.state == JobState.QUEUED)))
        for job in queued:
            dispatcher.enqueue(session, job)
        return [job.id for job in queued]
