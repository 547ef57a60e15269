"""A load whose version committed is never reported failed (issue 11, item 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.ingest import service
from minyun.ingest.models import LoadState
from tests.ingest.loadkit import make_resource, person, versions, write_csv


def _submit(node: Platform, steward: Principal, code: str, path: Path) -> str:
    with unit_of_work(node.factory) as session:
        job = service.submit_load(session, steward, code, str(path), settings=node.settings)
        return job.id


def _refresh_jobs(node: Platform, code: str) -> list[jobs.Job]:
    with node.factory() as session:
        found = session.scalars(select(jobs.Job).where(jobs.Job.kind == "serving.refresh"))
        return [job for job in found if job.params["code"] == code]


def test_a_cancellation_after_the_lake_commit_does_not_undo_the_load(
    node: Platform, tmp_path: Path
) -> None:
    code, steward = make_resource(node)
    job_id = _submit(node, steward, code, write_csv(tmp_path / "p.csv", [person(1), person(2)]))
    seen: list[str | None] = []

    def cancel_while_recording(done: int, total: int | None, message: str | None) -> None:
        seen.append(message)
        if message == "recording":  # the lake holds the version already
            with unit_of_work(node.factory) as session:
                jobs.cancel(session, steward, jobs.get_job(session, job_id))

    done = jobs.run(node.factory, job_id, on_progress=cancel_while_recording)
    assert "recording" in seen
    assert done.state == jobs.JobState.SUCCEEDED, done.error
    (version,) = versions(node, code)
    assert version.state == LoadState.COMMITTED and version.lake_version == 0
    assert done.result is not None and done.result["state"] == "committed"


def test_a_load_whose_control_plane_record_fails_is_recorded_from_its_delta_commit(
    node: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, steward = make_resource(node)
    job_id = _submit(node, steward, code, write_csv(tmp_path / "p.csv", [person(1), person(2)]))

    def busy(*args: Any, **kwargs: Any) -> None:
        # What a writer held for longer than the busy timeout did to the load before.
        raise OperationalError("UPDATE resources", {}, Exception("database is locked"))

    monkeypatch.setattr(service, "_record_committed", busy)
    done = jobs.run(node.factory, job_id)
    assert done.state == jobs.JobState.SUCCEEDED, done.error
    (version,) = versions(node, code)
    assert version.state == LoadState.COMMITTED and version.lake_version == 0
    assert (version.rows_read, version.rows_accepted) == (2, 2)
    with node.factory() as session:
        assert service.get_resource(session, code).lake_version == 0
    # The jobs that follow a committed version were queued with it.
    (refresh,) = _refresh_jobs(node, code)
    assert refresh.params["lake_version"] == 0 and refresh.params["primary_key"] == ["id"]
