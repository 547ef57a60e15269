"""The one reader of resource rows in the lake: a query planned by an `AccessPlan`.

`Lake.read_rows(plan, …)` (see `core.lake`) is the only way to read a resource's rows. The
plan's projection, masks and row filter are applied inside DuckDB's query: a dropped field
is never selected, a masked one is selected only through its mask, and the plan's row
filter is ANDed to the reader's own. A reader may filter and sort only on fields it sees in
clear (filtering on a hidden value leaks it).

Paging is by keyset when the primary key is shown in clear: the cursor holds the last row's
sort-key values and the table version, so every page of one query reads the same snapshot.
Otherwise (no usable key, or a masked key whose values must not travel in a cursor) paging
is by offset. Cursors are HMAC-signed with a key derived from the node key.
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
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from minyun.core.errors import ConfigError, Invalid, NotFound
from minyun.core.filters import Node, compile_node, kind_of, parse_filter, parse_sort, quote
from minyun.core.lake_write import REJECTS_SCHEMA
from minyun.core.masks import parse_mask, pseudonym_key
from minyun.core.policies import AccessPlan, filter_fields

if TYPE_CHECKING:
    from minyun.core.lake import Lake

MAX_LIMIT = 10_000
MAX_CURSOR = 8192
DATASETS_CACHED = 32
AUDIT_KEYS_UP_TO = 100
KEY_PREFIX = "__minyun_key_"


@dataclass(frozen=True)
class RowsPage:
    """One page of rows, the cursor of the next page (None on the last), the version read.

    `keys` are the primary-key values of the rows returned (for the audit record), when the
    page is small enough to list them.
    """

    table: pa.Table
    next_cursor: str | None
    version: int
    keys: list[str] | None = None


@dataclass(frozen=True)
class _Position:
    version: int
    after: list[Any] | None = None  # the last row's key values (keyset paging)
    offset: int | None = None  # rows already returned (no key shown in clear)


def read_rows(
    lake: Lake,
    plan: AccessPlan,
    *,
    secret: bytes,
    fields: str | None = None,
    filter: str | None = None,
    sort: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    version: int | None = None,
) -> RowsPage:
    """One page of the rows `plan` opens; `secret` is the node's reader secret (cursors, masks)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    if plan.row_limit is not None:
        limit = min(limit, plan.row_limit)
    code = plan.code
    query_id = hashlib.sha256(
        f"{code}\0{plan.cache_key()}\0{filter or ''}\0{sort or ''}".encode()
    ).hexdigest()[:16]
    cursor_key = hashlib.sha256(b"cursor\0" + secret).digest()
    try:
        position = _read_cursor(cursor_key, cursor, query_id) if cursor else None
    except Invalid as exc:  # a tampered or foreign cursor is refused and audited
        raise plan.refusal(exc) from None
    read_version = _pick_version(plan, version, position)

    dataset = _dataset(lake, code, read_version)
    all_columns = {f.name: kind_of(f.type) for f in dataset.schema}
    shown = {n: all_columns[n] for n in plan.visible if n in all_columns}
    selected = plan.fields_for(_names(fields))
    for name in selected:
        if name not in shown:
            raise Invalid(f"unknown field {name!r}", field="fields")
    clear = {n: k for n, k in shown.items() if n in plan.clear}
    node = parse_filter(filter or "")
    plan.require_clear(filter_fields(node), what="filter")
    order = parse_sort(sort, shown)
    plan.require_clear([n for n, _ in order], what="sort")
    where, params = _where(node, plan.row_filter, clear, all_columns)

    primary_key = [c for c in plan.resource.primary_key if c in all_columns]
    keyset = bool(primary_key) and all(c in clear and clear[c] != "other" for c in primary_key)
    sorted_names = {name for name, _ in order}
    if keyset:
        tail = [c for c in primary_key if c not in sorted_names]
    else:
        tail = [c for c, kind in clear.items() if kind != "other" and c not in sorted_names]
    keys = order + [(c, False) for c in tail]

    if position is not None and (
        keyset != (position.after is not None)
        or (position.after is not None and len(position.after) != len(keys))
    ):
        raise Invalid("the cursor does not fit this query", field="cursor")
    if position is not None and position.after is not None:
        after = [
            _decode(v, all_columns[name]) for (name, _), v in zip(keys, position.after, strict=True)
        ]
        condition, more = _after(keys, after)
        where, params = f"{where} AND {condition}", params + more
    offset = position.offset if position is not None and position.offset is not None else 0

    mask_key = pseudonym_key(secret, plan.consumer)
    projection = [_select(plan, name, mask_key) for name in selected] + [
        f"{quote(name)} AS {quote(f'{KEY_PREFIX}{i}')}" for i, (name, _) in enumerate(keys)
    ]
    audit_pk = [c for c in primary_key if c not in {n for n, _ in keys}]
    projection += [f"{quote(c)} AS {quote(f'__minyun_pk_{c}')}" for c in audit_pk]
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
        next_cursor = _sign(cursor_key, state)
    out = page.select(list(range(len(selected)))).rename_columns(selected)
    return RowsPage(out, next_cursor, read_version, _audit_keys(page, keys, primary_key))


