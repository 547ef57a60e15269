"""The data plane: one Delta Lake table per resource under the lake URI, read with DuckDB.

Resource rows leave the lake only through `Lake.read_rows` / `read_table` / `read_rejects`,
which take the `AccessPlan` that `core.security.authorize` returned and apply its
projection, masks and row filter inside the query (`core.reading`). The write side (a
load's Delta commit, its rejects) is `core.lake_write.LakeWriter`, whose methods every
`Lake` has. No module outside `core` opens a `DeltaTable` or writes Delta.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from minyun.core.errors import NotFound
from minyun.core.lake_write import (
    CDF,
    REJECTS_SCHEMA,
    DataFile,
    LakeWriter,
    LoadCommit,
    LoadRecord,
    load_folder,
)

__all__ = ["CDF", "REJECTS_SCHEMA", "DataFile", "Lake", "LoadCommit", "LoadRecord", "load_folder"]

if TYPE_CHECKING:
    from minyun.core.changes import Changes
    from minyun.core.policies import AccessPlan
    from minyun.core.reading import RowsPage


class Lake(LakeWriter):
    """The lake of one node: `<uri>/resources/<code>/` is the Delta table of a resource."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        if "://" not in self.uri:
            Path(self.uri).mkdir(parents=True, exist_ok=True)

    def table_uri(self, code: str) -> str:
        """Where the resource's Delta table lives."""
        return f"{self.uri}/resources/{code}"

    def rejects_uri(self, code: str) -> str:
        """Where the rows refused by the resource's loads are kept."""
        return f"{self.uri}/rejects/{code}"

    def table(
        self, code: str, *, version: int | None = None, as_of: datetime | None = None
    ) -> DeltaTable:
        """The resource's Delta table, at a version or a timestamp if given (time travel)."""
        try:
            table = DeltaTable(self.table_uri(code), version=version)
        except TableNotFoundError as exc:
            raise NotFound(f"resource {code} has no data in the lake yet") from exc
        if as_of is not None:
            table.load_as_version(as_of)
        return table

    def exists(self, code: str) -> bool:
        """Whether the resource has a committed Delta table."""
        return DeltaTable.is_deltatable(self.table_uri(code))

    def version(self, code: str) -> int | None:
        """The newest committed version, or None before the first load."""
        return self.table(code).version() if self.exists(code) else None

    def dataset(
        self, code: str, *, version: int | None = None, as_of: datetime | None = None
    ) -> ds.Dataset:
        """The resource's rows as a lazily read Arrow dataset."""
        return self.table(code, version=version, as_of=as_of).to_pyarrow_dataset()

    def is_table(self, uri: str) -> bool:
        """Whether a committed Delta table is at `uri` (a resource's or its rejects')."""
        return DeltaTable.is_deltatable(uri)

    def dataset_at(self, uri: str) -> ds.Dataset:
        """The newest version of the Delta table at `uri` as an Arrow dataset."""
        return DeltaTable(uri).to_pyarrow_dataset()

    def read_table(
        self,
        plan: AccessPlan,
        *,
        secret: bytes,
        version: int | None = None,
        as_of: datetime | None = None,
        limit: int | None = None,
        ordered: bool = False,
    ) -> pa.Table:
        """Every row `plan` opens at a version or a time, projected and masked (in
        primary-key order if `ordered`)."""
        from minyun.core import reading

        return reading.read_table(
            self, plan, secret=secret, version=version, as_of=as_of, limit=limit, ordered=ordered
        )

    def read_rejects(
        self,
        plan: AccessPlan,
        *,
        secret: bytes,
        load_id: int,
        limit: int,
        reason: str | None = None,
    ) -> pa.Table:
        """The records load `load_id` refused (for `reason` only, if given), masked as `plan`
        says."""
        from minyun.core import reading

        return reading.read_rejects(
            self, plan, secret=secret, load_id=load_id, limit=limit, reason=reason
        )

    def reject_reasons(self, plan: AccessPlan, *, load_id: int) -> list[tuple[str, int]]:
        """The reasons load `load_id` refused rows for, with their counts, most first."""
        from minyun.core import reading

        return reading.reject_reasons(self, plan, load_id=load_id)

    def change_feed(self, code: str, since: int, until: int) -> pa.Table | None:
        """The Change Data Feed of versions since+1..until (every column, `_change_type`,
        `_commit_version`), or None when it does not cover them: a version in the range
        replaced the table (a full load, a schema change) or the feed is gone (vacuumed)."""
        try:
            head = DeltaTable(self.table_uri(code))
            if head.metadata().configuration.get("delta.enableChangeDataFeed") != "true":
                return None
            for entry in head.history(head.version() - since):
                version = int(entry.get("version", -1))
                if not since < version <= until:
                    continue
                operation = str(entry.get("operation", ""))
                mode = str((entry.get("operationParameters") or {}).get("mode", ""))
                if operation.startswith(("CREATE", "REPLACE")) or mode.lower() == "overwrite":
                    return None
            schema = self.dataset(code, version=until).schema
            if self.dataset(code, version=since).schema != schema:
                return None
            reader = head.load_cdf(starting_version=since + 1, ending_version=until)
            changes = pa.table(pa.RecordBatchReader.from_stream(reader))
        except NotFound:
            raise
        except Exception:  # no feed for these versions: the caller reads the whole version
            return None
        if any(n not in changes.column_names for n in (*schema.names, "_change_type")):
            return None
        data = changes.select(schema.names).cast(schema)  # the feed comes with view types
        return data.append_column(
            "_change_type", changes.column("_change_type").cast(pa.string())
        ).append_column("_commit_version", changes.column("_commit_version").cast(pa.int64()))

    def read_changes(
        self, plan: AccessPlan, *, secret: bytes, since: int, until: int
    ) -> pa.Table | None:
        """The net change of every row `plan` opens between two versions, projected and
        masked, with `_change` ('upsert' or 'delete'); None when the feed does not cover them."""
        from minyun.core import reading

        return reading.read_changes(self, plan, secret=secret, since=since, until=until)

    def read_rows(self, plan: AccessPlan, *, secret: bytes, **query: Any) -> RowsPage:
        """One page of the rows `plan` opens (fields, filter, sort, limit, cursor, version)."""
        from minyun.core import reading

        return reading.read_rows(self, plan, secret=secret, **query)

    def follow_changes(
        self, plan: AccessPlan, *, secret: bytes, since: int | None, until: int | None = None
    ) -> Changes:
        """The newest image of each key `plan` opens that changed after version `since`
        (the Change Data Feed, or the whole table when it does not cover them)."""
        from minyun.core import changes

        return changes.read_changes(self, plan, secret=secret, since=since, until=until)
