"""A load process killed with SIGKILL: readers keep the previous version; a re-run finishes
and leaves no file of the killed run in the lake."""

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
from minyun.core.security import Principal
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

    if where == "reading":
        # The pass has written the accepted rows' files into the table folder, and not
        # returned: the rejects are not looked for yet.
        from minyun.ingest import service, sources

        real_write_parts = sources.write_parts

        def stop_in_the_pass(*args, **kwargs):
            written = real_write_parts(*args, **kwargs)
            assert written.parts and all(p.path.is_file() for p in written.parts)
            stop()

        service.sources.write_parts = stop_in_the_pass
    elif where == "writing":
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


def lake_files(node: Platform, code: str) -> tuple[set[Path], set[Path]]:
    """The Parquet files in the table folder, and those some version of the table names."""
    uri = node.lake.table_uri(code)
    on_disk = {p for p in Path(uri).rglob("*.parquet") if "_delta_log" not in p.parts}
    head = DeltaTable(uri).version()
    named = {Path(f) for v in range(head + 1) for f in DeltaTable(uri, version=v).file_uris()}
    return on_disk, named


def kill_an_append(node: Platform, tmp_path: Path, where: str) -> tuple[str, str]:
    """A resource with one committed load, and the job of an append killed at `where`."""
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
    return code, job_id


@pytest.mark.parametrize("where", ["reading", "writing", "committed"])
def test_killed_load_leaves_the_previous_version_and_a_rerun_completes(
    sqlite_node: Platform, tmp_path: Path, where: str
) -> None:
    node = sqlite_node
    code, job_id = kill_an_append(node, tmp_path, where)

    # Readers see the previous version only.
    assert sorted(rows(node, code).column("id").to_pylist()) == list(range(1, 11))
    killed = versions(node, code)[-1]
    assert killed.state == LoadState.RUNNING and killed.lake_version is None
    head = DeltaTable(node.lake.table_uri(code)).version()
    assert head == (1 if where == "committed" else 0)
    on_disk, named = lake_files(node, code)
    assert (on_disk > named) == (where != "committed")  # the killed run's files are there

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
    on_disk, named = lake_files(node, code)
    assert on_disk == named, "files of the killed run are left in the lake"
    assert not (node.settings.var_dir / "work" / f"load-{v1.id}").exists()


def test_a_killed_load_given_up_is_failed_by_the_next_load_and_its_files_deleted(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, job_id = kill_an_append(node, tmp_path, "reading")
    killed = versions(node, code)[-1]
    on_disk, named = lake_files(node, code)
    assert on_disk > named
    # Its runner is gone and the job is not run again (as after too many crashes).
    with node.factory.begin() as session:
        session.execute(
            update(jobs.Job).where(jobs.Job.id == job_id).values(state=jobs.JobState.FAILED)
        )
    actor = Principal.system()
    third = write_csv(tmp_path / "v2.csv", [person(i) for i in range(200, 210)])
    with unit_of_work(node.factory) as session:
        next_id = service.submit_load(
            session, actor, code, str(third), mode=LoadMode.APPEND, settings=node.settings
        ).id
    assert jobs.run(node.factory, next_id).state == jobs.JobState.SUCCEEDED
    gone = next(v for v in versions(node, code) if v.id == killed.id)
    assert gone.state == LoadState.FAILED and "interrupted" in (gone.error or "")
    on_disk, named = lake_files(node, code)
    assert on_disk == named, "files of the killed run are left in the lake"
    assert not (node.settings.var_dir / "work" / f"load-{killed.id}").exists()
    assert rows(node, code).num_rows == 20