def read_table(
    lake: Lake,
    plan: AccessPlan,
    *,
    secret: bytes,
    version: int | None = None,
    as_of: datetime | None = None,
    limit: int | None = None,
    ordered: bool = False,
) -> pa.Table:
    """Every row `plan` opens, at a version or a time (time travel), projected and masked;
    in primary-key order if `ordered` (a batch delivery's file is then the same every time)."""
    if version is None and as_of is None:
        version = plan.resource.lake_version
    dataset = lake.dataset(plan.code, version=version, as_of=as_of)
    all_columns = {f.name: kind_of(f.type) for f in dataset.schema}
    selected = [n for n in plan.visible if n in all_columns]
    mask_key = pseudonym_key(secret, plan.consumer)
    params: list[Any] = []
    where = compile_node(plan.row_filter, all_columns, params) if plan.row_filter else "TRUE"
    cap = (
        min(x for x in (limit, plan.row_limit) if x is not None)
        if (limit is not None or plan.row_limit is not None)
        else None
    )
    projection = ", ".join(_select(plan, name, mask_key) for name in selected) or "NULL AS none"
    order = [c for c in plan.resource.primary_key if c in all_columns] if ordered else []
    sql = f"SELECT {projection} FROM t WHERE {where}"
    sql += f" ORDER BY {', '.join(quote(c) for c in order)}" if order else ""
    sql += " LIMIT ?" if cap is not None else ""
    # Every row is read anyway: the rows come as a stream of the columns used, and DuckDB
    # filters them itself. (Pushed into the dataset, a filter on a text column failed on
    # files a merge wrote as string_view: pyarrow has no `equal` of string and string_view.)
    used = [n for n in all_columns if n in selected or n in filter_fields(plan.row_filter)]
    used += [c for c in order if c not in used]
    source = dataset.scanner(columns=used or None).to_reader()
    con = _duckdb().cursor()
    try:
        con.register("t", source)
        result = con.sql(sql, params=[*params, *([cap] if cap is not None else [])])
        return result.to_arrow_table()
    finally:
        con.close()


CHANGE = "_change"  # the column of a change read: 'upsert' or 'delete'
_OLD = "('update_preimage', 'delete')"
_NEW = "('insert', 'update_postimage')"


