"""Row queries on a resource's lake table: fields, filter, sort, keyset paging, time travel.

Until sharing grants exist only the provider's staff and admins read rows; anyone else goes
to `core.security.authorize`, which refuses and audits. Every read is audited with the keys
of the rows it returned.

Paging is by keyset: the cursor holds the last row's sort-key values (the sort fields, then
the primary key, so the order is total) and the table version, so every page of one query
reads the same snapshot. Cursors are signed with a key derived from the node key.

A lookup by the whole primary key (`pk = v [and pk2 = w]`, no version, no cursor) is
answered from the serving index (`core.serving`) when it is at the resource's current
version, with the same checks, audit record and response; otherwise from the lake. Every
committed load queues `serving.refresh` (`submit_refresh`) to bring the index up to date.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource
from minyun.core import audit, jobs, serving
from minyun.core.errors import ConfigError, Invalid, NotFound
from minyun.core.filters import (
    BoolOp,
    Node,
    Test,
    compile_filter,
    kind_of,
    parse_fields,
    parse_filter,
    parse_sort,
    quote,
)
from minyun.core.keys import NodeKey
from minyun.core.lake import Lake
from minyun.core.security import Principal, authorize

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
AUDIT_KEYS_UP_TO = 100
MAX_CURSOR = 8192
DATASETS_CACHED = 32
REFRESH_KIND = "serving.refresh"


@dataclass(frozen=True)
class RowsPage:
    """One page of rows, the cursor of the next page (None on the last), the version read."""

    table: pa.Table
    next_cursor: str | None
    version: int


@dataclass(frozen=True)
class _Position:
    version: int
    after: list[Any] | None = None  # the last row's key values (keyset paging)
    offset: int | None = None  # rows already returned (tables without a primary key)


def query_rows(
    session: Session,
    lake: Lake,
    actor: Principal,
    code: str,
    *,
    fields: str | None = None,
    filter: str | None = None,
    sort: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    version: int | None = None,
    purpose: str | None = None,
) -> RowsPage:
    """Rows of a resource for its provider's staff and admins; audited with the rows' keys."""
    resource = catalog.access_resource(session, actor, code)
    if not actor.manages(resource.provider_id):
        authorize(
            session, actor, "resource.read", target=code, target_type="resource", purpose=purpose
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    if cursor is None and version is None and filter:
        served = _from_index(session, lake, actor, resource, fields, filter, sort, purpose)
        if served is not None:
            return served
    query_id = hashlib.sha256(f"{code}\0{filter or ''}\0{sort or ''}".encode()).hexdigest()[:16]
    key = _cursor_key(session)
    position = _read_cursor(key, cursor, query_id) if cursor else None
    read_version = _pick_version(resource, version, position)

    dataset = _dataset(lake, code, read_version)
    columns = {f.name: kind_of(f.type) for f in dataset.schema}
    selected = parse_fields(fields, columns)
    where, params = compile_filter(filter, columns)
    order = parse_sort(sort, columns)
    declared = _primary_key(session, resource)
    # Keyset paging needs a total order: the sort fields, then a primary key we can compare.
    keyset = bool(declared) and all(columns.get(c, "other") != "other" for c in declared)
    primary_key = declared if keyset else []
    sorted_names = {name for name, _ in order}
    if keyset:
        tail = [c for c in primary_key if c not in sorted_names]
    else:
        tail = [c for c, kind in columns.items() if kind != "other" and c not in sorted_names]
    keys = order + [(c, False) for c in tail]

    if position is not None and (
        keyset != (position.after is not None)
        or (position.after is not None and len(position.after) != len(keys))
    ):
        raise Invalid("the cursor does not fit this query", field="cursor")
    if position is not None and position.after is not None:
        after = [
            _decode(v, columns[name]) for (name, _), v in zip(keys, position.after, strict=True)
        ]
        condition, more = _after(keys, after)
        where, params = f"{where} AND {condition}", params + more
    offset = position.offset if position is not None and position.offset is not None else 0

    projection = [quote(f) for f in selected] + [
        f"{quote(name)} AS {quote(f'__minyun_key_{i}')}" for i, (name, _) in enumerate(keys)
    ]
    ordering = ", ".join(f"{quote(n)} {'DESC' if d else 'ASC'} NULLS LAST" for n, d in keys)
    sql = (
        f"SELECT {', '.join(projection)} FROM t WHERE {where}"
        f"{f' ORDER BY {ordering}' if ordering else ''} LIMIT ? OFFSET ?"
    )
    con = _duckdb().cursor()
    try:
        con.register("t", dataset)
        result = con.sql(sql, params=[*params, limit + 1, offset]).to_arrow_table()
    finally:
        con.close()

    page = result.slice(0, limit)
    rows = page.num_rows
    next_cursor = None
    if result.num_rows > limit:
        state: dict[str, Any] = {"q": query_id, "v": read_version}
        if keyset:
            state["k"] = [
                _encode(page.column(len(selected) + i)[rows - 1].as_py()) for i in range(len(keys))
            ]
        else:
            state["o"] = offset + rows
        next_cursor = _sign(key, state)
    out = page.select(list(range(len(selected)))).rename_columns(selected)

    audit.record(
        session,
        actor,
        "resource.read",
        target=code,
        target_type="resource",
        keys=_row_keys(page, keys, primary_key, len(selected)) if keyset else None,
        count=rows,
        purpose=purpose,
        detail=_describe(read_version, selected, filter, sort),
    )
    return RowsPage(out, next_cursor, read_version)


# --- the serving index ---------------------------------------------------------------------


def _from_index(
    session: Session,
    lake: Lake,
    actor: Principal,
    resource: Resource,
    fields: str | None,
    filter: str,
    sort: str | None,
    purpose: str | None,
) -> RowsPage | None:
    """The page of a whole-primary-key lookup from the serving index; None to read the lake.

    The index answers only when it is at the resource's current version, and then exactly
    as the lake would: same fields, types, audit record and version.
    """
    version = resource.lake_version
    if version is None:
        return None
    primary_key = _primary_key(session, resource)
    if not primary_key:
        return None
    try:
        wanted = _key_equalities(parse_filter(filter), primary_key)
    except Invalid:
        return None  # the lake read reports it
    if wanted is None:
        return None
    schema = _output_schema(lake, resource.code, version)
    columns = {f.name: kind_of(f.type) for f in schema}
    values: list[Any] = []
    for name in primary_key:
        if name not in columns:
            return None
        value = _key_value(wanted[name], schema.field(name).type)
        if value is None:
            return None
        values.append(value)
    selected = parse_fields(fields, columns)
    parse_sort(sort, columns)  # refused as the lake read would refuse it
    fresh, row = serving.lookup(session, resource.id, serving.encode_key(values), version)
    if not fresh:
        return None
    table = serving.rows_table([row] if row is not None else [], schema)
    keys = [(c, False) for c in primary_key]
    key_table = table.select(primary_key)
    audit.record(
        session,
        actor,
        "resource.read",
        target=resource.code,
        target_type="resource",
        keys=_row_keys(key_table, keys, primary_key, 0),
        count=table.num_rows,
        purpose=purpose,
        detail=_describe(version, selected, filter, sort),
    )
    return RowsPage(table.select(selected), None, version)


def _key_equalities(node: Node | None, primary_key: list[str]) -> dict[str, Any] | None:
    """{field: literal} when the filter is `pk1 = v1 and …` over exactly the primary key."""
    terms: list[Node] = []
    pending: list[Node | None] = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, BoolOp) and item.op == "and":
            pending.extend(item.items)
        elif isinstance(item, Test):
            terms.append(item)
        else:
            return None
    found: dict[str, Any] = {}
    for term in terms:
        assert isinstance(term, Test)
        if term.kind != "compare" or term.op != "=" or term.field.name in found:
            return None
        found[term.field.name] = term.values[0].value
    return found if sorted(found) == sorted(primary_key) else None


def _key_value(literal: Any, type_: pa.DataType) -> Any:
    """The key value a literal stands for, when it compares as the lake compares it."""
    kind = serving.key_kind(type_)
    if kind == "integer" and isinstance(literal, int) and not isinstance(literal, bool):
        return literal
    if kind == "string" and isinstance(literal, str):
        return literal
    if kind == "date" and isinstance(literal, str):
        try:
            return date.fromisoformat(literal)
        except ValueError:
            return None
    return None


def refresh_index(session: Session, lake: Lake, code: str) -> int:
    """Bring the serving index of resource `code` to its current version (rows written)."""
    resource = catalog.get_resource(session, code)
    return serving.refresh(session, lake, resource, _primary_key(session, resource))


def submit_refresh(session: Session, code: str, lake_version: int, *, lake_uri: str) -> jobs.Job:
    """Queue the index refresh of a committed load, inside the load's own transaction.

    The job exists if and only if that transaction commits; one job per version.
    """
    return jobs.submit(
        session,
        Principal.system(),
        REFRESH_KIND,
        {"code": code, "lake_version": lake_version, "lake_uri": lake_uri},
        key=f"serving:{code}:{lake_version}",
    )


@jobs.handler(REFRESH_KIND)
def run_refresh(ctx: jobs.JobContext) -> dict[str, Any]:
    """The `serving.refresh` job: safe to run again (an index already there is left alone)."""
    lake = Lake(ctx.params["lake_uri"])
    with ctx.factory.begin() as session:
        written = refresh_index(session, lake, ctx.params["code"])
        resource = catalog.get_resource(session, ctx.params["code"])
        state = serving.state(session, resource.id)
        return {
            "written": written,
            "lake_version": state.lake_version if state is not None else None,
            "rows": state.rows if state is not None else 0,
        }


def _pick_version(resource: Resource, version: int | None, position: _Position | None) -> int:
    latest = resource.lake_version
    if latest is None:
        raise NotFound(f"resource {resource.code} has no data yet")
    if position is not None:
        if version is not None and version != position.version:
            raise Invalid(
                f"the cursor reads version {position.version}; leave version out or match it",
                field="version",
            )
        version = position.version
    chosen = latest if version is None else version
    if not 0 <= chosen <= latest:
        raise NotFound(f"resource {resource.code} has no version {chosen}")
    return chosen


def _primary_key(session: Session, resource: Resource) -> list[str]:
    schema = catalog.current_schema(session, resource)
    pk = schema.descriptor.get("primaryKey") if schema is not None else None
    return [pk] if isinstance(pk, str) else [str(c) for c in pk or []]


def _after(keys: list[tuple[str, bool]], after: list[Any]) -> tuple[str, list[Any]]:
    """Rows strictly after `after` in the order of `keys` (NULLS LAST both ways)."""
    branches: list[str] = []
    params: list[Any] = []
    for i, (name, descending) in enumerate(keys):
        if after[i] is None:
            continue  # nothing sorts after NULL in this key
        parts, values = [], []
        for (previous, _), value in zip(keys[:i], after[:i], strict=True):
            if value is None:
                parts.append(f"{quote(previous)} IS NULL")
            else:
                parts.append(f"{quote(previous)} = ?")
                values.append(value)
        column = quote(name)
        parts.append(f"({column} {'<' if descending else '>'} ? OR {column} IS NULL)")
        values.append(after[i])
        branches.append("(" + " AND ".join(parts) + ")")
        params.extend(values)
    return ("(" + " OR ".join(branches) + ")" if branches else "FALSE"), params


def _row_keys(
    page: pa.Table, keys: list[tuple[str, bool]], primary_key: list[str], first: int
) -> list[str] | None:
    if page.num_rows > AUDIT_KEYS_UP_TO:
        return None
    names = [name for name, _ in keys]
    columns = [page.column(first + names.index(c)).to_pylist() for c in primary_key]
    if len(columns) == 1:
        return [str(v) for v in columns[0]]
    return [
        json.dumps(list(row), ensure_ascii=False, default=str) for row in zip(*columns, strict=True)
    ]


def _describe(version: int, fields: list[str], filter: str | None, sort: str | None) -> str:
    parts = [f"version={version}", f"fields={','.join(fields)}"]
    if filter:
        parts.append(f"filter={filter}")
    if sort:
        parts.append(f"sort={sort}")
    return "; ".join(parts)


# --- cursors ---------------------------------------------------------------------------------


def _cursor_key(session: Session) -> bytes:
    node_key = session.info.get("node_key")
    if not isinstance(node_key, NodeKey):
        raise ConfigError("no node key to sign query cursors with")
    raw = node_key.private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return hashlib.sha256(b"minyun.query.cursor\0" + raw).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, state: dict[str, Any]) -> str:
    body = _b64(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{body}.{_b64(hmac.new(key, body.encode(), 'sha256').digest()[:16])}"


def _read_cursor(key: bytes, cursor: str, query_id: str) -> _Position:
    bad = Invalid("the cursor is not valid; start again without one", field="cursor")
    body, _, mac = cursor.partition(".")
    if len(cursor) > MAX_CURSOR or not body.isascii() or not mac.isascii():
        raise bad
    try:
        signature = _unb64(mac)
        expected = hmac.new(key, body.encode(), "sha256").digest()[:16]
        if not hmac.compare_digest(signature, expected):
            raise bad
        state = json.loads(_unb64(body))
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    if state.get("q") != query_id:
        raise Invalid(
            "the cursor belongs to another query; keep filter and sort while paging",
            field="cursor",
        )
    version, after, offset = state.get("v"), state.get("k"), state.get("o")
    if not isinstance(version, int) or not (isinstance(after, list) or isinstance(offset, int)):
        raise bad
    return _Position(version, after, offset)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decode(value: Any, kind: str) -> Any:
    if isinstance(value, str) and kind == "date":
        return date.fromisoformat(value)
    if isinstance(value, str) and kind == "datetime":
        return datetime.fromisoformat(value)
    if isinstance(value, str) and kind == "number":
        return Decimal(value)
    return value


# --- the engine --------------------------------------------------------------------------------

_datasets: OrderedDict[tuple[str, int], ds.Dataset] = OrderedDict()
_datasets_lock = threading.Lock()


def _dataset(lake: Lake, code: str, version: int) -> ds.Dataset:
    """The resource's rows at `version`; a committed Delta version never changes, so it is cached."""
    key = (lake.table_uri(code), version)
    with _datasets_lock:
        if key in _datasets:
            _datasets.move_to_end(key)
            return _datasets[key]
    dataset = lake.dataset(code, version=version)
    with _datasets_lock:
        _datasets[key] = dataset
        while len(_datasets) > DATASETS_CACHED:
            _datasets.popitem(last=False)
    return dataset


_schemas: OrderedDict[tuple[str, int], pa.Schema] = OrderedDict()


def _output_schema(lake: Lake, code: str, version: int) -> pa.Schema:
    """The Arrow schema a lake read returns (DuckDB's types) at `version`, cached."""
    key = (lake.table_uri(code), version)
    with _datasets_lock:
        if key in _schemas:
            _schemas.move_to_end(key)
            return _schemas[key]
    con = _duckdb().cursor()
    try:
        con.register("t", _dataset(lake, code, version))
        schema = con.sql("SELECT * FROM t LIMIT 0").to_arrow_table().schema
    finally:
        con.close()
    with _datasets_lock:
        _schemas[key] = schema
        while len(_schemas) > DATASETS_CACHED:
            _schemas.popitem(last=False)
    return schema


@lru_cache(maxsize=1)
def _duckdb() -> duckdb.DuckDBPyConnection:
    # One in-process database; each query takes a cursor of it (microseconds, where a new
    # database costs tens of milliseconds). Views registered on a cursor stay its own.
    return duckdb.connect(":memory:")
