"""Loads: every file kind, every mode, every rule, rejects, idempotency, time travel, threshold."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from openpyxl import Workbook
from sqlalchemy import update

from minyun.catalog.models import Resource, ResourceStatus
from minyun.core import audit, jobs
from minyun.core.errors import Forbidden, Invalid, NotFound
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.core.uow import unit_of_work
from minyun.ingest import service
from minyun.ingest.models import LoadMode, LoadState
from tests.ingest.loadkit import (
    COLUMNS,
    PERSON_SCHEMA,
    load,
    make_resource,
    person,
    persons_table,
    rejects,
    rows,
    versions,
    write_csv,
)

SUCCEEDED = jobs.JobState.SUCCEEDED


def test_csv_load_commits_a_version_with_lineage_quality_and_rejects(
    node: Platform, tmp_path: Path
) -> None:
    code, actor = make_resource(node)
    data = [person(i) for i in range(1, 9)] + [person(9, sex="X"), person(3)]
    src = write_csv(tmp_path / "people.csv", data)
    job = load(node, actor, code, src)
    assert job.state == SUCCEEDED, job.error
    [v] = versions(node, code)
    assert (v.state, v.lake_version, v.rows_read, v.rows_accepted, v.rows_rejected) == (
        LoadState.COMMITTED, 0, 10, 8, 2,
    )  # fmt: skip
    assert v.source == "people.csv" and v.source_kind == "csv" and len(v.sha256 or "") == 64
    assert v.loaded_by == actor.label and v.duration_s is not None and v.schema_version == "1.0"
    assert v.mode == "full" and v.job_id == job.id
    q = v.quality or {}
    assert q["rows"] == 8
    assert q["fields"]["id"] == {
        "completeness": 1.0, "validity": 1.0, "uniqueness": 1.0, "unique": "primary key",
        "distinct": 8, "min": "1", "max": "8", "rejected": 1,
    }  # fmt: skip
    assert q["fields"]["sex"]["validity"] == 1.0 and q["fields"]["sex"]["rejected"] == 1
    assert "uniqueness" not in q["fields"]["sex"]
    # The report is public to catalog readers: no real identity number as a min or max.
    assert (q["fields"]["ric"]["min"], q["fields"]["ric"]["max"]) == (None, None)
    assert "withheld" in q["fields"]["ric"] and q["fields"]["ric"]["distinct"] == 8
    table = rows(node, code)
    assert sorted(table.column("id").to_pylist()) == list(range(1, 9))
    assert table.schema.field("birth").type == pa.date32()
    rejected = rejects(node, actor, code)
    assert [(r["row_number"], r["field"]) for r in rejected] == [
        (9, "sex"),
        (10, "id"),
        (10, "ric"),
    ]
    assert rejected[1]["reason"] == "duplicate primary key (first at row 3)"
    assert json.loads(str(rejected[0]["record"]))["sex"] == "X"
    with node.factory() as session:
        resource = service.get_resource(session, code)
        assert (resource.lake_version, resource.row_count) == (0, 8)
        actions = [r.action for r in session.query(audit.AuditRecord).all()]
    assert "resource.load" in actions and "resource.version" in actions


def test_every_rule_rejects_its_row_with_its_reason(sqlite_node: Platform, tmp_path: Path) -> None:
    code, actor = make_resource(sqlite_node)
    bad = {
        2: ("id", {"id": "abc"}, "not a valid integer"),
        3: ("ric", {"ric": "350102198001010010"}, "not a valid identity number (GB 11643)"),
        4: ("name", {"name": None}, "required"),
        5: ("name", {"name": "名" * 11}, "longer than 10"),
        6: ("sex", {"sex": "U"}, "not one of the allowed values"),
        7: ("birth", {"birth": "1899-12-31"}, "below the minimum 1900-01-01"),
        8: ("birth", {"birth": "1990-02-30"}, "not a valid date"),
        9: ("county", {"county": "110101"}, "not in the code list"),
        10: ("phone", {"phone": "23800000000"}, "does not match the pattern"),
        11: ("score", {"score": -1}, "below the minimum 0"),
        12: ("score", {"score": 101}, "above the maximum 100"),
        13: ("level", {"level": "D"}, "not in the code list"),
        14: ("employer", {"employer": "91350100000000019F"}, "not a valid credit code (GB 32100)"),
        15: ("updated", {"updated": "yesterday"}, "not a valid datetime"),
        16: ("ric", {"ric": None}, "required"),
    }
    data = [person(1)] + [person(n, **over) for n, (_, over, _) in sorted(bad.items())]
    data.append(person(17, ric=person(1)["ric"]))  # unique field repeated
    job = load(sqlite_node, actor, code, write_csv(tmp_path / "bad.csv", data))
    assert job.state == jobs.JobState.FAILED  # 16 of 17 rows bad: above the threshold
    got = {(r["row_number"], r["field"], r["reason"]) for r in rejects(sqlite_node, actor, code)}
    expected = {(n, f, reason) for n, (f, _, reason) in bad.items()}
    expected.add((17, "ric", "duplicate value (first at row 1)"))
    assert got == expected


def test_an_impossible_date_in_a_csv_rejects_its_row_not_the_load(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    # A required date field: DuckDB's type pushdown turned its TRY_CAST into a strict cast
    # inside the CSV reader, and "1985-02-30" failed the whole load.
    schema = {"fields": [{"name": "id", "type": "integer"},
                         {"name": "day", "type": "date", "constraints": {"required": True}}],
              "primaryKey": ["id"]}  # fmt: skip
    code, actor = make_resource(sqlite_node, descriptor=schema)
    lines = ["id,day", *(f"{n},1985-02-{n:02d}" for n in range(1, 29)), "29,1985-02-30"]
    (tmp_path / "days.csv").write_text("\n".join(lines) + "\n")
    job = load(sqlite_node, actor, code, tmp_path / "days.csv")
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    got = {(r["row_number"], r["field"], r["reason"]) for r in rejects(sqlite_node, actor, code)}
    assert got == {(29, "day", "not a valid date")}


def test_an_integer_is_a_whole_number_not_a_rounded_fraction_or_hex(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    code, actor = make_resource(sqlite_node)
    data = [person(n) for n in range(1, 21)]
    data[1]["id"], data[2]["id"], data[3]["id"] = "2.5", "0x10", " 4 "
    job = load(sqlite_node, actor, code, write_csv(tmp_path / "ids.csv", data))
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    got = {(r["row_number"], r["field"], r["reason"]) for r in rejects(sqlite_node, actor, code)}
    assert got == {(2, "id", "not a valid integer"), (3, "id", "not a valid integer")}
    ids = rows(sqlite_node, code).column("id").to_pylist()
    assert sorted(ids) == [1, 4, *range(5, 21)]


def test_gbk_and_gb18030_files_load_with_their_encoding(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    code, actor = make_resource(sqlite_node)
    data = [person(i, name=f"林闽{i}") for i in range(1, 6)]
    gbk = write_csv(tmp_path / "gbk.csv", data, encoding="gbk")
    failed = load(sqlite_node, actor, code, gbk)
    assert failed.state == jobs.JobState.FAILED and "UTF-8" in (failed.error or "")
    assert versions(sqlite_node, code)[-1].state == LoadState.FAILED
    assert "encoding" in (versions(sqlite_node, code)[-1].error or "")
    assert load(sqlite_node, actor, code, gbk, encoding="gbk").state == SUCCEEDED
    assert rows(sqlite_node, code).column("name").to_pylist()[0] == "林闽1"
    data18030 = [person(i, name=f"㐀{i}") for i in range(1, 4)]  # outside GBK
    gb18030 = write_csv(tmp_path / "gb18030.csv", data18030, encoding="gb18030")
    assert load(sqlite_node, actor, code, gb18030, encoding="gb18030").state == SUCCEEDED
    assert rows(sqlite_node, code).column("name").to_pylist()[0] == "㐀1"


def test_xlsx_jsonl_and_parquet_files_load(sqlite_node: Platform, tmp_path: Path) -> None:
    code, actor = make_resource(sqlite_node)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(COLUMNS)
    for i in range(1, 5):
        r = person(i)
        sheet.append([int(r["id"]), r["ric"], r["name"], r["sex"], dt.date(1980, 1, 2), r["county"],
                      r["phone"], float(r["score"]), r["level"], r["employer"],
                      dt.datetime(2024, 1, 2, 8)])  # fmt: skip
    sheet.append([5, person(5)["ric"], "x", "Q"])
    book.save(tmp_path / "p.xlsx")
    job = load(sqlite_node, actor, code, tmp_path / "p.xlsx")
    assert job.state == SUCCEEDED, job.error
    assert job.result and job.result["rows_accepted"] == 4 and job.result["rows_rejected"] == 1
    assert rows(sqlite_node, code).column("birth").to_pylist()[0] == dt.date(1980, 1, 2)

    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({**person(i), "id": i, "score": 1.5}) for i in range(1, 7))
    )
    assert load(sqlite_node, actor, code, jsonl).state == SUCCEEDED
    assert rows(sqlite_node, code).num_rows == 6

    parquet = tmp_path / "p.parquet"
    pq.write_table(persons_table([person(i) for i in range(1, 8)]), parquet)
    assert load(sqlite_node, actor, code, parquet).state == SUCCEEDED
    assert rows(sqlite_node, code).num_rows == 7
    assert [v.source_kind for v in versions(sqlite_node, code)] == ["xlsx", "jsonl", "parquet"]


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "www"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


def test_url_source_is_downloaded_and_loaded(
    sqlite_node: Platform, http_dir: tuple[str, Path]
) -> None:
    base, folder = http_dir
    code, actor = make_resource(sqlite_node)
    write_csv(folder / "people.csv", [person(i) for i in range(1, 4)])
    assert load(sqlite_node, actor, code, f"{base}/people.csv").state == SUCCEEDED
    [v] = versions(sqlite_node, code)
    assert v.source_kind == "url" and v.source == f"{base}/people.csv" and v.rows_accepted == 3
    missing = load(sqlite_node, actor, code, f"{base}/nothing.csv")
    assert missing.state == jobs.JobState.FAILED and "404" in (missing.error or "")


def test_modes_full_append_upsert_delete_and_time_travel(node: Platform, tmp_path: Path) -> None:
    code, actor = make_resource(node)
    first = write_csv(tmp_path / "1.csv", [person(i) for i in range(1, 6)])
    assert load(node, actor, code, first).state == SUCCEEDED
    more = write_csv(tmp_path / "2.csv", [person(i) for i in range(6, 9)])
    assert load(node, actor, code, more, LoadMode.APPEND).state == SUCCEEDED
    changed = write_csv(tmp_path / "3.csv", [person(2, name="改名"), person(20)])
    assert load(node, actor, code, changed, LoadMode.UPSERT).state == SUCCEEDED
    gone = tmp_path / "4.csv"
    gone.write_text("id\n1\n7\n")
    assert load(node, actor, code, gone, LoadMode.DELETE).state == SUCCEEDED
    replace = write_csv(tmp_path / "5.csv", [person(100)])
    assert load(node, actor, code, replace).state == SUCCEEDED

    def ids(**kw: object) -> list[int]:
        return sorted(rows(node, code, **kw).column("id").to_pylist())

    assert ids(version=0) == [1, 2, 3, 4, 5]
    assert ids(version=1) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert ids(version=2) == [1, 2, 3, 4, 5, 6, 7, 8, 20]
    names = dict(
        zip(
            *[rows(node, code, version=2).column(c).to_pylist() for c in ("id", "name")],
            strict=True,
        )
    )
    assert names[2] == "改名"
    assert ids(version=3) == [2, 3, 4, 5, 6, 8, 20]
    assert ids() == [100]
    vs = versions(node, code)
    assert [v.lake_version for v in vs] == [0, 1, 2, 3, 4]
    assert [v.mode for v in vs] == ["full", "append", "upsert", "delete", "full"]
    committed_after_v1 = vs[1].committed_at
    assert committed_after_v1 is not None
    # A time between the commits of versions 1 and 2: at version 1's own timestamp the
    # version may not be visible yet (its log file is written a few milliseconds later).
    history = DeltaTable(node.lake.table_uri(code)).history()
    between = (history[-2]["timestamp"] + history[-3]["timestamp"]) / 2
    at = dt.datetime.fromtimestamp(between / 1000, tz=dt.UTC)
    assert ids(as_of=at) == [1, 2, 3, 4, 5, 6, 7, 8]
    table = DeltaTable(node.lake.table_uri(code))
    assert table.metadata().configuration.get("delta.enableChangeDataFeed") == "true"
    feed = table.load_cdf(starting_version=2, ending_version=2).read_all()
    assert set(feed.column("_change_type").to_pylist()) == {
        "update_preimage",
        "update_postimage",
        "insert",
    }


def test_an_upsert_reads_only_the_files_its_key_range_overlaps(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    code, actor = make_resource(sqlite_node)
    for n, (low, high) in enumerate([(1, 100), (101, 200), (201, 300)]):
        csv_path = write_csv(tmp_path / f"{n}.csv", [person(i) for i in range(low, high + 1)])
        mode = LoadMode.FULL if n == 0 else LoadMode.APPEND
        assert load(sqlite_node, actor, code, csv_path, mode).state == SUCCEEDED
    uri = sqlite_node.lake.table_uri(code)
    before = set(DeltaTable(uri).file_uris())
    changed = write_csv(tmp_path / "c.csv", [person(i, name="改") for i in range(150, 161)])
    assert load(sqlite_node, actor, code, changed, LoadMode.UPSERT).state == SUCCEEDED
    table = DeltaTable(uri)
    merge = table.history(1)[0]
    assert merge["operation"] == "MERGE"
    predicate = merge["operationParameters"]["predicate"]
    assert ">= 150" in predicate and "<= 160" in predicate, predicate
    kept = before & set(table.file_uris())
    assert len(kept) == len(before) - 1  # only the second load's file was rewritten
    got = rows(sqlite_node, code)
    names = dict(zip(got.column("id").to_pylist(), got.column("name").to_pylist(), strict=True))
    assert len(names) == 300
    assert {i for i, name in names.items() if name == "改"} == set(range(150, 161))


def test_same_input_twice_is_a_noop(sqlite_node: Platform, tmp_path: Path) -> None:
    code, actor = make_resource(sqlite_node)
    src = write_csv(tmp_path / "a.csv", [person(i) for i in range(1, 4)])
    assert load(sqlite_node, actor, code, src, LoadMode.APPEND).state == SUCCEEDED
    again = load(sqlite_node, actor, code, src, LoadMode.APPEND)
    assert again.result == {
        "version_id": again.result["version_id"],
        "state": "noop",
        "same_as": versions(sqlite_node, code)[0].id,
    }  # type: ignore[index]
    assert rows(sqlite_node, code).num_rows == 3
    assert [v.state for v in versions(sqlite_node, code)] == [LoadState.COMMITTED, LoadState.NOOP]
    table = DeltaTable(sqlite_node.lake.table_uri(code))
    assert table.version() == 0
    # The file is hashed beside the read: the repeat's files were written, then removed.
    folder = Path(sqlite_node.lake.table_uri(code))
    on_disk = {f.name for f in folder.rglob("*.parquet")}
    assert on_disk == {Path(u.removeprefix("file://")).name for u in table.file_uris()}


def test_watermark_loads_only_newer_rows(sqlite_node: Platform, tmp_path: Path) -> None:
    code, actor = make_resource(sqlite_node)
    early = [person(i, updated=f"2024-01-0{i} 08:00:00") for i in range(1, 4)]
    src = write_csv(tmp_path / "a.csv", early)
    assert (
        load(sqlite_node, actor, code, src, LoadMode.UPSERT, watermark="updated").state == SUCCEEDED
    )
    later = [
        *early,
        person(4, updated="2024-01-05 08:00:00"),
        person(2, name="新", updated="2024-01-06 08:00:00"),
    ]
    src2 = write_csv(tmp_path / "b.csv", later)
    job = load(sqlite_node, actor, code, src2, LoadMode.UPSERT, watermark="updated")
    assert job.state == SUCCEEDED and job.result and job.result["rows_read"] == 2
    first, second = versions(sqlite_node, code)
    assert first.watermark == "2024-01-03 08:00:00.000000"
    assert second.watermark == "2024-01-06 08:00:00.000000"
    assert sorted(rows(sqlite_node, code).column("id").to_pylist()) == [1, 2, 3, 4]


def test_too_many_rejects_commit_nothing(sqlite_node: Platform, tmp_path: Path) -> None:
    code, actor = make_resource(sqlite_node, threshold=0.2)
    ok = write_csv(tmp_path / "ok.csv", [person(i) for i in range(1, 6)])
    assert load(sqlite_node, actor, code, ok).state == SUCCEEDED
    data = [person(i) for i in range(1, 8)] + [person(8, sex="?"), person(9, sex="?")]
    job = load(sqlite_node, actor, code, write_csv(tmp_path / "bad.csv", data))  # 2/9 = 22%
    assert job.state == jobs.JobState.FAILED and "22.2%" in (job.error or "")
    last = versions(sqlite_node, code)[-1]
    assert (last.state, last.lake_version, last.rows_read, last.rows_rejected) == (
        LoadState.REJECTED,
        None,
        9,
        2,
    )
    assert sorted(rows(sqlite_node, code).column("id").to_pylist()) == [1, 2, 3, 4, 5]
    assert DeltaTable(sqlite_node.lake.table_uri(code)).version() == 0
    assert [r["row_number"] for r in rejects(sqlite_node, actor, code, version=last.id)] == [8, 9]
    under = [person(i) for i in range(1, 9)] + [person(9, sex="?")]  # 1/9 = 11%
    assert load(sqlite_node, actor, code, write_csv(tmp_path / "ok2.csv", under)).state == SUCCEEDED


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id;ric;name\n1;2;3\n", "header does not match"),
        ("identifier,ric\n1,2\n", "missing id"),
        (None, "truncated"),
    ],
)
def test_unreadable_files_fail_with_a_clear_error_and_no_version(
    sqlite_node: Platform, tmp_path: Path, content: str | None, message: str
) -> None:
    code, actor = make_resource(sqlite_node)
    assert (
        load(sqlite_node, actor, code, write_csv(tmp_path / "ok.csv", [person(1)])).state
        == SUCCEEDED
    )
    src = tmp_path / "bad.csv"
    if content is None:
        whole = write_csv(tmp_path / "whole.csv", [person(i) for i in range(1, 50)]).read_bytes()
        src.write_bytes(whole[: len(whole) * 2 // 3])
        message = "not well-formed CSV"
    else:
        src.write_text(content)
    job = load(sqlite_node, actor, code, src)
    assert job.state == jobs.JobState.FAILED and message in (job.error or ""), job.error
    last = versions(sqlite_node, code)[-1]
    assert last.state == LoadState.FAILED and message in (last.error or "")
    assert DeltaTable(sqlite_node.lake.table_uri(code)).version() == 0
    assert rows(sqlite_node, code).num_rows == 1


def test_upload_over_the_size_limit_is_refused(sqlite_node: Platform, tmp_path: Path) -> None:
    settings = sqlite_node.settings.model_copy(update={"upload_max_bytes": 1000})
    src = write_csv(tmp_path / "big.csv", [person(i) for i in range(1, 100)])
    with (
        src.open("rb") as f,
        pytest.raises(service.sources.SourceError, match="larger than the limit"),
    ):
        service.save_upload(f, settings)
    assert not any((settings.var_dir / "uploads").iterdir())
    with src.open("rb") as f:
        path, sha, size = service.save_upload(f, sqlite_node.settings)
    assert path.name == sha and size == src.stat().st_size


def test_unconnectable_dsn_fails_the_load_with_the_reason(sqlite_node: Platform) -> None:
    code, actor = make_resource(sqlite_node)
    job = load(sqlite_node, actor, code, "postgresql://nobody@127.0.0.1:1/none", table="people")
    assert (
        job.state == jobs.JobState.FAILED
        and "cannot read postgresql://127.0.0.1:1/none#people" in (job.error or "")
    )
    [v] = versions(sqlite_node, code)
    assert v.state == LoadState.FAILED and "nobody" not in v.source


def test_schema_with_an_unknown_type_cannot_be_loaded(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    code, actor = make_resource(
        sqlite_node, descriptor={"fields": [{"name": "a", "type": "integr"}]}
    )
    with (
        unit_of_work(sqlite_node.factory) as session,
        pytest.raises(service.Invalid, match=r"'a'.*integr"),
    ):
        service.submit_load(
            session, actor, code, str(tmp_path / "x.csv"), settings=sqlite_node.settings
        )


def test_only_the_providers_staff_or_an_admin_may_load(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    code, _ = make_resource(sqlite_node)
    other_code, other_steward = make_resource(sqlite_node)
    src = str(write_csv(tmp_path / "a.csv", [person(1)]))
    with pytest.raises(Forbidden), unit_of_work(sqlite_node.factory) as session:
        service.submit_load(session, other_steward, code, src, settings=sqlite_node.settings)
    consumer = Principal(
        kind="user", name="c", organization_id=None, roles=frozenset({Role.CONSUMER})
    )
    with pytest.raises(Forbidden), unit_of_work(sqlite_node.factory) as session:
        service.submit_load(session, consumer, code, src, settings=sqlite_node.settings)
    admin = Principal(kind="user", name="a", roles=frozenset({Role.ADMIN}))
    assert load(sqlite_node, admin, code, src).state == SUCCEEDED
    with pytest.raises(Forbidden), unit_of_work(sqlite_node.factory) as session:
        service.read_rejects(session, sqlite_node.lake, other_steward, code)
    with node_session(sqlite_node) as session:
        session.execute(
            update(Resource).where(Resource.code == code).values(status=ResourceStatus.DRAFT)
        )
    with pytest.raises(NotFound), unit_of_work(sqlite_node.factory) as session:
        service.list_versions(session, other_steward, code)
    assert other_code


def node_session(node: Platform):  # type: ignore[no-untyped-def]
    return unit_of_work(node.factory)


@pytest.mark.parametrize("encoding", ["rot13", "zlib_codec", "base64", "hex", "no-such-thing"])
def test_an_encoding_that_is_not_a_text_encoding_is_refused_with_the_reason(
    sqlite_node: Platform, tmp_path: Path, encoding: str
) -> None:
    code, actor = make_resource(sqlite_node)
    src = write_csv(tmp_path / "a.csv", [person(1)])
    with (
        unit_of_work(sqlite_node.factory) as session,
        pytest.raises(service.sources.SourceError, match="unknown text encoding") as refused,
    ):
        service.submit_load(
            session, actor, code, str(src), encoding=encoding, settings=sqlite_node.settings
        )
    assert refused.value.extra["field"] == "encoding"
    # A job queued before this check (or by hand) fails with the same reason, no traceback.
    with pytest.raises(service.sources.SourceError, match="unknown text encoding"):
        service.sources.transcode(src, encoding, tmp_path)


def test_extra_source_columns_are_ignored_and_the_load_says_so(
    node: Platform, tmp_path: Path
) -> None:
    code, actor = make_resource(node)
    columns = [*COLUMNS[:3], "remark", *COLUMNS[3:], "备注"]
    data = [person(i, remark="x", 备注="y") for i in range(1, 4)]
    job = load(node, actor, code, write_csv(tmp_path / "a.csv", data, columns=columns))
    assert job.state == SUCCEEDED
    assert (job.result or {})["notes"] == ["extra columns ignored: remark, 备注"]
    [v] = versions(node, code)
    assert v.notes == "extra columns ignored: remark, 备注"
    with unit_of_work(node.factory) as session:
        [listed] = service.versions_json(service.list_versions(session, actor, code))
    assert listed["notes"] == "extra columns ignored: remark, 备注"
    assert rows(node, code).column_names == COLUMNS
    # The same columns as the schema: nothing to say.
    again = load(node, actor, code, write_csv(tmp_path / "b.csv", data[:2]))
    assert (again.result or {})["notes"] == [] and versions(node, code)[-1].notes is None


def _submit(node: Platform, actor: Principal, code: str, source: Path, **kw: Any) -> str:
    with unit_of_work(node.factory) as session:
        return service.submit_load(session, actor, code, str(source), **kw).id


def test_an_upload_is_deleted_once_its_load_settles_and_no_other_load_needs_it(
    node: Platform, tmp_path: Path
) -> None:
    code, actor = make_resource(node)
    src = write_csv(tmp_path / "a.csv", [person(i) for i in range(1, 6)])
    with src.open("rb") as f:
        upload, _, _ = service.save_upload(f, node.settings)
    first = _submit(node, actor, code, upload, settings=node.settings)
    second = _submit(node, actor, code, upload, mode=LoadMode.APPEND, settings=node.settings)
    assert jobs.run(node.factory, first).state == SUCCEEDED
    assert upload.is_file()  # the second load will read it
    assert jobs.run(node.factory, second).state == SUCCEEDED
    assert not upload.exists()
    # A failed load settles too; an operator's own file is never deleted.
    with io.BytesIO(b"identifier,ric\n1,2\n") as f:
        bad, _, _ = service.save_upload(f, node.settings)
    failed = _submit(node, actor, code, bad, settings=node.settings)
    assert jobs.run(node.factory, failed).state == jobs.JobState.FAILED
    assert not bad.exists()
    assert src.is_file()


def test_uploads_are_kept_for_the_configured_retention_then_swept(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    keep = node.settings.model_copy(update={"upload_retention_hours": 24.0})
    code, actor = make_resource(node)
    src = write_csv(tmp_path / "a.csv", [person(i) for i in range(1, 6)])
    with src.open("rb") as f:
        old, _, _ = service.save_upload(f, keep)
    assert jobs.run(node.factory, _submit(node, actor, code, old, settings=keep)).state == SUCCEEDED
    assert old.is_file()  # kept: within its retention
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    newer = write_csv(tmp_path / "b.csv", [person(i) for i in range(1, 8)])
    with newer.open("rb") as f:
        fresh, _, _ = service.save_upload(f, keep)
    job = _submit(node, actor, code, fresh, settings=keep)
    assert jobs.run(node.factory, job).state == SUCCEEDED
    assert not old.exists() and fresh.is_file()


def test_a_schema_saved_before_its_constraints_were_checked_refuses_loads_naming_the_field(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    descriptor = json.loads(json.dumps(PERSON_SCHEMA))
    descriptor["fields"][7]["constraints"]["minimum"] = "zero"  # score, a number
    code, actor = make_resource(sqlite_node, descriptor=descriptor)
    src = write_csv(tmp_path / "a.csv", [person(1)])
    with pytest.raises(Invalid, match="field 'score': minimum 'zero' is not a number value"):
        _submit(sqlite_node, actor, code, src, settings=sqlite_node.settings)
