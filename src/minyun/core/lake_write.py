"""Writing the lake: the Delta commit protocol of a load (decision 0003).

`Lake` (in `core.lake`) gets these methods from `LakeWriter`; nothing outside `core` opens
a `DeltaTable` or writes Delta. A load is one Delta commit that carries the load's id twice:
in its commit metadata (`minyun.load_id`, with the row counts, checksum and watermark,
`LoadRecord`) and as an idempotent app transaction `minyun-load-<id>`. The control plane
(the catalog's resource pointer, the load's `Version`) is committed after it by the caller;
a run killed between the two finds its Delta commit again with `find_commits`.

Two ways in:

- `commit_files`: Parquet files already written into the table folder (`direct_folder`)
  are added as they are, with per-file statistics taken from DuckDB's own (full and append
  loads into a local table that is new or has exactly the load's schema);
- `commit_rows`: an Arrow stream written by delta-rs (`write_deltalake`, or `merge` on the
  primary key for upsert and delete), for everything else.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from minyun.core.errors import Invalid

#: Every table a load creates keeps a change data feed (the serving index reads it).
CDF = {"delta.enableChangeDataFeed": "true"}
#: One row per broken rule of a refused row: the load, the row, the field, why, the raw record.
REJECTS_SCHEMA = pa.schema(
    [
        pa.field("load_id", pa.int64()),
        pa.field("row_number", pa.int64()),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("record", pa.string()),
    ]
)
MODES = ("full", "append", "upsert", "delete")
#: How many of a table's newest commits are read at a time when a load's commit is looked
#: for: most are among the newest; the last window (None) is the whole history.
HISTORY_WINDOWS: tuple[int | None, ...] = (100, 2_000, None)


class DataFile(Protocol):
    """A Parquet file written for a load, with DuckDB's statistics of each column."""

    @property
    def path(self) -> Path: ...

    @property
    def rows(self) -> int: ...

    @property
    def stats(self) -> Mapping[str, Mapping[str, str]]: ...


@dataclass(frozen=True)
class LoadRecord:
    """What a load's Delta commit says about it, in its commit metadata."""

    load_id: int
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    source_sha256: str | None = None
    watermark: str | None = None

    def metadata(self) -> dict[str, str]:
        """The commit's custom metadata (`minyun.*` keys, all text)."""
        return {
            "minyun.load_id": str(self.load_id),
            "minyun.rows_read": str(self.rows_read),
            "minyun.rows_accepted": str(self.rows_accepted),
            "minyun.rows_rejected": str(self.rows_rejected),
            "minyun.source_sha256": self.source_sha256 or "",
            "minyun.watermark": self.watermark or "",
        }

    @classmethod
    def from_metadata(cls, entry: Mapping[str, Any]) -> LoadRecord:
        """The record from a history entry (missing counts are 0, empty texts None)."""
        return cls(
            load_id=int(entry["minyun.load_id"]),
            rows_read=int(entry.get("minyun.rows_read", 0)),
            rows_accepted=int(entry.get("minyun.rows_accepted", 0)),
            rows_rejected=int(entry.get("minyun.rows_rejected", 0)),
            source_sha256=entry.get("minyun.source_sha256") or None,
            watermark=entry.get("minyun.watermark") or None,
        )


@dataclass(frozen=True)
class LoadCommit:
    """A load's Delta commit, found in the table's history."""

    version: int
    record: LoadRecord


def app_id(load_id: int) -> str:
    """The idempotent app transaction of a load's commit."""
    return f"minyun-load-{load_id}"


def load_folder(base: Path, load_id: int, run: str) -> Path:
    """The folder of the files one run of a load writes under `base` (the table folder or
    its work folder): `load-<id>-<run>`, so every run's files can be found by the load's id."""
    return base / f"load-{int(load_id)}-{run}"


