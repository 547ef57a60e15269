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
import functools
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from functools import partial
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    String,
    Text,
    and_,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from minyun.core import clock, jobs
from minyun.core.db import Base, UTCDateTime, libpq_url
from minyun.core.lake import Lake
from minyun.core.masks import Mask, parse_mask, pseudonym_key
from minyun.core.policies import AccessPlan
from minyun.core.security import Principal

log = logging.getLogger(__name__)

BATCH_ROWS = 10_000
# At most this many rows are masked in Python by `shown_rows` (a key lookup's one row).
FEW_ROWS = 8
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


class ServingState(Base):
    """Which lake version the index of a resource reflects, and how many rows it holds."""

    __tablename__ = "serving_state"

    resource_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    lake_version: Mapped[int | None] = mapped_column(Integer, default=None)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    # The refresh building the index now (its token) and the version it builds; while one
    # builds, `lake_version` is NULL and the index serves nothing for the resource.
    building: Mapped[str | None] = mapped_column(String(32), default=None)
    building_version: Mapped[int | None] = mapped_column(Integer, default=None)


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
    _check_visible(plan, fields)
    table = rows_table(rows, pa.schema([schema.field(name) for name in fields]))
    masked = plan.masked
    if not masked.keys() & set(fields):
        return table
    key = pseudonym_key(secret, plan.consumer)
    columns = [
        _mask(masked[name]).arrow(table.column(name).combine_chunks(), key=key)
        if name in masked
        else table.column(name)
        for name in fields
    ]
    return pa.table(columns, names=list(fields))


def shown_rows(
    plan: AccessPlan,
    rows: Sequence[dict[str, Any]],
    schema: pa.Schema,
    fields: Sequence[str],
    *,
    secret: bytes,
) -> list[dict[str, Any]]:
    """`shown(…).to_pylist()`: the rows as `plan` shows them, as Python values.

    A key lookup's one row of plain types (`FEW_ROWS` at most, see `_PYTHON_EXACT`) is
    projected and masked in Python by `Mask.values`, which is tested equal to the Arrow and
    SQL masks; building Arrow arrays for one value per field would cost more than the
    lookup's round trip to the database. Anything else takes the Arrow path.
    """
    if len(rows) > FEW_ROWS or (shape := row_shaper(plan, schema, fields, secret=secret)) is None:
        table: list[dict[str, Any]] = shown(plan, rows, schema, fields, secret=secret).to_pylist()
        return table
    return shape(rows)


RowShaper = Callable[[Sequence[dict[str, Any]]], list[dict[str, Any]]]


def row_shaper(
    plan: AccessPlan, schema: pa.Schema, fields: Sequence[str], *, secret: bytes
) -> RowShaper | None:
    """`shown_rows` for few rows, prepared once for a plan and a field list (None: the
    fields are not all of the plain types `Mask.values` handles; use `shown`).

    The key lookup keeps one per cached plan and field list, so that a request only
    converts and masks its row's values.
    """
    _check_visible(plan, fields)
    chosen = [schema.field(name) for name in fields]
    if not all(_python_exact(f.type) for f in chosen):
        return None
    masked = plan.masked
    key = pseudonym_key(secret, plan.consumer) if masked.keys() & set(fields) else b""
    steps = [
        (f.name, f.type, _converter(f.type), _mask(masked[f.name]) if f.name in masked else None)
        for f in chosen
    ]
    names = list(fields)

    def shape(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        columns: list[list[Any]] = []
        for name, type_, convert, mask in steps:
            values = [convert(r.get(name)) for r in rows]
            columns.append(values if mask is None else mask.values(values, type_, key=key))
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]

    return shape


def _check_visible(plan: AccessPlan, fields: Sequence[str]) -> None:
    visible = set(plan.visible)
    if any(name not in visible for name in fields):
        raise ValueError("a field outside the plan was asked of the serving index")


def _python_exact(type_: pa.DataType) -> bool:
    """Whether `_python_value` of a stored value is what Arrow's `to_pylist` gives for it."""
    return bool(
        pa.types.is_integer(type_)
        or type_ in (pa.float32(), pa.float64())
        or pa.types.is_boolean(type_)
        or pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
        or pa.types.is_date32(type_)
        or pa.types.is_null(type_)
    )


