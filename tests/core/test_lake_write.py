"""The lake's write side on its own: a load's commit carries its record and is found again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from minyun.core import lake_write
from minyun.core.errors import Invalid
from minyun.core.lake import REJECTS_SCHEMA, Lake, LoadRecord, load_folder
from minyun.core.lake_write import app_id, merge_condition, stat_value

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])


def rows(ids: range, name: str = "a") -> pa.RecordBatchReader:
    table = pa.table({"id": list(ids), "name": [f"{name}{i}" for i in ids]}, schema=SCHEMA)
    return pa.RecordBatchReader.from_batches(SCHEMA, table.to_batches())


def table(lake: Lake, code: str) -> dict[int, str]:
    found = DeltaTable(lake.table_uri(code)).to_pyarrow_table().to_pylist()
    return {r["id"]: r["name"] for r in found}


@dataclass(frozen=True)
class File:
    path: Path
    rows: int
    stats: dict[str, dict[str, str]]


def test_each_mode_is_one_commit_that_names_its_load(tmp_path: Path) -> None:
    lake, code = Lake(str(tmp_path / "lake")), "people"
    assert lake.find_commits(code, [1]) == {}
    assert (
        lake.commit_rows(code, LoadRecord(1, 3, 3, 0, "abc"), mode="full", data=rows(range(3))) == 0
    )
    assert lake.commit_rows(code, LoadRecord(2), mode="append", data=rows(range(3, 5))) == 1
    upsert = LoadRecord(3, 2, 2, 0, "def", "2024-01-01")
    changed = rows(range(4, 6), "b")
    bounds = {"id": (4, 5)}
    version = lake.commit_rows(
        code, upsert, mode="upsert", data=changed, primary_key=["id"], bounds=bounds
    )
    assert version == 2
    keys = pa.schema([SCHEMA.field("id")])
    gone = pa.RecordBatchReader.from_batches(keys, [pa.record_batch([pa.array([0])], schema=keys)])
    assert lake.commit_rows(code, LoadRecord(4), mode="delete", data=gone, primary_key=["id"]) == 3
    assert table(lake, code) == {1: "a1", 2: "a2", 3: "a3", 4: "b4", 5: "b5"}
    assert lake.row_count(code, 3) == 5 and lake.row_count(code, 0) == 3

    found = lake.find_commits(code, [1, 3, 99])
    assert set(found) == {1, 3}
    assert found[3].version == 2 and found[3].record == upsert
    assert found[1].record == LoadRecord(1, 3, 3, 0, "abc", None)
    assert DeltaTable(lake.table_uri(code)).transaction_version(app_id(3)) == 1
    assert lake.has_commit(code, 4) and not lake.has_commit(code, 5)
    props = DeltaTable(lake.table_uri(code)).metadata().configuration
    assert props["delta.enableChangeDataFeed"] == "true"


def test_a_delete_into_no_table_and_an_unknown_mode_are_refused(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(Invalid, match="no data to delete"):
        lake.commit_rows("x", LoadRecord(1), mode="delete", data=rows(range(1)), primary_key=["id"])
    with pytest.raises(ValueError, match="unknown load mode"):
        lake.commit_rows("x", LoadRecord(1), mode="replace", data=rows(range(1)))
    assert not DeltaTable.is_deltatable(lake.table_uri("x"))


def test_files_written_into_the_table_folder_are_committed_with_their_stats(
    tmp_path: Path,
) -> None:
    lake, code = Lake(str(tmp_path / "lake")), "people"
    folder = lake.direct_folder(code, "full", SCHEMA)
    assert folder == Path(lake.table_uri(code))
    assert lake.direct_folder(code, "upsert", SCHEMA) is None

    def write(name: str, ids: range) -> File:
        path = folder / "load-1" / name
        path.parent.mkdir(exist_ok=True)
        pq.write_table(rows(ids).read_all(), path)
        exact = {"min_is_exact": "true", "max_is_exact": "true", "null_count": "0"}
        stats = {"id": {"min": str(ids[0]), "max": str(ids[-1]), **exact}}
        return File(path, len(ids), stats)

    files = [write("a.parquet", range(0, 10)), write("b.parquet", range(10, 15))]
    version = lake.commit_files(
        code, LoadRecord(1, 15, 15), mode="full", schema=SCHEMA, folder=folder, files=files
    )
    assert version == 0 and lake.row_count(code, 0) == 15
    adds = pa.table(DeltaTable(lake.table_uri(code)).get_add_actions(flatten=True))
    assert sorted(adds.column("min.id").to_pylist()) == [0, 10]
    assert sorted(adds.column("num_records").to_pylist()) == [5, 10]
    # A full load into the existing table replaces every earlier file in its commit.
    again = [write("c.parquet", range(100, 102))]
    lake.commit_files(code, LoadRecord(2), mode="full", schema=SCHEMA, folder=folder, files=again)
    assert table(lake, code) == {100: "a100", 101: "a101"}
    # A table of another schema is written through delta-rs instead.
    assert lake.direct_folder(code, "append", pa.schema([pa.field("id", pa.int32())])) is None


def test_rejects_of_a_retried_load_replace_its_own(tmp_path: Path) -> None:
    lake, code = Lake(str(tmp_path / "lake")), "people"

    def rejects(load_id: int, n: int) -> pa.RecordBatchReader:
        batch = pa.record_batch(
            [[load_id] * n, list(range(n)), ["id"] * n, ["bad"] * n, ["{}"] * n],
            schema=REJECTS_SCHEMA,
        )
        return pa.RecordBatchReader.from_batches(REJECTS_SCHEMA, [batch])

    lake.write_rejects(code, 1, None)
    assert not DeltaTable.is_deltatable(lake.rejects_uri(code))
    lake.write_rejects(code, 1, rejects(1, 3))
    lake.write_rejects(code, 2, rejects(2, 2))
    assert lake.reject_counts(code, 1) == {"id": 3}
    lake.write_rejects(code, 1, rejects(1, 1))
    assert lake.reject_counts(code, 1) == {"id": 1} and lake.reject_counts(code, 2) == {"id": 2}
    lake.write_rejects(code, 2, None)
    assert lake.reject_counts(code, 2) == {}


def test_aggregate_reads_one_table_version(tmp_path: Path) -> None:
    lake, code = Lake(str(tmp_path / "lake")), "people"
    lake.commit_rows(code, LoadRecord(1), mode="full", data=rows(range(3)))
    lake.commit_rows(code, LoadRecord(2), mode="append", data=rows(range(3, 10)))
    query = "SELECT count(*) AS n, max(id) AS top FROM {}".format
    assert lake.aggregate(code, 0, query) == {"n": 3, "top": 2}
    assert lake.aggregate(code, 1, query) == {"n": 10, "top": 9}


def test_merge_condition_and_timestamp_bounds() -> None:
    assert merge_condition(["a", "b"], {"a": (1, 9)}) == (
        't."a" = s."a" AND t."b" = s."b" AND t."a" >= 1 AND t."a" <= 9'
    )
    ts = pa.timestamp("us", tz="UTC")
    assert stat_value(ts, "2024-05-01 10:00:00.123456+00", up=False) == "2024-05-01T10:00:00.123Z"
    assert stat_value(ts, "2024-05-01 10:00:00.123456+00", up=True) == "2024-05-01T10:00:00.124Z"
    assert stat_value(pa.bool_(), "true", up=True) is None
    assert stat_value(pa.float64(), "inf", up=True) is None


def test_a_loads_commit_is_found_however_deep_in_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows of two commits, then the whole log: load 1 is five commits deep.
    monkeypatch.setattr(lake_write, "HISTORY_WINDOWS", (2, None))
    lake, code = Lake(str(tmp_path / "lake")), "people"
    for load_id in range(1, 7):
        mode = "full" if load_id == 1 else "append"
        lake.commit_rows(
            code, LoadRecord(load_id, 1, 1), mode=mode, data=rows(range(load_id, load_id + 1))
        )
    found = lake.find_commits(code, [1, 3, 6, 7])
    assert {k: v.version for k, v in found.items()} == {1: 0, 3: 2, 6: 5}
    assert found[1].record == LoadRecord(1, 1, 1)
    # The first window alone would not have reached it.
    monkeypatch.setattr(lake_write, "HISTORY_WINDOWS", (2,))
    assert set(lake.find_commits(code, [1, 6])) == {6}


def test_files_of_a_load_that_never_committed_are_discarded(tmp_path: Path) -> None:
    lake, code = Lake(str(tmp_path / "lake")), "people"
    folder = lake.direct_folder(code, "full", SCHEMA)
    assert folder is not None
    committed = load_folder(folder, 1, "a")
    committed.mkdir()
    pq.write_table(pa.table({"id": [1], "name": ["x"]}, schema=SCHEMA), committed / "p.parquet")
    file = File(committed / "p.parquet", 1, {})
    lake.commit_files(
        code, LoadRecord(1, 1, 1), mode="full", schema=SCHEMA, folder=folder, files=[file]
    )
    for run in ("b", "c"):
        left = load_folder(folder, 2, run)
        left.mkdir()
        (left / "part-0.parquet").write_bytes(b"PAR1")
    other = load_folder(folder, 21, "d")
    other.mkdir()
    assert lake.discard_uncommitted(code, 1) == []  # committed: its files are the table's
    assert lake.discard_uncommitted(code, 2) == [
        load_folder(folder, 2, "b"),
        load_folder(folder, 2, "c"),
    ]
    assert committed.is_dir() and other.is_dir()
    assert not load_folder(folder, 2, "b").exists()
    assert table(lake, code) == {1: "x"}
