"""The serving index: a resource's rows by primary key in the control-plane database.

Online key lookups (`filter=pk = v`) are answered from here instead of scanning the lake,
like a feature store's online store. `serving_rows` holds one JSON row per primary key of
a resource; `serving_state` says which lake version it reflects. A lookup is served only
when that version is the resource's current `lake_version`: a stale index never serves,
the lake does.

`refresh` brings the index of one resource to its `lake_version` in one transaction:
from the Delta Change Data Feed when the gap since the indexed version is covered by it
(appends, MERGE upserts and deletes), otherwise by rebuilding (overwrites, schema changes,
a first refresh, a feed that is not there or was vacuumed).

Rows are stored in the JSON form of the query API (`json_value`: ISO dates and times,
decimals as text, binary as base64) and turned back into the lake's Arrow types by
`decode` when served, so the response is made by the same code as a lake read.

Rows leave the index only through `read_key`, which takes the reader's `AccessPlan` and
applies its projection and masks (vectorised Arrow, `core.masks`) before anything is
returned. A plan with a row filter is not served from here: the lake reader applies it.

This module knows nothing of the catalog: its callers (the query service) give it the
resource (`id`, `code`, `lake_version`) and its primary key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable
from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime
from minyun.core.lake import Lake
from minyun.core.masks import parse_mask, pseudonym_key
from minyun.core.policies import AccessPlan

BATCH_ROWS = 10_000
DELETE_CHUNK = 500
# Primary-key types whose text form is canonical (one text per value, the same from a
# lake row and from a filter literal). Resources keyed otherwise are not indexed.
KEY_KINDS = ("string", "integer", "date")
_CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")


class ServingRow(Base):
    """One row of a resource, by the canonical text of its primary-key values."""

    __tablename__ = "serving_rows"

    resource_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    row: Mapped[dict[str, Any]] = mapped_column(JSON)


_ROWS: Table = ServingRow.__table__  # type: ignore[assignment]  # Core insert: no ORM bookkeeping


class ServingState(Base):
    """Which lake version the index of a resource reflects, and how many rows it holds."""

    __tablename__ = "serving_state"

    resource_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    lake_version: Mapped[int | None] = mapped_column(Integer, default=None)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class Indexed(Protocol):
    """What the index needs of a resource (the catalog's `Resource` has it)."""

    @property
    def id(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def lake_version(self) -> int | None: ...


# --- values ------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A value JSON cannot hold, written as the query API writes it (its `default=`)."""
    # Decimals as text keep their precision; binary as base64.
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _plain(type_: pa.DataType) -> bool:
    """Whether values of the type are JSON as they come out of `to_pylist`."""
    return bool(
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
        or pa.types.is_null(type_)
    )


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return json_value(value)


def decode(value: Any, type_: pa.DataType) -> Any:
    """The Python value of `type_` that `json_value` wrote as `value` (its exact inverse)."""
    if value is None:
        return None
    if pa.types.is_date(type_):
        return date.fromisoformat(value)
    if pa.types.is_timestamp(type_):
        return datetime.fromisoformat(value)
    if pa.types.is_time(type_):
        return time.fromisoformat(value)
    if pa.types.is_decimal(type_):
        return Decimal(value)
    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
        return base64.b64decode(value)
    if pa.types.is_fixed_size_binary(type_) or pa.types.is_binary_view(type_):
        return base64.b64decode(value)
    if pa.types.is_map(type_):
        return [(decode(k, type_.key_type), decode(v, type_.item_type)) for k, v in value]
    if (
        pa.types.is_list(type_)
        or pa.types.is_large_list(type_)
        or pa.types.is_fixed_size_list(type_)
    ):
        return [decode(v, type_.value_type) for v in value]
    if pa.types.is_struct(type_):
        return {f.name: decode(value.get(f.name), f.type) for f in type_}
    return value


def rows_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Stored rows as an Arrow table of `schema` (the lake's types)."""
    columns = {
        f.name: pa.array([decode(r.get(f.name), f.type) for r in rows], f.type) for f in schema
    }
    return pa.table(columns, schema=schema)


def key_kind(type_: pa.DataType) -> str | None:
    """`string`, `integer` or `date` for a type a primary key may be indexed by, else None."""
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "string"
    if pa.types.is_string_view(type_):
        return "string"
    if pa.types.is_integer(type_):
        return "integer"
    if pa.types.is_date32(type_):
        return "date"
    return None


def key_part(value: Any) -> str:
    """The canonical text of one primary-key value (a str, int or date)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not an indexed key")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} is not an indexed key")


def encode_key(values: Sequence[Any]) -> str:
    """The index key of a row: its primary-key values as text, as a JSON array."""
    return json.dumps([key_part(v) for v in values], ensure_ascii=False, separators=(",", ":"))


# --- lookups -----------------------------------------------------------------------------


def lookup(
    session: Session, resource_id: int, key: str, lake_version: int
) -> tuple[bool, dict[str, Any] | None]:
    """(fresh, row): whether the index is at `lake_version`, and the row of `key` if any.

    One statement reads both, so the row is of the version the state names.
    """
    found = session.execute(
        select(ServingState.lake_version, ServingRow.row)
        .select_from(ServingState)
        .outerjoin(
            ServingRow,
            and_(ServingRow.resource_id == ServingState.resource_id, ServingRow.key == key),
        )
        .where(ServingState.resource_id == resource_id)
    ).first()
    if found is None or found[0] != lake_version:
        return False, None
    return True, found[1]


def read_key(
    session: Session,
    plan: AccessPlan,
    values: Sequence[Any],
    *,
    schema: pa.Schema,
    fields: Sequence[str],
    secret: bytes,
) -> pa.Table | None:
    """The row of primary key `values` as `plan` shows it (no row: an empty table).

    None when the index cannot answer for the plan: not at the resource's current version,
    or the plan filters rows (the lake reader applies row filters).
    """
    version = plan.resource.lake_version
    if version is None or plan.row_filter is not None:
        return None
    fresh, row = lookup(session, plan.resource.id, encode_key(values), version)
    if not fresh:
        return None
    return shown(plan, [row] if row is not None else [], schema, fields, secret=secret)


def shown(
    plan: AccessPlan,
    rows: Sequence[dict[str, Any]],
    schema: pa.Schema,
    fields: Sequence[str],
    *,
    secret: bytes,
) -> pa.Table:
    """Stored rows projected to `fields` and masked as `plan` says (fields must be visible)."""
    visible = set(plan.visible)
    if any(name not in visible for name in fields):
        raise ValueError("a field outside the plan was asked of the serving index")
    table = rows_table(rows, pa.schema([schema.field(name) for name in fields]))
    masked = plan.masked
    if not masked.keys() & set(fields):
        return table
    key = pseudonym_key(secret, plan.consumer)
    columns = [
        parse_mask(masked[name]).arrow(table.column(name).combine_chunks(), key=key)
        if name in masked
        else table.column(name)
        for name in fields
    ]
    return pa.table(columns, names=list(fields))


# --- the hot path's facts --------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFacts:
    """Everything one governed key lookup needs from the control plane, read in one statement."""

    client_active: bool
    client_org: int | None
    client_scopes: frozenset[str]
    resource_id: int | None
    status: str | None
    schema_version: str | None
    lake_version: int | None
    served_version: int | None
    row: dict[str, Any] | None
    epoch: int


_FACTS = """
SELECT c.active, c.organization_id, c.scopes, r.id, r.status, r.current_schema_version,
       r.lake_version, s.lake_version, sr.row, e.value
FROM plan_epoch e
LEFT JOIN api_clients c ON c.client_id = {client}
LEFT JOIN resources r ON r.code = {code}
LEFT JOIN serving_state s ON s.resource_id = r.id
LEFT JOIN serving_rows sr ON sr.resource_id = r.id AND sr.key = {key}
WHERE e.id = 1
"""


def _facts(found: Sequence[Any] | None) -> KeyFacts:
    if found is None:
        raise RuntimeError("the plan epoch row is missing: run `minyun init`")
    active, org, scopes, rid, status, schema_version, version, served, row, epoch = found
    if isinstance(scopes, str):
        scopes = json.loads(scopes)
    if isinstance(row, str):
        row = json.loads(row)
    return KeyFacts(
        client_active=bool(active),
        client_org=org,
        client_scopes=frozenset(scopes or ()),
        resource_id=rid,
        status=status,
        schema_version=schema_version,
        lake_version=version,
        served_version=served,
        row=row,
        epoch=int(epoch),
    )


class FactStore(Protocol):
    async def facts(self, client_id: str, code: str, key: str) -> KeyFacts: ...


class PostgresFacts:
    """The facts on asyncpg, on the event loop (a pool per process, made on first use)."""

    def __init__(self, dsn: str, *, max_size: int = 10) -> None:
        self.dsn = dsn
        self.max_size = max_size
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sql = _FACTS.format(client="$1", code="$2", key="$3")

    async def facts(self, client_id: str, code: str, key: str) -> KeyFacts:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._loop is not loop:
            import asyncpg

            if self._pool is not None:  # a pool serves the loop that made it only
                with contextlib.suppress(RuntimeError):  # that loop may be closed already
                    self._pool.terminate()
            self._loop = loop
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.max_size, statement_cache_size=64
            )
        async with self._pool.acquire() as connection:
            found = await connection.fetchrow(self._sql, client_id, code, key)
        return _facts(tuple(found) if found is not None else None)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class SessionFacts:
    """The facts through SQLAlchemy on a worker thread (the embedded SQLite node)."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self._sql = text(_FACTS.format(client=":client", code=":code", key=":key"))

    async def facts(self, client_id: str, code: str, key: str) -> KeyFacts:
        import anyio

        return await anyio.to_thread.run_sync(self._read, client_id, code, key)

    def _read(self, client_id: str, code: str, key: str) -> KeyFacts:
        with self.factory() as session:
            found = session.execute(
                self._sql, {"client": client_id, "code": code, "key": key}
            ).first()
        return _facts(tuple(found) if found is not None else None)

    async def close(self) -> None:
        return None


def fact_store(database_url: str, factory: Any) -> FactStore:
    """asyncpg for a PostgreSQL control plane, else SQLAlchemy on a worker thread."""
    if database_url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        dsn = "postgresql://" + database_url.split("://", 1)[1]
        return PostgresFacts(dsn)
    return SessionFacts(factory)


def state(session: Session, resource_id: int) -> ServingState | None:
    """Where the index of a resource stands, if it has one."""
    return session.get(ServingState, resource_id)


# --- refresh -----------------------------------------------------------------------------


def refresh(
    session: Session,
    lake: Lake,
    resource: Indexed,
    primary_key: Sequence[str],
    *,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Bring the index of `resource` to its `lake_version`; the rows written or deleted.

    Runs in the caller's transaction and holds the resource's state row locked (PostgreSQL;
    SQLite transactions are serialised anyway), so two refreshes never interleave. Readers
    keep the index as it was until the transaction commits, and it does not serve them
    meanwhile because its version is behind the resource's.
    """
    target = resource.lake_version
    current = _lock_state(session, resource.id)
    if target is None or not primary_key or not lake.exists(resource.code):
        return _drop(session, resource.id, current)
    dataset = lake.dataset(resource.code, version=target)
    schema = dataset.schema
    if any(c not in schema.names or key_kind(schema.field(c).type) is None for c in primary_key):
        return _drop(session, resource.id, current)
    if current.lake_version == target:
        return 0
    written: int | None = None
    if current.lake_version is not None and current.lake_version < target:
        written = _apply_changes(
            session, lake, resource, primary_key, current.lake_version, target, schema, batch_rows
        )
    if written is None:
        written = _rebuild(session, resource.id, dataset, primary_key, batch_rows)
        current.rows = written
    else:
        current.rows = (
            session.scalar(
                select(func.count())
                .select_from(ServingRow)
                .where(ServingRow.resource_id == resource.id)
            )
            or 0
        )
    current.lake_version = target
    current.refreshed_at = clock.now()
    session.flush()
    return written


def _lock_state(session: Session, resource_id: int) -> ServingState:
    dialect = session.get_bind().dialect.name
    values = {
        "resource_id": resource_id,
        "lake_version": None,
        "rows": 0,
        "refreshed_at": clock.now(),
    }
    if dialect == "postgresql":
        session.execute(postgresql.insert(ServingState).values(**values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(ServingState).values(**values).on_conflict_do_nothing())
    elif session.get(ServingState, resource_id) is None:
        session.add(ServingState(**values))
        session.flush()
    found = session.scalars(
        select(ServingState)
        .where(ServingState.resource_id == resource_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return found


def _drop(session: Session, resource_id: int, current: ServingState) -> int:
    """The resource is not indexed (no data, no primary key, or one we cannot key by)."""
    removed = _delete_all(session, resource_id)
    session.delete(current)
    session.flush()
    return removed


def _delete_all(session: Session, resource_id: int) -> int:
    result = session.execute(delete(ServingRow).where(ServingRow.resource_id == resource_id))
    return int(getattr(result, "rowcount", 0) or 0)


def _rebuild(
    session: Session,
    resource_id: int,
    dataset: ds.Dataset,
    primary_key: Sequence[str],
    batch_rows: int,
) -> int:
    _delete_all(session, resource_id)
    written = 0
    for batch in dataset.to_batches(batch_size=batch_rows):
        written += _insert(session, resource_id, pa.Table.from_batches([batch]), primary_key)
    return written


def _records(table: pa.Table, primary_key: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, JSON-safe row) of every row, converted a column at a time."""
    names = table.column_names
    columns: list[list[Any]] = []
    for name in names:
        column = table.column(name)
        values = column.to_pylist()
        if not _plain(column.type):
            values = [_encode(v) for v in values]
        columns.append(values)
    yield from zip(
        _keys(table, primary_key),
        (dict(zip(names, v, strict=True)) for v in zip(*columns, strict=True)),
        strict=True,
    )


def _keys(table: pa.Table, primary_key: Sequence[str]) -> list[str]:
    """`encode_key` of every row; integers and dates as Arrow text (no escaping needed)."""
    if len(primary_key) == 1 and key_kind(table.column(primary_key[0]).type) in ("integer", "date"):
        texts = table.column(primary_key[0]).cast(pa.string()).to_pylist()
        return [f'["{t}"]' for t in texts]
    pk_columns = [table.column(c).to_pylist() for c in primary_key]
    return [encode_key(values) for values in zip(*pk_columns, strict=True)]


def _insert(session: Session, resource_id: int, table: pa.Table, primary_key: Sequence[str]) -> int:
    if table.num_rows == 0:
        return 0
    rows = [
        {"resource_id": resource_id, "key": k, "row": r} for k, r in _records(table, primary_key)
    ]
    session.execute(insert(_ROWS), rows)
    return len(rows)


def _apply_changes(
    session: Session,
    lake: Lake,
    resource: Indexed,
    primary_key: Sequence[str],
    since: int,
    target: int,
    schema: pa.Schema,
    batch_rows: int,
) -> int | None:
    """Apply the Change Data Feed of versions since+1..target; None when it cannot."""
    changes = _changes(lake, resource.code, since, target, schema)
    if changes is None:
        return None
    # The last change of each key wins; within one commit a row written beats a row removed.
    con = duckdb.connect(":memory:")
    try:
        con.register(
            "c",
            changes.select([*primary_key, "_change_type", "_commit_version"]).append_column(
                "__i", pa.array(range(changes.num_rows), pa.int64())
            ),
        )
        keys = ", ".join('"' + c.replace('"', '""') + '"' for c in primary_key)
        picked = con.sql(
            f"""SELECT __i, _change_type = 'delete' AS gone FROM c
                WHERE _change_type <> 'update_preimage'
                QUALIFY row_number() OVER (
                    PARTITION BY {keys}
                    ORDER BY _commit_version DESC, (_change_type = 'delete') ASC
                ) = 1"""
        ).to_arrow_table()
    finally:
        con.close()
    latest = changes.select(schema.names).take(picked.column("__i"))
    gone = picked.column("gone").to_pylist()
    # Every changed key goes; the rows that live on come back.
    pk_columns = [latest.column(c).to_pylist() for c in primary_key]
    keys_changed = [encode_key(v) for v in zip(*pk_columns, strict=True)]
    for start in range(0, len(keys_changed), DELETE_CHUNK):
        chunk = keys_changed[start : start + DELETE_CHUNK]
        session.execute(
            delete(ServingRow).where(
                ServingRow.resource_id == resource.id, ServingRow.key.in_(chunk)
            )
        )
    kept = latest.filter(pa.array([not g for g in gone], pa.bool_()))
    written = 0
    for batch in kept.to_batches(max_chunksize=batch_rows):
        written += _insert(
            session, resource.id, pa.Table.from_batches([batch], kept.schema), primary_key
        )
    return written + int(sum(bool(g) for g in gone))


def _changes(lake: Lake, code: str, since: int, target: int, schema: pa.Schema) -> pa.Table | None:
    """The table's changes after `since` up to `target`, or None if the feed does not cover them."""
    try:
        head = DeltaTable(lake.table_uri(code))
        if head.metadata().configuration.get("delta.enableChangeDataFeed") != "true":
            return None
        for entry in head.history(head.version() - since):
            version = int(entry.get("version", -1))
            if not since < version <= target:
                continue
            operation = str(entry.get("operation", ""))
            mode = str((entry.get("operationParameters") or {}).get("mode", ""))
            if operation.startswith(("CREATE", "REPLACE")) or mode.lower() == "overwrite":
                return None  # everything changed: rebuilding is cheaper
        if lake.dataset(code, version=since).schema != schema:
            return None  # a schema change: the older rows would lack columns
        reader = head.load_cdf(starting_version=since + 1, ending_version=target)
        changes = pa.table(pa.RecordBatchReader.from_stream(reader))
    except Exception:  # no feed for these versions (vacuumed, never enabled): rebuild
        return None
    if any(n not in changes.column_names for n in (*schema.names, *_CDF_COLUMNS)):
        return None
    # The feed comes with view types (string_view); the index keeps the table's own.
    data = changes.select(schema.names).cast(schema)
    change_type = changes.column("_change_type").cast(pa.string())
    return data.append_column("_change_type", change_type).append_column(
        "_commit_version", changes.column("_commit_version").cast(pa.int64())
    )