def read_changes(
    lake: Lake, plan: AccessPlan, *, secret: bytes, since: int, until: int
) -> pa.Table | None:
    """The net change of each row `plan` opens between versions `since` (excluded) and `until`.

    Per primary key: its image before the range (the first change's pre-image, if the key
    existed) and after it (the last change's post-image, unless deleted). A key whose image
    after is in the plan's rows is an 'upsert' with that image; one whose image before was in
    them and whose image after is not (deleted, or moved out of the row filter) is a 'delete'
    with the image before. No image outside the plan's rows is ever selected, and fields are
    projected and masked as `read_table` does. Rows come in primary-key order. None when the
    feed does not cover the range (the caller reads the whole version instead).
    """
    primary_key = list(plan.resource.primary_key)
    if not primary_key or any(c not in plan.visible for c in primary_key):
        raise plan.refusal(
            Invalid(
                "an incremental read needs the primary key among the fields shown",
                field="mode",
                code="no-key",
            )
        )
    feed = lake.change_feed(plan.code, since, until)
    if feed is None:
        return None
    all_columns = {f.name: kind_of(f.type) for f in feed.schema if not f.name.startswith("_")}
    if any(c not in all_columns for c in primary_key):
        return None
    selected = [n for n in plan.visible if n in all_columns]
    mask_key = pseudonym_key(secret, plan.consumer)
    keys = ", ".join(quote(c) for c in primary_key)
    new_params: list[Any] = []
    old_params: list[Any] = []
    new_where = (
        compile_node(plan.row_filter, all_columns, new_params) if plan.row_filter else "TRUE"
    )
    old_where = (
        compile_node(plan.row_filter, all_columns, old_params) if plan.row_filter else "TRUE"
    )
    projection = ", ".join(_select(plan, name, mask_key) for name in selected)
    # Per key, one hash aggregate (no sort): its first change — the earliest version, an
    # image before (pre-image, delete) ahead of one written in the same version — and its
    # last — the latest version, an image written ahead of one removed. The orders are packed
    # in one integer: version, then that flag, then the row's place in the feed (< 2^32).
    is_old = f"(_change_type IN {_OLD})::BIGINT"
    is_new = f"(_change_type IN {_NEW})::BIGINT"
    sql = f"""
        WITH ends AS (
            SELECT
                arg_min(__i, _commit_version * 8589934592 + (1 - {is_old}) * 4294967296 + __i)
                    AS __first,
                arg_max(__i, _commit_version * 8589934592 + {is_new} * 4294967296 + __i)
                    AS __last
            FROM feed GROUP BY {keys}
        ),
        n AS (SELECT feed.* FROM feed JOIN ends ON feed.__i = ends.__last
              WHERE _change_type IN {_NEW} AND ({new_where})),
        o AS (SELECT feed.*, ends.__last FROM feed JOIN ends ON feed.__i = ends.__first
              WHERE _change_type IN {_OLD} AND ({old_where})),
        picked AS (
            SELECT *, 'upsert' AS {quote(CHANGE)} FROM n
            UNION ALL
            SELECT * EXCLUDE (__last), 'delete' FROM o
            WHERE o.__last NOT IN (SELECT __i FROM n)
        )
        SELECT {projection}, {quote(CHANGE)} FROM picked ORDER BY {keys}
    """
    numbered = feed.append_column("__i", pa.array(range(feed.num_rows), pa.int64()))
    con = _duckdb().cursor()
    try:
        con.register("feed", numbered)
        return con.sql(sql, params=[*new_params, *old_params]).to_arrow_table()
    finally:
        con.close()


# A reject's reason without the row it points at ("duplicate primary key (first at row 3)"
# is the reason "duplicate primary key"): what the rejects of a load are grouped by.
REASON = r"regexp_replace(reason, ' \(first at row [0-9]+\)$', '')"


def reject_reasons(lake: Lake, plan: AccessPlan, *, load_id: int) -> list[tuple[str, int]]:
    """Each reason load `load_id` refused rows for (see `REASON`), with its count, most first.

    Counts reveal no value; the plan is asked for all the same, as for every read of rejects.
    """
    uri = lake.rejects_uri(plan.code)
    if not lake.is_table(uri):
        return []
    sql = (
        f"SELECT {REASON} AS kind, count(*) AS n FROM rejects WHERE load_id = ? "
        "GROUP BY kind ORDER BY n DESC, kind"
    )
    con = _duckdb().cursor()
    try:
        con.register("rejects", lake.dataset_at(uri))
        found = con.execute(sql, [load_id]).fetchall()
    finally:
        con.close()
    return [(str(kind), int(n)) for kind, n in found]