def _converter(type_: pa.DataType) -> Callable[[Any], Any]:
    """A stored JSON value as `decode` and then Arrow make it (a float column's 1 is 1.0)."""
    if pa.types.is_null(type_):
        return _none
    if pa.types.is_floating(type_):
        return _float
    if pa.types.is_date32(type_):
        return _day
    return _same


def _none(value: Any) -> None:
    return None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _day(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _same(value: Any) -> Any:
    return value


@functools.lru_cache(maxsize=1024)
def _mask(spec: str) -> Mask:
    return parse_mask(spec)


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
        self._making: asyncio.Task[Any] | None = None
        self._sql = _FACTS.format(client="$1", code="$2", key="$3")

    async def facts(self, client_id: str, code: str, key: str) -> KeyFacts:
        async with (await self._pool_here()).acquire() as connection:
            found = await connection.fetchrow(self._sql, client_id, code, key)
        return _facts(tuple(found) if found is not None else None)

    async def _pool_here(self) -> Any:
        """This loop's pool; the first requests of a loop all wait for the one being made."""
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if self._making is None or self._making.get_loop() is not loop:
            self._making = loop.create_task(self._make_pool(loop))
        return await asyncio.shield(self._making)

    async def _make_pool(self, loop: asyncio.AbstractEventLoop) -> Any:
        import asyncpg

        old, self._pool = self._pool, None
        if old is not None:  # a pool serves the loop that made it only
            with contextlib.suppress(RuntimeError):  # that loop may be closed already
                old.terminate()
        pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=self.max_size, statement_cache_size=64,
            reset=_keep_session,
        )  # fmt: skip
        self._pool, self._loop = pool, loop
        return pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _keep_session(connection: Any) -> None:
    """A pooled connection goes back as it is: it ran one SELECT outside any transaction,
    so there is no session state to reset (asyncpg's default reset is a round trip more
    per lookup: `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`)."""


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
        return PostgresFacts(libpq_url(database_url))
    return SessionFacts(factory)


def state(session: Session, resource_id: int) -> ServingState | None:
    """Where the index of a resource stands, if it has one."""
    return session.get(ServingState, resource_id)


# --- refresh -----------------------------------------------------------------------------


class Superseded(Exception):
    """Another refresh of the same resource took the build over; this one stops."""


Transactions = Callable[[], AbstractContextManager[Session]]


def savepoints(session: Session) -> Transactions:
    """Short transactions as savepoints of one session (tests and tools that hold one)."""

    @contextlib.contextmanager
    def begin() -> Iterator[Session]:
        with session.begin_nested():
            yield session

    return begin


@dataclass
class _Build:
    """One refresh under way: its claim on the state row and where the index stood."""

    resource_id: int
    token: str
    since: int | None  # the version the index was whole at when claimed (None: rebuild)
    begin: Transactions

    def step(self, work: Callable[[Session], int]) -> int:
        """`work` in one short transaction, if this build still holds the resource."""
        with self.begin() as session:
            held = session.execute(
                update(ServingState)
                .where(
                    ServingState.resource_id == self.resource_id,
                    ServingState.building == self.token,
                )
                .values(refreshed_at=clock.now())
            )
            if not _rowcount(held):
                raise Superseded(f"the index of resource {self.resource_id} is built by another")
            return work(session)


