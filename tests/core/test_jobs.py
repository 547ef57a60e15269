"""Jobs: progress, idempotency, failure, resume after a crash, and the real worker queue."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

import minyun.handlers  # noqa: F401 - the demo.load job kind
from minyun.admin import service as admin
from minyun.core import audit, clock, jobs
from minyun.core.config import JobsMode
from minyun.core.errors import ConfigError, Conflict, NotFound
from minyun.core.jobs import Job, JobState
from minyun.core.platform import Platform
from minyun.core.security import Principal
from tests.conftest import PostgresDatabases, make_settings

ACTOR = Principal(kind="user", name="tester", roles=frozenset({"admin"}))
SEEN: list[int] = []


@jobs.handler("test.count")
def _count(ctx: jobs.JobContext) -> dict[str, Any]:
    start = int((ctx.resume or {}).get("next", 0))
    n = int(ctx.params["n"])
    for i in range(start, n):
        SEEN.append(i)
        ctx.progress(i + 1, n, f"step {i + 1}")
        ctx.save_point({"next": i + 1})
    return {"counted": n - start}


@jobs.handler("test.fail")
def _fail(ctx: jobs.JobContext) -> None:
    raise RuntimeError("the source database is unreachable")


def _wait(platform: Platform, job_id: str, timeout: float = 20) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with platform.factory() as s:
            job = jobs.get_job(s, job_id)
            if job.finished:
                return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def test_inline_job_runs_after_commit_with_progress(platform: Platform) -> None:
    with platform.factory.begin() as s:
        job_id = jobs.submit(s, ACTOR, "test.count", {"n": 5}).id
    job = _wait(platform, job_id)
    assert job.state == JobState.SUCCEEDED
    assert (job.done, job.total, job.message) == (5, 5, "step 5")
    assert job.result == {"counted": 5} and job.attempts == 1
    assert job.percent == 100.0


def test_job_of_a_rolled_back_transaction_never_exists(platform: Platform) -> None:
    with pytest.raises(RuntimeError), platform.factory.begin() as s:
        jobs.submit(s, ACTOR, "test.count", {"n": 1}, key="rolled-back")
        raise RuntimeError("the change that asked for the job failed")
    time.sleep(0.2)
    with platform.factory() as s:
        assert s.scalars(select(Job)).all() == []


def test_same_key_gives_the_same_job(platform: Platform) -> None:
    with platform.factory.begin() as s:
        first = jobs.submit(s, ACTOR, "test.count", {"n": 2}, key="load:abc").id
    _wait(platform, first)
    with platform.factory.begin() as s:
        again = jobs.submit(s, ACTOR, "test.count", {"n": 2}, key="load:abc").id
    assert again == first


def test_failed_job_records_why_and_can_be_retried(platform: Platform) -> None:
    with platform.factory.begin() as s:
        job_id = jobs.submit(s, ACTOR, "test.fail", key="flaky").id
    job = _wait(platform, job_id)
    assert job.state == JobState.FAILED
    assert job.error is not None and "source database is unreachable" in job.error
    with platform.factory.begin() as s:
        retried = jobs.submit(s, ACTOR, "test.fail", key="flaky")
        assert retried.id == job_id and retried.state == JobState.QUEUED
    assert _wait(platform, job_id).attempts == 2


def test_unknown_kind_is_refused(platform: Platform) -> None:
    from minyun.core.errors import Invalid

    with pytest.raises(Invalid, match="unknown job kind"), platform.factory.begin() as s:
        jobs.submit(s, ACTOR, "no.such.kind")


def test_interrupted_job_resumes_from_its_save_point(tmp_path: Path) -> None:
    # A runner that died: the job says running, its heartbeat is old, it got to step 3.
    node = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    node.migrate()
    stale = clock.now() - jobs.STALE_AFTER - timedelta(seconds=5)
    with node.factory.begin() as s:
        s.add(
            Job(
                id="crashed", kind="test.count", params={"n": 6}, state=JobState.RUNNING,
                resume={"next": 3}, attempts=1, created_by="tester", heartbeat_at=stale, done=3,
            )
        )  # fmt: skip
    assert jobs.recover(node.factory, node.dispatcher) == ["crashed"]
    SEEN.clear()
    job = jobs.run(node.factory, "crashed")
    assert job.state == JobState.SUCCEEDED and job.attempts == 2 and job.crashes == 1
    assert SEEN == [3, 4, 5] and job.result == {"counted": 3}
    node.close()


def test_a_running_job_is_not_run_twice(platform: Platform) -> None:
    with platform.factory.begin() as s:
        s.add(Job(id="busy", kind="test.count", params={"n": 1}, state=JobState.RUNNING,
                  created_by="t", heartbeat_at=clock.now()))  # fmt: skip
    SEEN.clear()
    assert jobs.run(platform.factory, "busy").state == JobState.RUNNING
    assert SEEN == []


@pytest.mark.postgres
def test_worker_mode_enqueues_in_the_same_transaction_and_runs_in_a_worker(
    tmp_path: Path, pg_databases: PostgresDatabases
) -> None:
    url = pg_databases.create()
    var = tmp_path / "var"
    node = Platform.open(make_settings(var, database_url=url, jobs_mode=JobsMode.WORKER))
    node.migrate()
    params = {
        "persons": 2_000,
        "enterprises": 300,
        "seed": 7,
        "var_dir": str(var),
        "lake_uri": str(tmp_path / "lake"),
        # Only the departments and the population's files: the job, not the whole province.
        **dict.fromkeys(("market", "resources", "opendata", "air", "grid", "food"), False),
    }

    with pytest.raises(RuntimeError), node.factory.begin() as s:
        jobs.submit(s, ACTOR, "demo.load", params)
        raise RuntimeError("abandon the change")
    with node.factory.begin() as s:
        job_id = jobs.submit(s, ACTOR, "demo.load", params).id
        # The queue row is visible inside the submitting transaction already.
        assert s.scalar(text("SELECT count(*) FROM procrastinate_jobs")) == 1
    with node.factory() as s:
        assert s.scalar(text("SELECT count(*) FROM procrastinate_jobs")) == 1
        assert jobs.get_job(s, job_id).state == JobState.QUEUED

    env = {
        **os.environ,
        "MINYUN_DATABASE_URL": url,
        "MINYUN_VAR_DIR": str(var),
        "MINYUN_JOBS_MODE": "worker",
    }
    done = subprocess.run(
        [sys.executable, "-m", "minyun", "worker", "--until-idle"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    with node.factory() as s:
        job = jobs.get_job(s, job_id)
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.result is not None and job.result["persons"] == 2_000
    assert sorted(p.name for p in (tmp_path / "lake" / "demo" / "persons").iterdir()) == [
        "part-00000.parquet"
    ]
    node.close()


def test_a_failing_after_commit_hook_never_undoes_the_commit(platform: Platform) -> None:
    from minyun.core.db import on_commit

    def broken() -> None:
        raise RuntimeError("the thread pool is gone")

    with platform.factory.begin() as s:
        on_commit(s, broken)
        job_id = jobs.submit(s, ACTOR, "test.count", {"n": 1}).id
    assert _wait(platform, job_id).state == JobState.SUCCEEDED


def test_jobs_submitted_while_shutting_down_stay_queued_for_recovery(platform: Platform) -> None:
    platform.dispatcher.shutdown()
    with platform.factory.begin() as s:
        job_id = jobs.submit(s, ACTOR, "test.count", {"n": 1}).id
    with platform.factory() as s:
        assert jobs.get_job(s, job_id).state == JobState.QUEUED
    assert job_id in jobs.recover(platform.factory, jobs.Dispatcher.foreground())


# --- a runner owns its job: heartbeat, lease, cancellation, poison jobs ------------------

STARTED = threading.Event()
RELEASE = threading.Event()
RAN: list[str] = []
STEPS: list[int] = []


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[Platform]:
    """A node whose running jobs count as abandoned after one second without a heartbeat."""
    STARTED.clear()
    RELEASE.clear()
    RAN.clear()
    STEPS.clear()
    node = Platform.open(make_settings(tmp_path / "var", jobs_stale_after=1.0), run_jobs_here=False)
    node.migrate()
    yield node
    RELEASE.set()
    node.close()


@jobs.handler("test.long_step")
def _long_step(ctx: jobs.JobContext) -> dict[str, Any]:
    RAN.append(ctx.job_id)
    STARTED.set()
    # One step that reports nothing for longer than the stale limit (a long DuckDB query).
    RELEASE.wait(timeout=30)
    if ctx.params.get("report"):
        ctx.progress(1, 1, "after the long step")
    return {"by": "the first runner"}


@jobs.handler("test.until_cancelled")
def _until_cancelled(ctx: jobs.JobContext) -> dict[str, Any]:
    STARTED.set()
    for i in range(600):
        STEPS.append(i)
        if ctx.params.get("quiet"):
            if ctx.cancelled:  # seen by the heartbeat: no progress report in between
                ctx.check()
        else:
            ctx.progress(i, 600)
        time.sleep(0.05)
    return {"steps": 600}


def _submit(node: Platform, kind: str, params: dict[str, Any] | None = None,
            actor: Principal = ACTOR, key: str | None = None) -> str:  # fmt: skip
    with node.factory.begin() as s:
        job_id = jobs.submit(s, actor, kind, params, key=key).id
    node.dispatcher.take_pending()  # the test runs it itself
    return job_id


def _in_thread(node: Platform, job_id: str) -> threading.Thread:
    runner = threading.Thread(target=jobs.run, args=(node.factory, job_id), daemon=True)
    runner.start()
    assert STARTED.wait(20), "the handler did not start"
    return runner


def _job(node: Platform, job_id: str) -> Job:
    with node.factory() as s:
        return jobs.get_job(s, job_id)


def test_a_step_longer_than_the_stale_limit_keeps_its_job(quick: Platform) -> None:
    job_id = _submit(quick, "test.long_step")
    runner = _in_thread(quick, job_id)
    time.sleep(1.6)  # past the one-second stale limit, inside the step
    # A second runner (another worker, a restarted node) leaves the job alone.
    assert jobs.run(quick.factory, job_id).state == JobState.RUNNING
    assert jobs.recover(quick.factory, quick.dispatcher) == []
    assert quick.dispatcher.take_pending() == []
    RELEASE.set()
    runner.join(20)
    job = _job(quick, job_id)
    assert job.state == JobState.SUCCEEDED and job.result == {"by": "the first runner"}
    assert (job.attempts, job.crashes, RAN) == (1, 0, [job_id])


@pytest.mark.parametrize("report", [False, True], ids=["finishing", "reporting"])
def test_a_runner_that_lost_its_job_writes_nothing(quick: Platform, report: bool) -> None:
    job_id = _submit(quick, "test.long_step", {"report": report})
    runner = _in_thread(quick, job_id)
    # Another runner holds the job now (as if this one's heartbeat had gone stale).
    with quick.factory.begin() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease="another-runner"))
    RELEASE.set()
    runner.join(20)
    job = _job(quick, job_id)
    assert job.state == JobState.RUNNING and job.lease == "another-runner"
    assert (job.result, job.done, job.message, job.finished_at) == (None, 0, None, None)


def test_a_job_nothing_would_run_is_refused(platform: Platform) -> None:
    nobody = jobs.Dispatcher("inline")  # inline, but no runner in this process
    with (
        pytest.raises(ConfigError, match="nothing would run"),
        platform.factory(info={"jobs": nobody}) as s,
        s.begin(),
    ):
        jobs.submit(s, ACTOR, "test.count", {"n": 1})
    with (
        pytest.raises(ConfigError, match="no job dispatcher"),
        Session(platform.engine) as s,
        s.begin(),
    ):
        jobs.submit(s, ACTOR, "test.count", {"n": 1})
    with platform.factory() as s:
        assert s.scalars(select(Job)).all() == []


def test_a_queued_job_cancelled_never_runs(quick: Platform) -> None:
    job_id = _submit(quick, "test.count", {"n": 3})
    with quick.factory.begin() as s:
        admin.cancel_job(s, ACTOR, job_id[:8])
    SEEN.clear()
    job = jobs.run(quick.factory, job_id)
    assert job.state == JobState.CANCELLED and SEEN == []
    assert job.error == "cancelled by user:tester"
    with pytest.raises(Conflict, match="already cancelled"), quick.factory.begin() as s:
        admin.cancel_job(s, ACTOR, job_id)
    with quick.factory() as s:
        cancels = s.scalars(
            select(audit.AuditRecord).where(audit.AuditRecord.action == "job.cancel")
        ).all()
        assert [(r.actor, r.object_id) for r in cancels] == [("user:tester", job_id)]


@pytest.mark.parametrize("quiet", [False, True], ids=["at-progress", "at-heartbeat"])
def test_a_running_job_stops_when_cancelled(quick: Platform, quiet: bool) -> None:
    job_id = _submit(quick, "test.until_cancelled", {"quiet": quiet})
    runner = _in_thread(quick, job_id)
    with quick.factory.begin() as s:
        assert admin.cancel_job(s, ACTOR, job_id).state == JobState.RUNNING  # asked to stop
    runner.join(20)
    job = _job(quick, job_id)
    assert job.state == JobState.CANCELLED and job.error == "cancelled by user:tester"
    assert len(STEPS) < 600 and job.result is None


@jobs.handler("test.leaky")
def _leaky(ctx: jobs.JobContext) -> None:
    open("/srv/minyun/var/uploads/3f/secret-applicants.xlsx")  # noqa: SIM115


def test_job_errors_tell_users_no_traceback_and_no_server_path(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="minyun.core.jobs")
    job = _wait(platform, _submit(platform, "test.leaky"))
    assert job.state == JobState.FAILED and job.error is not None
    assert job.error.startswith("FileNotFoundError:") and "secret-applicants.xlsx" in job.error
    assert "/srv" not in job.error and "Traceback" not in job.error and 'File "' not in job.error
    # The server log keeps the whole story.
    assert "Traceback" in caplog.text and "/srv/minyun/var/uploads" in caplog.text


@jobs.handler("test.parent")
def _parent(ctx: jobs.JobContext) -> dict[str, Any]:
    with ctx.factory.begin() as s:
        child = jobs.submit(s, Principal.system(), "test.count", {"n": 1}).id
    return {"child": child}


def test_stewards_and_auditors_read_only_their_departments_jobs(quick: Platform) -> None:
    steward_a = Principal(kind="user", name="a", organization_id=1, roles=frozenset({"steward"}))
    steward_b = Principal(kind="user", name="b", organization_id=2, roles=frozenset({"steward"}))
    auditor_a = Principal(kind="user", name="c", organization_id=1, roles=frozenset({"auditor"}))
    mine = _submit(quick, "test.parent", actor=steward_a)
    theirs = _submit(quick, "test.count", {"n": 1}, actor=steward_b)
    system = _submit(quick, "test.count", {"n": 1}, actor=Principal.system())
    child = jobs.run(quick.factory, mine).result["child"]  # type: ignore[index]
    with quick.factory.begin() as s:
        assert {j.id for j in admin.read_jobs(s, steward_a)} == {mine, child}
        assert {j.id for j in admin.read_jobs(s, auditor_a)} == {mine, child}
        assert {j.id for j in admin.read_jobs(s, steward_b)} == {theirs}
        assert {j.id for j in admin.read_jobs(s, ACTOR)} == {mine, child, theirs, system}
        assert admin.read_job(s, auditor_a, child).id == child
        for job_id in (theirs, system):
            with pytest.raises(NotFound):
                admin.read_job(s, steward_a, job_id)
        with pytest.raises(NotFound):
            admin.cancel_job(s, steward_a, theirs)


BOMB = """
import os, sys
from minyun.core import jobs

