"""Jobs: progress, idempotency, failure, resume after a crash, and the real worker queue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

import minyun.handlers  # noqa: F401 - the demo.load job kind
from minyun.core import clock, jobs
from minyun.core.config import JobsMode
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
    assert job.state == JobState.SUCCEEDED and job.attempts == 2
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
    assert job_id in jobs.recover(platform.factory, jobs.Dispatcher("inline"))