class LakeWriter:
    """The write side of `core.lake.Lake`: loads' commits, rejects, and the loader's scans."""

    def table_uri(self, code: str) -> str:
        raise NotImplementedError

    def rejects_uri(self, code: str) -> str:
        raise NotImplementedError

    # --- committing ---------------------------------------------------------------------

    def direct_folder(self, code: str, mode: str, schema: pa.Schema) -> Path | None:
        """The table folder, when a load may write its files straight into it.

        That is a full or append load into a local lake whose table is new or has exactly
        the load's schema; anything else (merges, schema changes, object stores) goes
        through `commit_rows`.
        """
        uri = self.table_uri(code)
        if "://" in uri or _mode(mode) not in ("full", "append"):
            return None
        if DeltaTable.is_deltatable(uri):
            current = pa.schema(DeltaTable(uri).schema().to_arrow())
            if not current.equals(schema):
                return None
        folder = Path(uri)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def commit_files(
        self,
        code: str,
        load: LoadRecord,
        *,
        mode: str,
        schema: pa.Schema,
        folder: Path,
        files: Sequence[DataFile],
    ) -> int:
        """Commit Parquet files already written under `folder` (the table folder); the version.

        A new table is created with them (change data feed on); a full load replaces every
        earlier file in the same commit (overwrite), an append adds them. Each file carries
        its Delta `stats` from DuckDB's exact statistics, for data skipping.
        """
        uri = self.table_uri(code)
        adds = [
            AddAction(
                path=f.path.relative_to(folder).as_posix(),
                size=f.path.stat().st_size,
                partition_values={},
                modification_time=int(f.path.stat().st_mtime * 1000),
                data_change=True,
                stats=delta_stats(f, schema),
            )
            for f in files
        ]
        props = _properties(load)
        if not DeltaTable.is_deltatable(uri):
            create_table_with_add_actions(
                uri, DeltaSchema.from_arrow(schema), adds, mode="error", configuration=CDF,
                commit_properties=props,
            )  # fmt: skip
        else:
            actions: list[AddAction | RemoveAction] = list(adds)
            DeltaTable(uri).create_write_transaction(
                actions, mode="overwrite" if _mode(mode) == "full" else "append", schema=schema,
                commit_properties=props,
            )  # fmt: skip
        return _committed(uri, load.load_id)

    def commit_rows(
        self,
        code: str,
        load: LoadRecord,
        *,
        mode: str,
        data: pa.RecordBatchReader,
        primary_key: Sequence[str] = (),
        bounds: Mapping[str, tuple[int, int]] | None = None,
    ) -> int:
        """Write a stream of rows as one Delta commit; the version.

        `full` replaces the table (and its schema), `append` adds (merging the schema),
        `upsert` merges on `primary_key` (matched rows replaced, others inserted), `delete`
        removes the rows whose keys are in the stream. A merge is told the range of each
        integer key column of the load (`bounds`, from the written files' statistics):
        delta-rs then reads only the table's files whose statistics overlap it, instead of
        every file of the table (it streams the rows, so it cannot find that range itself).
        """
        uri = self.table_uri(code)
        props = _properties(load)
        kind = _mode(mode)
        exists = DeltaTable.is_deltatable(uri)
        if kind == "full" or not exists:
            if kind == "delete":
                raise Invalid(f"resource {code} has no data to delete from", field="mode")
            write_deltalake(
                uri, data, mode="overwrite" if exists else "append",
                schema_mode="overwrite" if exists else None, configuration=CDF,
                commit_properties=props,
            )  # fmt: skip
        elif kind == "append":
            write_deltalake(uri, data, mode="append", schema_mode="merge", commit_properties=props)
        else:
            if not primary_key:
                raise Invalid(f"{kind} needs a primary key in the schema of {code}", field="mode")
            merger = DeltaTable(uri).merge(
                data, merge_condition(primary_key, bounds), source_alias="s", target_alias="t",
                commit_properties=props, merge_schema=kind == "upsert",
            )  # fmt: skip
            if kind == "upsert":
                merger.when_matched_update_all().when_not_matched_insert_all().execute()
            else:
                merger.when_matched_delete().execute()
        return _committed(uri, load.load_id)

    def write_rejects(self, code: str, load_id: int, rows: pa.RecordBatchReader | None) -> None:
        """Keep a load's refused rows (`REJECTS_SCHEMA`; None: there are none).

        A retry of the same load replaces its own earlier rejects (an overwrite of the rows
        with its `load_id`); with no rejects and no table yet nothing is written.
        """
        uri = self.rejects_uri(code)
        exists = DeltaTable.is_deltatable(uri)
        if rows is None:
            if not exists:
                return
            rows = pa.RecordBatchReader.from_batches(REJECTS_SCHEMA, [])
        rows = rows.cast(REJECTS_SCHEMA)
        if exists:
            write_deltalake(uri, rows, mode="overwrite", predicate=f"load_id = {int(load_id)}")
        else:
            write_deltalake(uri, rows, mode="append")

    # --- finding a load's commit ----------------------------------------------------------

    def find_commits(self, code: str, load_ids: Iterable[int]) -> dict[int, LoadCommit]:
        """The Delta commits of these loads that exist (by load id), however deep in the log.

        A load committed if its app transaction is in the table's state; its commit (the
        version and its record) is then looked for in the newest commits first, and further
        back only while some is not found.
        """
        wanted = list(load_ids)
        uri = self.table_uri(code)
        if not wanted or not DeltaTable.is_deltatable(uri):
            return {}
        table = DeltaTable(uri)
        committed = [i for i in wanted if table.transaction_version(app_id(i)) is not None]
        entries = _entries_of(table, committed)
        return {
            load_id: LoadCommit(int(entry["version"]), LoadRecord.from_metadata(entry))
            for load_id, entry in entries.items()
        }

    def has_commit(self, code: str, load_id: int) -> bool:
        """Whether load `load_id` committed; True when the log cannot be read (keep its files)."""
        uri = self.table_uri(code)
        try:
            if not DeltaTable.is_deltatable(uri):
                return False
            return DeltaTable(uri).transaction_version(app_id(load_id)) is not None
        except Exception:  # an unreadable log: keep the files, vacuum decides later
            return True

    def discard_uncommitted(self, code: str, load_id: int) -> list[Path]:
        """Delete the files a load wrote into its table folder and never committed; the
        folders deleted (none when it committed, or the lake is not local)."""
        uri = self.table_uri(code)
        if "://" in uri or not Path(uri).is_dir() or self.has_commit(code, load_id):
            return []
        gone = sorted(Path(uri).glob(f"load-{int(load_id)}-*"))
        for folder in gone:
            shutil.rmtree(folder, ignore_errors=True)
        return gone

    # --- the loader's own reads -------------------------------------------------------------

    def row_count(self, code: str, version: int) -> int:
        """The rows of a table version, from the record counts its Delta log keeps per file."""
        table = DeltaTable(self.table_uri(code), version=version)
        counts = pa.table(table.get_add_actions(flatten=True)).column("num_records")
        if counts.null_count == 0:
            return int(pc.sum(counts).as_py() or 0)
        # A file without statistics (not written by minyun): count the rows themselves.
        return int(table.to_pyarrow_dataset().count_rows())

    def aggregate(
        self,
        code: str,
        version: int,
        query: Callable[[str], str],
        *,
        timezone: str | None = None,
    ) -> dict[str, Any]:
        """The one row of an aggregate query over a table version, by column name.

        `query` makes the SQL from the FROM item that reads the version (the quality report);
        `timezone` is the session's, for date-times read from or compared with text (the
        one the loads used). A local table's files are read by DuckDB itself (several times
        faster than through an Arrow dataset, and in less memory).
        """
        table = DeltaTable(self.table_uri(code), version=version)
        files = table.file_uris()
        con = duckdb.connect()
        try:
            con.sql("SET enable_progress_bar = false")
            if timezone is not None:
                con.sql(f"SET TimeZone = {_lit(timezone)}")
            if files and all("://" not in f for f in files):
                source = "read_parquet([" + ", ".join(_lit(f) for f in files) + "])"
            else:
                con.register("v", table.to_pyarrow_dataset())
                source = "v"
            cursor = con.execute(query(source))
            names = [d[0] for d in cursor.description or ()]
            return dict(zip(names, cursor.fetchall()[0], strict=True))
        finally:
            con.close()

    def reject_counts(self, code: str, load_id: int) -> dict[str, int]:
        """Rejected rows per field of one load, from the rejects table."""
        uri = self.rejects_uri(code)
        if not DeltaTable.is_deltatable(uri):
            return {}
        con = duckdb.connect()
        try:
            con.register("r", DeltaTable(uri).to_pyarrow_dataset())
            found = con.execute(
                "SELECT field, count(DISTINCT row_number) FROM r WHERE load_id = ? GROUP BY field",
                [load_id],
            ).fetchall()
        finally:
            con.close()
        return {str(f): int(n) for f, n in found}