def refresh(
    begin: Transactions,
    lake: Lake,
    resource: Indexed,
    primary_key: Sequence[str],
    *,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Bring the index of `resource` to its `lake_version`; the rows written or deleted.

    Runs in short transactions opened by `begin` (a sessionmaker's `begin`, or
    `savepoints(session)`), each writing at most `batch_rows` rows, so no lock is held for
    long and requests keep being answered during a large refresh. The first transaction
    claims the build (the state row names this build and no version: the index serves
    nothing for the resource until the last one switches it to `lake_version`, so a
    half-built index never serves). A refresh started later for the same or a newer version
    takes the build over and this one stops (returning 0); one for an older version than
    the index holds or builds is skipped. The rows are made into JSON in DuckDB before each
    transaction opens; PostgreSQL receives them by COPY.
    """
    target = resource.lake_version
    usable = target is not None and bool(primary_key) and lake.exists(resource.code)
    schema: pa.Schema | None = None
    if usable:
        schema = lake.dataset(resource.code, version=target).schema
        usable = all(
            c in schema.names and key_kind(schema.field(c).type) is not None for c in primary_key
        )
    try:
        if not usable or target is None or schema is None:
            return _drop(begin, resource.id, target, batch_rows)
        build = _claim(begin, resource.id, target)
        if build is None:
            return 0
        written: int | None = None
        if build.since is not None and build.since < target:
            written = _apply_changes(
                build, lake, resource, primary_key, build.since, target, schema, batch_rows
            )
        full = written is None
        if written is None:
            written = _rebuild(build, lake, resource, primary_key, batch_rows)
        build.step(lambda session: _switch(session, build, target, written if full else None))
        return written
    except Superseded:
        log.info("serving index of %s: a newer refresh took over", resource.code)
        return 0


# --- the refresh job ----------------------------------------------------------------------

REFRESH_KIND = "serving.refresh"


def submit_refresh(
    session: Session, resource: Indexed, primary_key: Sequence[str], *, lake_uri: str
) -> jobs.Job:
    """Queue the index refresh of a committed version, inside that version's transaction.

    The job exists if and only if the transaction commits; one job per version. The caller
    (the load) gives the facts the refresh needs, so the index knows nothing of the catalog.
    """
    if resource.lake_version is None:
        raise ValueError("only a committed version is indexed")
    return jobs.submit(
        session,
        Principal.system(),
        REFRESH_KIND,
        {
            "code": resource.code,
            "resource_id": resource.id,
            "lake_version": resource.lake_version,
            "primary_key": list(primary_key),
            "lake_uri": lake_uri,
        },
        key=f"serving:{resource.code}:{resource.lake_version}",
    )


@dataclass(frozen=True)
class Facts:
    """A resource as the index sees it (for callers that do not hold the catalog's row)."""

    id: int
    code: str
    lake_version: int | None


@jobs.handler(REFRESH_KIND)
def run_refresh(ctx: jobs.JobContext) -> dict[str, Any]:
    """The `serving.refresh` job: safe to run again (an index already there is left alone;
    one for an older version than the index holds or builds does nothing)."""
    p = ctx.params
    resource = Facts(int(p["resource_id"]), str(p["code"]), int(p["lake_version"]))
    lake = Lake(p["lake_uri"])
    written = refresh(ctx.factory.begin, lake, resource, [str(c) for c in p["primary_key"]])
    with ctx.factory() as session:
        found = state(session, resource.id)
        return {
            "written": written,
            "lake_version": found.lake_version if found is not None else None,
            "rows": found.rows if found is not None else 0,
        }


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _ensure_state(session: Session, resource_id: int) -> None:
    values = {"resource_id": resource_id, "lake_version": None, "rows": 0}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            postgresql.insert(ServingState)
            .values(**values, refreshed_at=clock.now())
            .on_conflict_do_nothing()
        )
    elif dialect == "sqlite":
        session.execute(
            sqlite.insert(ServingState)
            .values(**values, refreshed_at=clock.now())
            .on_conflict_do_nothing()
        )
    elif session.get(ServingState, resource_id) is None:
        session.add(ServingState(**values))
        session.flush()


def _locked_state(session: Session, resource_id: int) -> ServingState | None:
    return session.scalars(
        select(ServingState)
        .where(ServingState.resource_id == resource_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def _claim(
    begin: Transactions, resource_id: int, target: int | None, *, drop: bool = False
) -> _Build | None:
    """Take the build of the index at `target` (None: nothing to do, or a newer one runs).

    A drop (`drop`) takes it to remove the resource's rows, even at the same version.
    """
    with begin() as session:
        _ensure_state(session, resource_id)
        current = _locked_state(session, resource_id)
        if current is None:  # pragma: no cover - the row was just made
            raise RuntimeError(f"no serving state for resource {resource_id}")
        building = current.building is not None
        if not drop and not building and current.lake_version == target:
            return None
        if target is not None:
            indexed, built = current.lake_version, current.building_version
            if not building and indexed is not None and indexed > target:
                return None  # a job for an older version that ran late
            if building and built is not None and built > target:
                return None  # a newer version is being built (or its job will run again)
        since = None if building else current.lake_version
        token = uuid.uuid4().hex
        current.building = token
        current.building_version = target
        current.lake_version = None  # serves nothing until the build is whole
        current.refreshed_at = clock.now()
        session.flush()
        return _Build(resource_id, token, since, begin)


def _switch(session: Session, build: _Build, target: int, rows: int | None) -> int:
    """The build is whole: the index serves `target` from now on."""
    if rows is None:
        rows = (
            session.scalar(
                select(func.count())
                .select_from(ServingRow)
                .where(ServingRow.resource_id == build.resource_id)
            )
            or 0
        )
    session.execute(
        update(ServingState)
        .where(ServingState.resource_id == build.resource_id)
        .values(
            lake_version=target,
            rows=rows,
            building=None,
            building_version=None,
            refreshed_at=clock.now(),
        )
    )
    return rows


def _drop(begin: Transactions, resource_id: int, target: int | None, batch_rows: int) -> int:
    """The resource is not indexed (no data, no primary key, or one we cannot key by)."""
    with begin() as session:
        if session.get(ServingState, resource_id) is None:
            return 0
    build = _claim(begin, resource_id, target, drop=True)
    if build is None:  # a newer version is indexed or being indexed: it decides
        return 0
    removed = _delete_all(build, batch_rows)
    build.step(
        lambda session: _rowcount(
            session.execute(delete(ServingState).where(ServingState.resource_id == resource_id))
        )
    )
    return removed


def _delete_all(build: _Build, batch_rows: int) -> int:
    """Every row of the resource, `batch_rows` per transaction."""
    removed = 0
    while True:
        chosen = (
            select(ServingRow.key)
            .where(ServingRow.resource_id == build.resource_id)
            .limit(batch_rows)
            .scalar_subquery()
        )
        gone = build.step(partial(_delete_some, resource_id=build.resource_id, chosen=chosen))
        removed += gone
        if gone < batch_rows:
            return removed


def _delete_some(session: Session, *, resource_id: int, chosen: Any) -> int:
    statement = delete(ServingRow).where(
        ServingRow.resource_id == resource_id, ServingRow.key.in_(chosen)
    )
    return _rowcount(session.execute(statement))


def _rebuild(
    build: _Build,
    lake: Lake,
    resource: Indexed,
    primary_key: Sequence[str],
    batch_rows: int,
) -> int:
    _delete_all(build, batch_rows)
    dataset = lake.dataset(resource.code, version=resource.lake_version)
    written = 0
    con = duckdb.connect(":memory:")
    try:
        for batch in dataset.to_batches(batch_size=batch_rows):
            rows = _payload(con, pa.Table.from_batches([batch]), primary_key)
            written += build.step(partial(_write, build=build, rows=rows))
    finally:
        con.close()
    return written


def _payload(
    con: duckdb.DuckDBPyConnection, table: pa.Table, primary_key: Sequence[str]
) -> list[tuple[str, str]]:
    """(key, JSON text) of every row: the JSON made by DuckDB a column at a time.

    Columns JSON holds as they are go in as they are; dates as their ISO text (Arrow's cast
    is `date.isoformat`); anything else (timestamps, decimals, binary, nested values) as the
    JSON `json_value` writes, made per value in Python and embedded as JSON.
    """
    if table.num_rows == 0:
        return []
    columns: list[pa.Array | pa.ChunkedArray] = []
    parts: list[str] = []
    for i, name in enumerate(table.column_names):
        column = table.column(name)
        alias = f"c{i}"
        if _plain(column.type):
            columns.append(column)
            parts.append(f"{_quote(name)} := {alias}")
        elif pa.types.is_date32(column.type):
            columns.append(column.cast(pa.string()))
            parts.append(f"{_quote(name)} := {alias}")
        else:
            texts = [
                None if v is None else json.dumps(_encode(v), ensure_ascii=False)
                for v in column.to_pylist()
            ]
            columns.append(pa.array(texts, pa.string()))
            parts.append(f"{_quote(name)} := {alias}::JSON")
    source = pa.table(columns, names=[f"c{i}" for i in range(len(columns))])
    con.register("__rows", source)
    try:
        texts = (
            con.sql(f"SELECT to_json(struct_pack({', '.join(parts)}))::VARCHAR AS j FROM __rows")
            .to_arrow_table()
            .column("j")
            .to_pylist()
        )
    finally:
        con.unregister("__rows")
    return list(zip(_keys(table, primary_key), texts, strict=True))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _write(session: Session, *, build: _Build, rows: Sequence[tuple[str, str]]) -> int:
    """Insert stored rows (key, JSON text): COPY on PostgreSQL, one executemany elsewhere."""
    if not rows:
        return 0
    connection = session.connection()
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        raw: Any = connection.connection.dbapi_connection
        with (
            raw.cursor() as cursor,
            cursor.copy("COPY serving_rows (resource_id, key, row) FROM STDIN") as copy,
        ):
            for key, row in rows:
                copy.write_row((build.resource_id, key, row))
        return len(rows)
    connection.execute(
        text("INSERT INTO serving_rows (resource_id, key, row) VALUES (:r, :k, :j)"),
        [{"r": build.resource_id, "k": key, "j": row} for key, row in rows],
    )
    return len(rows)


def _keys(table: pa.Table, primary_key: Sequence[str]) -> list[str]:
    """`encode_key` of every row; integers and dates as Arrow text (no escaping needed)."""
    if len(primary_key) == 1 and key_kind(table.column(primary_key[0]).type) in ("integer", "date"):
        texts = table.column(primary_key[0]).cast(pa.string()).to_pylist()
        return [f'["{t}"]' for t in texts]
    pk_columns = [table.column(c).to_pylist() for c in primary_key]
    return [encode_key(values) for values in zip(*pk_columns, strict=True)]


def _apply_changes(
    build: _Build,
    lake: Lake,
    resource: Indexed,
    primary_key: Sequence[str],
    since: int,
    target: int,
    schema: pa.Schema,
    batch_rows: int,
) -> int | None:
    """Apply the Change Data Feed of versions since+1..target; None when it cannot."""
    changes = _changes(lake, resource.code, since, target)
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
        keys = ", ".join(_quote(c) for c in primary_key)
        picked = con.sql(
            f"""SELECT __i, _change_type = 'delete' AS gone FROM c
                WHERE _change_type <> 'update_preimage'
                QUALIFY row_number() OVER (
                    PARTITION BY {keys}
                    ORDER BY _commit_version DESC, (_change_type = 'delete') ASC
                ) = 1"""
        ).to_arrow_table()
        latest = changes.select(schema.names).take(picked.column("__i"))
        gone = picked.column("gone")
        # Every changed key goes; the rows that live on come back.
        keys_changed = _keys(latest, primary_key)
        step = max(DELETE_CHUNK, batch_rows - batch_rows % DELETE_CHUNK)
        for start in range(0, len(keys_changed), step):
            chunk = keys_changed[start : start + step]
            build.step(partial(_delete_keys, resource_id=resource.id, keys=chunk))
        kept = latest.filter(pc.invert(gone))
        written = 0
        for batch in kept.to_batches(max_chunksize=batch_rows):
            rows = _payload(con, pa.Table.from_batches([batch], kept.schema), primary_key)
            written += build.step(partial(_write, build=build, rows=rows))
    finally:
        con.close()
    return written + int(pc.sum(gone.cast(pa.int64())).as_py() or 0)


def _delete_keys(session: Session, *, resource_id: int, keys: Sequence[str]) -> int:
    for start in range(0, len(keys), DELETE_CHUNK):
        session.execute(
            delete(ServingRow).where(
                ServingRow.resource_id == resource_id,
                ServingRow.key.in_(keys[start : start + DELETE_CHUNK]),
            )
        )
    return len(keys)


def _changes(lake: Lake, code: str, since: int, target: int) -> pa.Table | None:
    """The table's changes after `since` up to `target` (`Lake.change_feed`, which is None
    when the feed does not cover them, a schema change included): rebuilding is cheaper."""
    return lake.change_feed(code, since, target)
