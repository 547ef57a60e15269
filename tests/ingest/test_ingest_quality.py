"""The quality report of a version: a job of its own, queued by the version's commit."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from minyun.catalog.models import ResourceSchema
from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.tableschema import parse_schema
from minyun.core.uow import unit_of_work
from minyun.ingest import service
from minyun.ingest.models import LoadMode
from minyun.ingest.validate import quality_query, quality_report
from tests.ingest.loadkit import (
    PERSON_SCHEMA,
    make_resource,
    person,
    ric,
    run_quality_jobs,
    versions,
    write_csv,
)


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
    # The version holds the 8 rows that kept every rule: all valid, by the load's rules.
    assert quality["fields"]["sex"]["validity"] == 1.0
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


def test_every_field_is_fully_valid_on_a_version_whose_rejects_hold_every_invalid_row(
    node: Platform, tmp_path: Path
) -> None:
    code, actor = make_resource(node)
    bad = [
        person(101, employer="91350100MA2XXXXXX0"),  # a credit code with a wrong check
        person(102, ric="350102198001011234"),
        person(103, phone="12"),
        person(104, sex="X"),
        person(105, county="999999"),
        person(106, score=101),
        person(107, birth="1899-12-31"),
        person(108, level="D"),
        person(109, name="名字太长了名字太长了名字"),
        person(110, updated="yesterday"),
        person(111, id="1.5"),
    ]
    data = [person(i) for i in range(1, 41)] + bad + [person(112, id=None)]
    _load_only(node, actor, code, write_csv(tmp_path / "a.csv", data), LoadMode.FULL)
    run_quality_jobs(node)
    [v] = versions(node, code)
    assert v.rows_rejected == len(bad) + 1
    quality = v.quality or {}
    assert quality["rows"] == 40
    assert {name: f["validity"] for name, f in quality["fields"].items()} == {
        name: 1.0 for name in quality["fields"]
    }
    assert quality["fields"]["employer"]["rejected"] == 1
    # Checked row by row with the load's rules (nothing taken as settled), the same.
    schema = parse_schema(PERSON_SCHEMA)
    found = node.lake.aggregate(
        code, 0, lambda table: quality_query(schema, table), timezone=service.SOURCE_TIMEZONE
    )
    assert quality_report(schema, found, v.rows_read, {}) == {
        **quality,
        "fields": {n: {**f, "rejected": 0} for n, f in quality["fields"].items()},
    }
    assert quality["fields"]["id"]["rejected"] == 2
    # Uniqueness only where repeats are an error: the key and the unique identity number.
    expected = {n: f["unique"] for n, f in quality["fields"].items() if "uniqueness" in f}
    assert expected == {"id": "primary key", "ric": "unique"}
    assert (
        quality["fields"]["id"]["uniqueness"] == 1.0
        and "uniqueness" not in quality["fields"]["sex"]
    )
    assert [(k["fields"], k["kind"], k["uniqueness"]) for k in quality["keys"]] == [
        (["id"], "primary key", 1.0),
        (["ric"], "unique", 1.0),
    ]


def test_validity_counts_the_rows_of_the_version_that_break_its_schema(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, actor = make_resource(node)
    names = [person(i, name=f"名{i:04d}") for i in range(1, 11)]
    _load_only(node, actor, code, write_csv(tmp_path / "a.csv", names), LoadMode.FULL)
    # A later schema allows 4 characters; the next append is checked by it, the rows of
    # the first load stay as they were.
    stricter = json.loads(json.dumps(PERSON_SCHEMA))
    stricter["fields"][2]["constraints"]["maxLength"] = 4
    with unit_of_work(node.factory) as session:
        resource = service.get_resource(session, code)
        session.add(ResourceSchema(resource_id=resource.id, version="2.0", descriptor=stricter,
                                   change="major", created_by="test"))  # fmt: skip
        resource.current_schema_version = "2.0"
    more = [person(i, name=f"名{i}") for i in range(11, 21)]
    _load_only(node, actor, code, write_csv(tmp_path / "b.csv", more), LoadMode.APPEND)
    run_quality_jobs(node)
    first, second = versions(node, code)
    assert (first.quality or {})["fields"]["name"]["validity"] == 1.0
    assert (second.quality or {})["fields"]["name"]["validity"] == 0.5
    assert (second.quality or {})["fields"]["name"]["rejected"] == 0


def test_a_key_repeated_across_loads_lowers_its_uniqueness(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, actor = make_resource(node)
    first = [person(i) for i in range(1, 5)]
    _load_only(node, actor, code, write_csv(tmp_path / "a.csv", first), LoadMode.FULL)
    # Each load checks its own rows; an append can bring back a key the table has.
    again = [person(3, ric=ric(103)), person(4, ric=ric(104))]
    _load_only(node, actor, code, write_csv(tmp_path / "b.csv", again), LoadMode.APPEND)
    run_quality_jobs(node)
    full, appended = versions(node, code)
    assert (full.quality or {})["fields"]["id"]["uniqueness"] == 1.0
    report = appended.quality or {}
    assert report["rows"] == 6 and report["fields"]["id"]["uniqueness"] == round(4 / 6, 6)
    assert report["fields"]["id"]["distinct"] == 4 and report["fields"]["ric"]["uniqueness"] == 1.0
    assert report["keys"][0] == {
        "fields": ["id"], "kind": "primary key", "uniqueness": round(4 / 6, 6), "repeated": 2,
    }  # fmt: skip