# --- helpers ------------------------------------------------------------------------------


def merge_condition(
    primary_key: Sequence[str], bounds: Mapping[str, tuple[int, int]] | None = None
) -> str:
    """The join of a merge on the key (`t` the table, `s` the load), with the load's key range."""
    on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in primary_key)
    for k in primary_key:
        if bounds and k in bounds:
            low, high = bounds[k]
            on += f" AND t.{_q(k)} >= {int(low)} AND t.{_q(k)} <= {int(high)}"
    return on


def delta_stats(part: DataFile, schema: pa.Schema) -> str:
    """The Delta `stats` of a file from DuckDB's own statistics of it (for data skipping)."""
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for field in schema:
        st = part.stats.get(field.name)
        if not st:
            continue
        if st.get("null_count") is not None:
            nulls[field.name] = int(st["null_count"])
        exact = st.get("min_is_exact") == "true" and st.get("max_is_exact") == "true"
        if not exact or st.get("min") is None or st.get("max") is None:
            continue
        low, high = (
            stat_value(field.type, st["min"], up=False),
            stat_value(field.type, st["max"], up=True),
        )
        if low is not None and high is not None:
            lows[field.name], highs[field.name] = low, high
    return json.dumps(
        {"numRecords": part.rows, "minValues": lows, "maxValues": highs, "nullCount": nulls},
        ensure_ascii=False,
    )