@jobs.handler("test.bomb")
def bomb(ctx):
    with open(ctx.params["log"], "a") as f:
        f.write("ran\\n")
    os.kill(os.getpid(), 9)  # like a workbook that makes its reader abort the process

from minyun.cli import main
sys.argv = ["minyun", "jobs", "run"]
main()
"""


@jobs.handler("test.bomb")
def _bomb(ctx: jobs.JobContext) -> None:
    raise AssertionError("runs only in the node's subprocess")


def test_a_job_that_kills_its_process_becomes_a_poison_job(tmp_path: Path) -> None:
    var, log = tmp_path / "var", tmp_path / "ran.log"
    node = Platform.open(make_settings(var, jobs_stale_after=0.5), run_jobs_here=False)
    node.migrate()
    job_id = _submit(node, "test.bomb", {"log": str(log)}, key="bomb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINYUN_")}
    env.update(MINYUN_VAR_DIR=str(var), MINYUN_JOBS_STALE_AFTER="0.5")

    def restart() -> subprocess.CompletedProcess[str]:
        time.sleep(0.7)  # the dead runner's heartbeat goes stale
        return subprocess.run([sys.executable, "-c", BOMB], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    for attempt in (1, 2, 3):
        died = restart()
        assert died.returncode == -9, died.stderr[-2000:]
        assert log.read_text().count("ran") == attempt
    settled = restart()
    assert settled.returncode == 0, settled.stderr[-2000:]
    job = _job(node, job_id)
    assert job.state == JobState.FAILED and job.crashes == 3
    assert job.error is not None and "died 3 times" in job.error
    assert "will not be run again" in job.error
    # Never again: not at the next start, not when submitted again under its key.
    with node.factory.begin() as s:
        assert jobs.submit(s, ACTOR, "test.bomb", {"log": str(log)}, key="bomb").id == job_id
    assert restart().returncode == 0
    assert log.read_text().count("ran") == 3 and _job(node, job_id).state == JobState.FAILED
    node.close()


def test_a_killed_runners_job_is_resumed_by_the_running_node(tmp_path: Path) -> None:
    node = Platform.open(make_settings(tmp_path / "var", jobs_stale_after=1.0))
    node.migrate()
    node.dispatcher.start_recovery(node.factory, every=0.2)  # as the web app and worker do
    # A load killed an hour after this node started: running, its heartbeat now stale.
    with node.factory.begin() as s:
        s.add(Job(id="killed", kind="test.count", params={"n": 2}, state=JobState.RUNNING,
                  lease="the-dead-runner", created_by="t", heartbeat_at=clock.now()))  # fmt: skip
    job = _wait(node, "killed")
    assert job.state == JobState.SUCCEEDED and (job.crashes, job.attempts) == (1, 1)
    node.close()


def test_a_missed_heartbeat_is_one_line_in_the_log(
    quick: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    """A database busy past the beat's wait (another writer holds SQLite's lock) costs a beat
    and one warning line, not a traceback on the console of `minyun demo`."""
    import sqlite3

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    path = str(quick.settings.database_url).removeprefix("sqlite:///")
    impatient = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN IMMEDIATE")
    ctx = jobs.JobContext("beat-test", {}, None, sessionmaker(impatient))
    beat = jobs._Heartbeat(ctx, 0.05)
    with caplog.at_level(logging.WARNING, logger="minyun.core.jobs"):
        beat.start()
        time.sleep(0.5)
        beat.stop()
    blocker.rollback()
    blocker.close()
    impatient.dispose()
    missed = [r for r in caplog.records if "heartbeat of job beat-test missed" in r.getMessage()]
    assert missed, caplog.text
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in missed)
    assert "database is locked" in missed[0].getMessage()