def read_rejects(
    lake: Lake,
    plan: AccessPlan,
    *,
    secret: bytes,
    load_id: int,
    limit: int,
    reason: str | None = None,
) -> pa.Table:
    """The records a load refused, as `plan` shows them: rejects are data, masked like rows.

    The raw record keeps only the fields the plan shows (masked where it masks them); a
    rule's field is named only when the plan shows that field. With `reason`, only the
    rejects of that reason (as `reject_reasons` names it).
    """
    uri = lake.rejects_uri(plan.code)
    if not lake.is_table(uri):
        return REJECTS_SCHEMA.empty_table()
    mask_key = pseudonym_key(secret, plan.consumer)
    items = []
    for name in plan.visible:
        raw = f"json_extract_string(record, {_literal(_pointer(name))})"
        spec = plan.masked.get(name)
        value = parse_mask(spec).sql(raw, key=mask_key) if spec else raw
        items.append(f"{_literal(name)}, {value}")
    record = f"json_object({', '.join(items)})::VARCHAR" if items else "'{}'"
    shown = ", ".join(_literal(n) for n in plan.visible) or "NULL"
    where = "load_id = ?"
    params: list[Any] = [load_id]
    if reason is not None:
        where, params = f"{where} AND {REASON} = ?", [load_id, reason]
    sql = (
        f"SELECT load_id, row_number, CASE WHEN field IN ({shown}) THEN field END AS field, "
        f"reason, {record} AS record FROM rejects WHERE {where} "
        "ORDER BY row_number, field LIMIT ?"
    )
    con = _duckdb().cursor()
    try:
        con.register("rejects", lake.dataset_at(uri))
        table = con.sql(sql, params=[*params, limit]).to_arrow_table()
    finally:
        con.close()
    return table.cast(REJECTS_SCHEMA)


def _pointer(name: str) -> str:
    """The JSON pointer (RFC 6901) of a top-level key: any name, Chinese or with quotes.

    (A `$."name"` path took `json.dumps(name)`, whose \\u escapes DuckDB does not read: every
    field with a Chinese name came back null.)
    """
    return "/" + name.replace("~", "~0").replace("/", "~1")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reader_secret(session: Any) -> bytes:
    """The node's secret for cursors and pseudonyms, derived from the node key the session carries."""
    from minyun.core.keys import NodeKey

    node_key = session.info.get("node_key")
    if not isinstance(node_key, NodeKey):
        raise ConfigError("no node key to sign cursors and pseudonyms with")
    return node_key.derive("reader")


def _names(text: str | None) -> list[str] | None:
    if not text or not text.strip():
        return None
    names = [part.strip() for part in text.split(",")]
    if len(set(names)) != len(names):
        duplicated = next(n for n in names if names.count(n) > 1)
        raise Invalid(f"field {duplicated!r} is listed twice", field="fields")
    return names


def _select(plan: AccessPlan, name: str, mask_key: bytes) -> str:
    """The select item of one field: the column, or its mask; a dropped field never comes."""
    spec = plan.masked.get(name)
    if spec is None:
        return quote(name)
    return f"{parse_mask(spec).sql(quote(name), key=mask_key)} AS {quote(name)}"


def _where(
    node: Node | None,
    row_filter: Node | None,
    clear: dict[str, str],
    all_columns: dict[str, str],
) -> tuple[str, list[Any]]:
    """The reader's filter (on clear fields) AND the plan's row filter (on any field)."""
    parts: list[str] = []
    params: list[Any] = []
    if node is not None:
        parts.append(compile_node(node, clear, params))
    if row_filter is not None:
        parts.append(compile_node(row_filter, all_columns, params))
    return (" AND ".join(parts) if parts else "TRUE"), params


