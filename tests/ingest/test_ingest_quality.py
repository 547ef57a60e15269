"""The quality report of a version: a job of its own, queued by the version's commit."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.ingest import service
from minyun.ingest.models import LoadMode
from tests.ingest.loadkit import make_resource, person, run_quality_jobs, versions, write_csv


def _load_only(node: Platform, actor: Principal, code: str, src: Path, mode: LoadMode) -> None:
    with unit_of_work(node.factory) as session:
        job_id = service.submit_load(
            session, actor, code, str(src), mode=mode, settings=node.settings
        ).id
    assert jobs.run(node.factory, job_id).state == jobs.JobState.SUCCEEDED


def test_a_committed_version_queues_its_quality_report(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, actor = make_resource(node)
    data = [person(i) for i in range(1, 9)] + [person(9, sex="X")]
    _load_only(node, actor, code, write_csv(tmp_path / "a.csv", data), LoadMode.FULL)
    [v] = versions(node, code)
    # The version is readable at once; its report comes with the job it queued.
    assert v.lake_version == 0 and v.quality is None
    with node.factory() as session:
        resource = service.get_resource(session, code)
        assert resource.row_count == 8
        queued = session.scalars(
            select(jobs.Job).where(jobs.Job.kind == service.QUALITY_KIND)
        ).one()
    assert queued.key == f"quality:{code}:{v.id}" and queued.state == jobs.JobState.QUEUED
    [done] = run_quality_jobs(node)
    assert done.state == jobs.JobState.SUCCEEDED and done.result["rows"] == 8
    [v] = versions(node, code)
    quality = v.quality or {}
    assert quality["rows"] == 8
    assert quality["fields"]["sex"]["rejected"] == 1
    assert quality["fields"]["sex"]["validity"] == round(1 - 1 / 9, 6)
    assert quality["fields"]["id"] == {**quality["fields"]["id"], "min": "1", "max": "8"}


def test_an_append_counts_the_rows_of_the_whole_version(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, actor = make_resource(node)
    _load_only(
        node, actor, code, write_csv(tmp_path / "a.csv", [person(1), person(2)]), LoadMode.FULL
    )
    more = write_csv(tmp_path / "b.csv", [person(3), person(4), person(5)])
    _load_only(node, actor, code, more, LoadMode.APPEND)
    with node.factory() as session:
        assert service.get_resource(session, code).row_count == 5
    run_quality_jobs(node)
    assert [(v.quality or {}).get("rows") for v in versions(node, code)] == [2, 5]


def test_a_report_without_the_loads_counts_takes_them_from_the_rejects(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, actor = make_resource(node)
    data = [person(i) for i in range(1, 5)] + [person(5, phone="12"), person(6, sex="?")]
    _load_only(node, actor, code, write_csv(tmp_path / "a.csv", data), LoadMode.FULL)
    [v] = versions(node, code)
    assert service._field_errors(node.lake, code, v.id) == {"phone": 1, "sex": 1}
    with unit_of_work(node.factory) as session:
        again = service.submit_quality(
            session, code, v.id, lake_uri=node.lake.uri, field_errors=None
        )
    assert again.key == f"quality:{code}:{v.id}"  # the same job: one report per version
    [done] = run_quality_jobs(node)
    assert done.state == jobs.JobState.SUCCEEDED
    [v] = versions(node, code)
    assert (v.quality or {})["fields"]["phone"]["rejected"] == 1
