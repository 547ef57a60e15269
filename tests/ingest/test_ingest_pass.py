"""The one pass over a source: rows read come from the scan, refused rows are not written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.tableschema import parse_schema
from minyun.ingest import sources
from minyun.ingest.validate import Checks
from tests.ingest.loadkit import (
    PERSON_SCHEMA,
    load,
    make_resource,
    person,
    rejects,
    rows,
    versions,
    write_csv,
)

ROWS = [("1", "a"), ("2", "b"), ("3", "c"), ("4", "d")]


def _sources(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    (tmp_path / "s.csv").write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in ROWS))
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"x": x, "y": y}) + "\n" for x, y in ROWS))
    table = pa.table({"x": [x for x, _ in ROWS], "y": [y for _, y in ROWS]})
    pq.write_table(table, tmp_path / "s.parquet")
    con.register("__sheet", table)
    return {
        "csv": f"read_csv('{tmp_path / 's.csv'}', all_varchar=true, header=true)",
        "jsonl": f"read_json('{tmp_path / 's.jsonl'}', format='newline_delimited', "
        "columns={'x': 'VARCHAR', 'y': 'VARCHAR'})",
        "parquet": f"read_parquet('{tmp_path / 's.parquet'}')",
        "xlsx": "__sheet",  # a workbook is registered as an Arrow table
    }


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet", "xlsx"])
def test_rows_read_come_from_the_scan_and_refused_rows_are_not_written(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = duckdb.connect()
    relation = _sources(tmp_path, con)[kind]
    # The query profile must answer by itself: counting again would hide a broken profile.
    monkeypatch.setattr(sources, "count_rows", lambda *a, **k: pytest.fail("counted again"))
    written = sources.write_parts(
        con, relation, "src.x AS x, src.y AS y", "src.x NOT IN ('2', '4')", tmp_path / "out"
    )
    assert written.rows_read == 4
    assert sum(part.rows for part in written.parts) == 2
    got = con.execute(
        "SELECT x FROM read_parquet([" + ", ".join(f"'{p.path}'" for p in written.parts) + "])"
    ).fetchall()
    assert sorted(got) == [("1",), ("3",)]
    # Settings are put back for the queries that follow on the same connection.
    assert con.execute("SELECT current_setting('disabled_optimizers')").fetchall() == [("",)]


def test_a_pass_where_no_row_passes_leaves_no_file(tmp_path: Path) -> None:
    con = duckdb.connect()
    relation = _sources(tmp_path, con)["csv"]
    written = sources.write_parts(con, relation, "src.x AS x", "false", tmp_path / "out")
    assert (written.rows_read, written.parts) == (4, [])
    assert list((tmp_path / "out").glob("*.parquet")) == []


def test_with_a_watermark_the_rows_read_are_those_past_it(tmp_path: Path) -> None:
    con = duckdb.connect()
    relation = _sources(tmp_path, con)["csv"]
    written = sources.write_parts(
        con, relation, "src.x AS x", "src.y <> 'd'", tmp_path / "out", where="src.x > '1'"
    )
    assert written.rows_read == 3 and sum(p.rows for p in written.parts) == 2


def test_a_profile_without_one_clear_scan_gives_no_count() -> None:
    assert sources._scanned_rows("not json") is None
    two = {"children": [{"operator_type": "TABLE_SCAN", "operator_cardinality": 3},
                        {"operator_type": "TABLE_SCAN", "operator_cardinality": 4}]}  # fmt: skip
    assert sources._scanned_rows(json.dumps(two)) is None
    one = {"children": [{"type": "HASH_JOIN", "children": [
        {"type": "TABLE_SCAN", "intermediate_rows": 7},
        {"type": "COLUMN_DATA_SCAN", "intermediate_rows": 5}]}]}  # fmt: skip
    assert sources._scanned_rows(json.dumps(one)) == 7


def test_a_repeated_key_with_no_other_broken_row_is_rejected(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, actor = make_resource(node)
    data = [person(i) for i in range(1, 6)] + [person(2, ric=person(6)["ric"])]
    job = load(node, actor, code, write_csv(tmp_path / "p.csv", data))
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    [v] = versions(node, code)
    assert (v.rows_read, v.rows_accepted, v.rows_rejected) == (6, 5, 1)
    assert [(r["row_number"], r["reason"]) for r in rejects(node, actor, code)] == [
        (6, "duplicate primary key (first at row 2)")
    ]
    assert sorted(rows(node, code).column("id").to_pylist()) == [1, 2, 3, 4, 5]
    assert not list(Path(node.lake.table_uri(code)).glob("load-*/again"))


def test_a_key_first_seen_on_a_refused_row_makes_its_later_copy_a_duplicate(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, actor = make_resource(node)
    data = [person(1, sex="X"), person(2), person(1), person(3), person(4)]
    job = load(node, actor, code, write_csv(tmp_path / "p.csv", data))
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    [v] = versions(node, code)
    assert (v.rows_read, v.rows_accepted, v.rows_rejected) == (5, 3, 2)
    reasons = {(r["row_number"], r["reason"]) for r in rejects(node, actor, code)}
    assert (3, "duplicate primary key (first at row 1)") in reasons
    assert (1, "not one of the allowed values") in reasons
    assert sorted(rows(node, code).column("id").to_pylist()) == [2, 3, 4]


def test_repeated_integer_keys_are_counted_with_a_bitmap_within_their_bounds(
    tmp_path: Path,
) -> None:
    from minyun.core.tableschema import parse_schema
    from minyun.ingest.validate import BITMAP_MAX, Checks

    schema = parse_schema({"fields": [{"name": "id", "type": "integer"}], "primaryKey": ["id"]})
    pq.write_table(pa.table({"id": [5, 7, None, 7, 9, 7]}), tmp_path / "k.parquet")
    files = f"['{tmp_path / 'k.parquet'}']"
    checks = Checks(schema)
    bitmap = checks.dup_count_query(files, {"id": (5, 9)})
    hashed = checks.dup_count_query(files, {"id": (0, BITMAP_MAX + 1)})
    assert bitmap is not None and "bitstring_agg" in bitmap
    assert hashed is not None and "count(DISTINCT" in hashed
    con = duckdb.connect()
    # Two later copies of 7; the null key is the required rule's business, not a repeat.
    assert con.execute(bitmap).fetchall() == con.execute(hashed).fetchall() == [(2,)]


def test_the_row_check_of_the_pass_equals_not_any_rule(tmp_path: Path) -> None:
    """`Checks.ok()` is written one term per field: it keeps exactly the rows no rule breaks."""
    descriptor = json.loads(json.dumps(PERSON_SCHEMA))
    descriptor["fields"] += [
        {"name": "year", "type": "year"},
        {"name": "count", "type": "integer", "constraints": {"required": True, "minimum": 1}},
        {"name": "mail", "type": "string", "format": "email", "constraints": {"minLength": 6}},
        {"name": "flag", "type": "boolean"},
    ]
    schema = parse_schema(descriptor)
    extra = {"year": "2024", "count": "3", "mail": "a@b.cn", "flag": "true"}
    values: dict[str, list[Any]] = {
        "id": ["abc", None, "1.5", "0x10", " 7 ", "+8", "009"],
        "ric": ["350102198001010010", None, "35010219800101001x"],
        "name": [None, "名" * 11, "名" * 10],
        "sex": ["U", None],
        "birth": ["1899-12-31", "1990-02-30", None],
        "county": ["110101", None],
        "phone": ["23800000000", None],
        "score": ["-1", "101", "NaN", "x", None, "100", "1e2"],
        "level": ["D", None],
        "employer": ["91350100000000019F", None],
        "updated": ["yesterday", None],
        "year": ["10000", "-1", "yr", None, "1999.5"],
        "count": ["0", None, "many", "3.0"],
        "mail": ["a@b", "@b.cn", "a@bc", None],
        "flag": ["maybe", None],
    }
    data = [{**person(1), **extra}]
    for name, options in values.items():
        data += [{**person(len(data) + 1), **extra, name: v} for v in options]
    path = write_csv(tmp_path / "rows.csv", data, columns=schema.names)
    checks = Checks(schema)
    source = checks.wrap(
        "(SELECT row_number() OVER () AS n, * FROM "
        f"read_csv('{path}', all_varchar=true, header=true))",
        schema.names,
    )
    got = duckdb.sql(
        f"SELECT src.n, {checks.ok()}, NOT {checks.bad(dups=False)} FROM {source} AS src "
        "ORDER BY src.n"
    ).fetchall()
    assert len(got) == len(data)
    assert [(n, ok) for n, ok, _ in got] == [(n, expected) for n, _, expected in got]
    kept = {n for n, ok, _ in got if ok}
    # Row 1, an absent value where the field may be empty, and the values that are fine.
    fine = {("id", " 7 "), ("id", "+8"), ("id", "009"), ("name", "名" * 10),
            ("score", "100"), ("score", "1e2"), ("count", "3.0")}  # fmt: skip
    required = {"id", "ric", "name", "count"}
    expected, n = {1}, 1
    for name, options in values.items():
        for v in options:
            n += 1
            if (v is None and name not in required) or (name, v) in fine:
                expected.add(n)
    assert kept == expected