def _pick_version(plan: AccessPlan, version: int | None, position: _Position | None) -> int:
    latest = plan.resource.lake_version
    if latest is None:
        raise NotFound(f"resource {plan.code} has no data yet")
    if position is not None:
        if version is not None and version != position.version:
            raise Invalid(
                f"the cursor reads version {position.version}; leave version out or match it",
                field="version",
            )
        version = position.version
    chosen = latest if version is None else version
    if not 0 <= chosen <= latest:
        raise NotFound(f"resource {plan.code} has no version {chosen}")
    return chosen


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


def _audit_keys(
    page: pa.Table, keys: list[tuple[str, bool]], primary_key: list[str]
) -> list[str] | None:
    """The primary-key values of the page's rows as text, for the audit record."""
    if page.num_rows > AUDIT_KEYS_UP_TO or not primary_key:
        return None
    names = page.column_names
    key_names = [name for name, _ in keys]
    columns = []
    for c in primary_key:
        alias = f"{KEY_PREFIX}{key_names.index(c)}" if c in key_names else f"__minyun_pk_{c}"
        columns.append(page.column(names.index(alias)).to_pylist())
    return key_texts(columns)


def key_texts(columns: list[list[Any]]) -> list[str]:
    """Rows' primary-key values as audit text: the value, or a JSON array for several."""
    if len(columns) == 1:
        return [str(v) for v in columns[0]]
    return [
        json.dumps(list(row), ensure_ascii=False, default=str) for row in zip(*columns, strict=True)
    ]


# --- cursors ---------------------------------------------------------------------------------


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
    if not isinstance(state, dict):
        raise bad
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
_schemas: OrderedDict[tuple[str, int], pa.Schema] = OrderedDict()
_lock = threading.Lock()


def _dataset(lake: Lake, code: str, version: int) -> ds.Dataset:
    """The resource's rows at `version`; a committed Delta version never changes, so it is cached."""
    key = (lake.table_uri(code), version)
    with _lock:
        if key in _datasets:
            _datasets.move_to_end(key)
            return _datasets[key]
    dataset = _text_as_views(lake.dataset(code, version=version))
    with _lock:
        _datasets[key] = dataset
        while len(_datasets) > DATASETS_CACHED:
            _datasets.popitem(last=False)
    return dataset


def _text_as_views(dataset: ds.Dataset) -> ds.Dataset:
    """The dataset with its text columns read as `string_view`.

    Files a merge (an upsert or delete load) wrote hold `string_view` columns, the others
    `string`; a filter DuckDB pushes into a dataset whose schema says `string` failed on the
    former (pyarrow has no `equal` of string and string_view). Declared as views, a pushed
    filter works on both, and DuckDB reads views as text like any string.
    """
    schema = dataset.schema
    if not any(pa.types.is_string(f.type) for f in schema):
        return dataset
    viewed = pa.schema(
        [f.with_type(pa.string_view()) if pa.types.is_string(f.type) else f for f in schema],
        metadata=schema.metadata,
    )
    if not isinstance(dataset, ds.FileSystemDataset):
        return dataset
    return ds.FileSystemDataset(
        list(dataset.get_fragments()), viewed, dataset.format, filesystem=dataset.filesystem
    )


def output_schema(lake: Lake, code: str, version: int) -> pa.Schema:
    """The Arrow schema a lake read returns (DuckDB's types) at `version`, cached."""
    key = (lake.table_uri(code), version)
    with _lock:
        if key in _schemas:
            _schemas.move_to_end(key)
            return _schemas[key]
    con = _duckdb().cursor()
    try:
        con.register("t", _dataset(lake, code, version))
        schema = con.sql("SELECT * FROM t LIMIT 0").to_arrow_table().schema
    finally:
        con.close()
    with _lock:
        _schemas[key] = schema
        while len(_schemas) > DATASETS_CACHED:
            _schemas.popitem(last=False)
    return schema


@lru_cache(maxsize=1)
def _duckdb() -> duckdb.DuckDBPyConnection:
    # One in-process database; each query takes a cursor of it (microseconds, where a new
    # database costs tens of milliseconds). Views registered on a cursor stay its own.
    return duckdb.connect(":memory:")
