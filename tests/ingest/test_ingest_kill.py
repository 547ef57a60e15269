"""A load process killed with SIGKILL: readers keep the previous version; a re-run finishes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from deltalake import DeltaTable
from sqlalchemy import update

from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.uow import unit_of_work
from minyun.ingest import service
from minyun.ingest.models import LoadMode, LoadState
from tests.ingest.loadkit import make_resource, person, rows, versions, write_csv

ROOT = Path(__file__).resolve().parents[2]

# The child runs the job and stops at a chosen point, says so, and waits to be killed.
CHILD = textwrap.dedent(
    """
    import sys, time
    import minyun.handlers
    from minyun.core import jobs
    from minyun.core.config import load_settings
    from minyun.core.lake import Lake
    from minyun.core.platform import Platform

    var_dir, job_id, where = sys.argv[1:4]
    node = Platform.open(load_settings(var_dir=var_dir), run_jobs_here=False)

    def stop():
        print("MIDWAY", flush=True)
        time.sleep(600)

    if where == "writing":
        # Every data file of the load is written into the table folder; the Delta commit
        # has not been made.

        def stop_before_commit(lake, code, load, *, mode, schema, folder, files):
            assert files and all(f.path.is_file() for f in files)
            assert str(folder) in str(files[0].path)
            stop()

        Lake.commit_files = stop_before_commit
    else:
        Lake.row_count = lambda *a, **k: stop()
    jobs.run(node.factory, job_id)
    """
)


@pytest.mark.parametrize("where", ["writing", "committed"])
def test_killed_load_leaves_the_previous_version_and_a_rerun_completes(
    sqlite_node: Platform, tmp_path: Path, where: str
) -> None:
    node = sqlite_node
    code, actor = make_resource(node)
    first = write_csv(tmp_path / "v0.csv", [person(i) for i in range(1, 11)])
    with unit_of_work(node.factory) as session:
        job_id = service.submit_load(session, actor, code, str(first), settings=node.settings).id
    assert jobs.run(node.factory, job_id).state == jobs.JobState.SUCCEEDED
    second = write_csv(tmp_path / "v1.csv", [person(i) for i in range(100, 5100)])
    with unit_of_work(node.factory) as session:
        job_id = service.submit_load(
            session, actor, code, str(second), mode=LoadMode.APPEND, settings=node.settings
        ).id
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(node.settings.var_dir), job_id, where],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "MIDWAY"
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL

    # Readers see the previous version only.
    assert sorted(rows(node, code).column("id").to_pylist()) == list(range(1, 11))
    killed = versions(node, code)[-1]
    assert killed.state == LoadState.RUNNING and killed.lake_version is None
    head = DeltaTable(node.lake.table_uri(code)).version()
    assert head == (0 if where == "writing" else 1)

    # The worker's heartbeat goes stale; the job is claimed again and finishes the same load.
    with node.factory.begin() as session:
        session.execute(
            update(jobs.Job)
            .where(jobs.Job.id == job_id)
            .values(heartbeat_at=jobs.clock.now() - dt.timedelta(minutes=5))
        )
    job = jobs.run(node.factory, job_id)
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    assert job.attempts == 2
    [v0, v1] = versions(node, code)
    assert (v1.id, v1.state, v1.lake_version, v1.rows_accepted) == (
        killed.id, LoadState.COMMITTED, 1, 5000,
    )  # fmt: skip
    assert DeltaTable(node.lake.table_uri(code)).version() == 1
    assert rows(node, code).num_rows == 5010
    assert sorted(rows(node, code, version=0).column("id").to_pylist()) == list(range(1, 11))
    assert v0.state == LoadState.COMMITTED