def stat_value(kind: pa.DataType, text: str, *, up: bool) -> Any:
    """A statistic as Delta writes it; None where it is safer to give none."""
    if pa.types.is_integer(kind):
        return int(text)
    if pa.types.is_floating(kind):
        value = float(text)
        return value if math.isfinite(value) else None
    if pa.types.is_string(kind) or pa.types.is_date(kind):
        return text
    if pa.types.is_timestamp(kind):
        # Delta keeps milliseconds: round the bounds outwards so they stay bounds.
        moment = datetime.fromisoformat(text)
        micros = moment.microsecond
        millis = micros // 1000 + (1 if up and micros % 1000 else 0)
        stamp = moment.replace(microsecond=0).timestamp() + millis / 1000
        rounded = datetime.fromtimestamp(stamp, tz=UTC)
        return rounded.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rounded.microsecond // 1000:03d}Z"
    return None  # booleans and times: no bounds


def _mode(mode: str) -> str:
    kind = str(mode)
    if kind not in MODES:
        raise ValueError(f"unknown load mode {mode!r}")
    return kind


def _properties(load: LoadRecord) -> CommitProperties:
    return CommitProperties(
        custom_metadata=load.metadata(),
        app_transactions=[Transaction(app_id=app_id(load.load_id), version=1)],
    )


def _entries_of(table: DeltaTable, load_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The history entries of these loads' commits: the newest `HISTORY_WINDOWS[0]` commits
    are read first, then wider windows while some is missing, up to the whole history."""
    wanted = {str(i): i for i in load_ids}
    found: dict[int, dict[str, Any]] = {}
    newest = table.version()
    for window in HISTORY_WINDOWS:
        for entry in table.history(window):
            load_id = wanted.get(str(entry.get("minyun.load_id")))
            if load_id is not None and load_id not in found:
                found[load_id] = entry
        if len(found) == len(wanted) or window is None or window > newest:
            break
    return found


def _committed(uri: str, load_id: int) -> int:
    """The version the load just committed (read back from the log by its id)."""
    table = DeltaTable(uri)
    if table.transaction_version(app_id(load_id)) is None:
        raise RuntimeError(f"the Delta commit of load {load_id} is missing")
    entry = _entries_of(table, [load_id]).get(load_id)
    if entry is None:
        raise RuntimeError(f"the Delta commit of load {load_id} is not in the table's history")
    return int(entry["version"])


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"
