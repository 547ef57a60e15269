"""Views of a lake version for open data: projection, row filter, aggregation — as planned.

An open dataset (`minyun.opendata`) is a `View` of one lake version of a resource: some
fields, a row filter, and optionally an aggregation (group by fields, count / sum / avg /
min / max, groups smaller than `min_group` suppressed). This module is its only reader:
the rows come from the resource's Delta table through the reader's `AccessPlan`, whose
fields, treatments and row filter are applied inside DuckDB's query before the view's. A
view never reaches a field the plan drops; a field the plan opens for aggregates only
(`Treatment.AGGREGATE`, above public sensitivity) is usable only in count / sum / avg over
groups of at least `MIN_GROUP` rows.

Three reads: `search` (CKAN's datastore_search: filters, q, fields, sort, paging, total),
`stream` (a download: record batches, never the whole table in memory) and `run_sql`
(datastore_search_sql: a read-only SELECT over views, checked with sqlglot and run in a
DuckDB database with no file access, within a time and row limit).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from minyun.core.errors import Forbidden, Invalid
from minyun.core.filters import compile_node, kind_of, parse_filter, quote
from minyun.core.policies import AccessPlan, filter_fields

if TYPE_CHECKING:
    from minyun.core.lake import Lake

MIN_GROUP = 5  # the smallest group an aggregate over a field above public may describe
AGGREGATES = ("count", "sum", "avg", "min", "max")
HIDDEN_VALUE_AGGREGATES = ("count", "sum", "avg")  # min / max would return one row's value
MAX_SEARCH_LIMIT = 32_000  # CKAN's own datastore_search ceiling
SQL_ROW_LIMIT = 32_000
SQL_TIMEOUT_S = 10.0
MAX_SQL_LENGTH = 10_000
_NAME = re.compile(r"^[^\W\d]\w{0,62}$")


@dataclass(frozen=True)
class Aggregate:
    """One aggregate column of a view: `fn(field)` as `name` (`field` None: count(*))."""

    fn: str
    field: str | None
    name: str


@dataclass(frozen=True)
class View:
    """What an open dataset shows of its resource's rows."""

    fields: tuple[str, ...]  # projected fields, or the group-by fields when aggregating
    row_filter: str | None = None  # in the query filter language
    aggregates: tuple[Aggregate, ...] = ()
    min_group: int = 1

    @property
    def columns(self) -> list[str]:
        return [*self.fields, *(a.name for a in self.aggregates)]


def check(plan: AccessPlan, view: View) -> None:
    """Refuse a view that reaches beyond the plan (the release check's last word, in core)."""
    clear = plan.clear
    for name in view.fields:
        if name not in clear:
            raise plan.refusal(Forbidden(f"{name} is not open in clear", code="field-not-open"))
    node = parse_filter(view.row_filter or "")
    for name in filter_fields(node):
        if name not in clear:
            raise plan.refusal(Forbidden(f"{name} is not open in clear", code="field-not-open"))
    names = set(view.fields)
    for agg in view.aggregates:
        if agg.fn not in AGGREGATES:
            raise Invalid(f"unknown aggregate {agg.fn!r}", field="aggregates")
        if not _NAME.match(agg.name) or agg.name in names:
            raise Invalid(f"aggregate name {agg.name!r} is not usable", field="aggregates")
        names.add(agg.name)
        if agg.field is None:
            if agg.fn != "count":
                raise Invalid(f"{agg.fn} needs a field", field="aggregates")
            continue
        if agg.field in clear:
            continue
        if agg.field not in plan.aggregated:
            raise plan.refusal(Forbidden(f"{agg.field} is not open", code="field-not-open"))
        if agg.fn not in HIDDEN_VALUE_AGGREGATES or view.min_group < MIN_GROUP:
            raise plan.refusal(
                Forbidden(
                    f"{agg.field} is above public: only count, sum and avg over groups of "
                    f"at least {MIN_GROUP} rows",
                    code="field-not-open",
                )
            )


def literal(value: Any) -> str:
    """A SQL literal of a filter value (the views of `run_sql` take no parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | Decimal):
        return repr(value) if not isinstance(value, Decimal) else str(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def _inline(sql: str, params: Sequence[Any]) -> str:
    """`sql` with its `?` parameters written as literals (the compiler emits `?` only outside
    string literals, and quoted names never hold one)."""
    parts = sql.split("?")
    if len(parts) != len(params) + 1:
        raise Invalid("the view's filter could not be compiled", field="row_filter")
    out = [parts[0]]
    for value, rest in zip(params, parts[1:], strict=True):
        out += [literal(value), rest]
    return "".join(out)


def relation(plan: AccessPlan, view: View, columns: Mapping[str, str], source: str) -> str:
    """The SQL of the view over `source` (the resource's rows), the plan applied first."""
    check(plan, view)
    params: list[Any] = []
    parts = []
    if plan.row_filter is not None:
        parts.append(compile_node(plan.row_filter, columns, params))
    node = parse_filter(view.row_filter or "")
    if node is not None:
        parts.append(compile_node(node, columns, params))
    where = _inline(" AND ".join(parts) or "TRUE", params)
    if not view.aggregates:
        projection = ", ".join(quote(n) for n in view.fields) or "NULL AS none"
        return f"SELECT {projection} FROM {source} WHERE {where}"
    items = [quote(n) for n in view.fields]
    for agg in view.aggregates:
        inner = "*" if agg.field is None else quote(agg.field)
        items.append(f"{agg.fn}({inner}) AS {quote(agg.name)}")
    group = ", ".join(quote(n) for n in view.fields)
    sql = f"SELECT {', '.join(items)} FROM {source} WHERE {where}"
    if group:
        sql += f" GROUP BY {group}"
    if view.min_group > 1:
        sql += f" HAVING count(*) >= {int(view.min_group)}"
    return sql


@dataclass(frozen=True)
class Scan:
    """How a query reads a resource's version: DuckDB's own Parquet reader over the version's
    files when the table allows it (no deletion vectors, column mapping or partitions), else
    the Arrow dataset of the version (registered on the cursor)."""

    files: tuple[str, ...] | None
    dataset: Any
    columns: dict[str, str]

    def source(self, con: duckdb.DuckDBPyConnection, name: str) -> str:
        """The FROM item of the rows (registering the Arrow dataset as `name` if needed)."""
        if self.files is not None:
            paths = ", ".join(literal(f) for f in self.files)
            return f"read_parquet([{paths}], union_by_name = true)"
        con.register(name, self.dataset)
        return quote(name)


_files: OrderedDict[tuple[str, int], tuple[str, ...] | None] = OrderedDict()
_files_lock = threading.Lock()
_PLAIN_READERS = frozenset({"timestampNtz"})


def _version_files(lake: Lake, code: str, version: int) -> tuple[str, ...] | None:
    """The Parquet files of a committed version (it never changes: cached), or None when they
    cannot be read as plain Parquet."""
    key = (lake.table_uri(code), version)
    with _files_lock:
        if key in _files:
            _files.move_to_end(key)
            return _files[key]
    table = lake.table(code, version=version)
    features = set(table.protocol().reader_features or ())
    local = "://" not in lake.uri or lake.uri.startswith("file://")
    plain = local and not table.metadata().partition_columns and features <= _PLAIN_READERS
    files = tuple(table.file_uris()) if plain else None
    if files is not None and not files:
        files = None  # an empty table: read_parquet takes no empty list
    with _files_lock:
        _files[key] = files
        while len(_files) > 64:
            _files.popitem(last=False)
    return files


def _scan(lake: Lake, plan: AccessPlan, version: int) -> Scan:
    from minyun.core.reading import _dataset

    dataset = _dataset(lake, plan.code, version)
    columns = {f.name: kind_of(f.type) for f in dataset.schema}
    return Scan(_version_files(lake, plan.code, version), dataset, columns)


@dataclass(frozen=True)
class SearchResult:
    table: pa.Table
    total: int | None
    columns: dict[str, str]  # every column of the view: its kind


def schema(lake: Lake, plan: AccessPlan, view: View, *, version: int) -> pa.Schema:
    """The Arrow schema of the view's rows at `version`."""
    scan = _scan(lake, plan, version)
    con = _engine().cursor()
    try:
        body = relation(plan, view, scan.columns, scan.source(con, "t"))
        return con.sql(body + " LIMIT 0").to_arrow_table().schema
    finally:
        con.close()


def search(
    lake: Lake,
    plan: AccessPlan,
    view: View,
    *,
    version: int,
    filters: Mapping[str, Any] | None = None,
    q: str | Mapping[str, str] | None = None,
    fields: Sequence[str] | None = None,
    sort: Sequence[tuple[str, bool]] = (),
    limit: int = 100,
    offset: int = 0,
    total: bool = True,
) -> SearchResult:
    """One page of the view's rows (CKAN datastore_search): equality filters (a list is IN),
    text search in every text column (or per field), fields, sort, limit, offset, total."""
    if not 0 <= limit <= MAX_SEARCH_LIMIT:
        raise Invalid(f"limit must be between 0 and {MAX_SEARCH_LIMIT}", field="limit")
    if offset < 0:
        raise Invalid("offset must not be negative", field="offset")
    scan = _scan(lake, plan, version)
    con = _engine().cursor()
    try:
        base = relation(plan, view, scan.columns, scan.source(con, "t"))
        kinds = {
            f.name: kind_of(f.type) for f in con.sql(base + " LIMIT 0").to_arrow_table().schema
        }
        wanted = list(fields) if fields else list(kinds)
        for name in [*wanted, *(filters or {}), *(n for n, _ in sort)]:
            if name not in kinds:
                raise Invalid(f"unknown field {name!r}", field="fields")
        where, params = _search_where(kinds, filters or {}, q)
        order = ", ".join(f"{quote(n)} {'DESC' if d else 'ASC'} NULLS LAST" for n, d in sort)
        body = f"FROM ({base}) v WHERE {where}"
        sql = f"SELECT {', '.join(quote(n) for n in wanted)} {body}"
        sql += f" ORDER BY {order}" if order else ""
        sql += " LIMIT ? OFFSET ?"
        table = con.sql(sql, params=[*params, limit, offset]).to_arrow_table()
        count = None
        if total:
            found = con.execute(f"SELECT count(*) {body}", params).fetchone()
            count = int(found[0]) if found else 0
        return SearchResult(table, count, kinds)
    finally:
        con.close()


def _search_where(
    kinds: Mapping[str, str], filters: Mapping[str, Any], q: str | Mapping[str, str] | None
) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for name, value in filters.items():
        values = value if isinstance(value, list) else [value]
        if not values or len(values) > 500:
            raise Invalid(f"filter {name} needs 1 to 500 values", field="filters")
        for v in values:
            if not isinstance(v, str | int | float | bool):
                raise Invalid(f"filter {name} takes text, numbers or true/false", field="filters")
        marks = ", ".join("?" for _ in values)
        typed = _typed(kinds[name], values)
        if typed is None:
            # Compared as text, as CKAN's filters are given (as JSON strings or numbers).
            parts.append(f"CAST({quote(name)} AS VARCHAR) IN ({marks})")
            params += [_text(v) for v in values]
        else:  # the column itself: the scan can skip files and row groups
            parts.append(f"{quote(name)} IN ({marks})")
            params += typed
    if isinstance(q, str) and q.strip():
        texts = [n for n, k in kinds.items() if k == "string"]
        if texts:
            for term in q.split()[:10]:
                hay = " || ' ' || ".join(f"coalesce({quote(n)}, '')" for n in texts)
                parts.append(f"contains(lower({hay}), lower(?))")
                params.append(term)
        else:
            parts.append("FALSE")
    elif isinstance(q, Mapping):
        for name, term in q.items():
            if name not in kinds:
                raise Invalid(f"unknown field {name!r}", field="q")
            parts.append(f"contains(lower(CAST({quote(name)} AS VARCHAR)), lower(?))")
            params.append(str(term))
    return (" AND ".join(parts) or "TRUE"), params


def _typed(kind: str, values: Sequence[Any]) -> list[Any] | None:
    """The filter values as the column's own type, when each converts exactly; else None."""
    try:
        if kind == "string" and all(isinstance(v, str) for v in values):
            return list(values)
        if kind == "integer" and not any(isinstance(v, bool | float) for v in values):
            return [int(v) for v in values]
        if kind == "date" and all(isinstance(v, str) for v in values):
            return [date.fromisoformat(v) for v in values]
    except ValueError:
        return None
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stream(
    lake: Lake, plan: AccessPlan, view: View, *, version: int, batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """The view's rows as record batches, read as they are sent (a download of any size)."""
    scan = _scan(lake, plan, version)
    con = _engine().cursor()
    try:
        body = relation(plan, view, scan.columns, scan.source(con, "t"))
        reader = con.sql(body).fetch_record_batch(batch_rows)
        yield from reader
    finally:
        con.close()


def count(lake: Lake, plan: AccessPlan, view: View, *, version: int) -> int:
    """How many rows the view has at `version`."""
    scan = _scan(lake, plan, version)
    con = _engine().cursor()
    try:
        body = relation(plan, view, scan.columns, scan.source(con, "t"))
        found = con.execute(f"SELECT count(*) FROM ({body})").fetchone()
        return int(found[0]) if found else 0
    finally:
        con.close()


# --- datastore_search_sql --------------------------------------------------------------------

# Functions that reach outside the query's tables (files, settings, the catalog of the engine).
_DENIED_FUNCTIONS = re.compile(
    r"^(read_|scan_|glob|sniff|parquet_|delta_|iceberg_|duckdb_|pragma_|sqlite_|postgres_|"
    r"mysql_|query|getenv|current_setting|set_|load|install|system|which_secret|"
    r"arrow_scan|checkpoint|json_execute|summary|test_|enable_|disable_)",
    re.IGNORECASE,
)
_DENIED_NODES = (
    exp.Placeholder,
    exp.Parameter,
    exp.Into,
    exp.Lateral,
)


@dataclass(frozen=True)
class SqlTable:
    """One open view a SQL query may name: the plan of its read, the view, the version."""

    plan: AccessPlan
    view: View
    version: int


@dataclass(frozen=True)
class SqlResult:
    table: pa.Table
    truncated: bool
    tables: tuple[str, ...]  # the names the query read


def referenced(sql: str) -> list[str]:
    """The table names a query reads (checked: one SELECT, nothing but named tables)."""
    if len(sql) > MAX_SQL_LENGTH:
        raise Invalid(f"the query is longer than {MAX_SQL_LENGTH} characters", field="sql")
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.errors.ParseError as exc:
        raise Invalid(
            f"the query could not be parsed: {str(exc).splitlines()[0]}", field="sql"
        ) from None
    if len(statements) != 1:
        raise Invalid("give exactly one SELECT statement", field="sql")
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.Union | exp.Intersect | exp.Except):
        raise Invalid("only SELECT statements are allowed", field="sql")
    for node in tree.walk():
        if isinstance(node, _DENIED_NODES):
            raise Invalid("the query uses a construct that is not allowed", field="sql")
        if isinstance(node, exp.Func):
            name = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            if _DENIED_FUNCTIONS.match(name or ""):
                raise Invalid(f"function {name} is not allowed", field="sql")
        if isinstance(node, exp.Command | exp.DDL | exp.DML):
            raise Invalid("only SELECT statements are allowed", field="sql")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    names: list[str] = []
    for table in tree.find_all(exp.Table):
        if (
            not isinstance(table.this, exp.Identifier)
            or table.args.get("db")
            or table.args.get("catalog")
        ):
            raise Invalid("only the open datasets can be queried, by name", field="sql")
        if table.name in ctes:
            continue
        if table.name not in names:
            names.append(table.name)
    return names


def run_sql(
    lake: Lake,
    sql: str,
    tables: Mapping[str, SqlTable],
    *,
    row_limit: int = SQL_ROW_LIMIT,
    timeout_s: float = SQL_TIMEOUT_S,
) -> SqlResult:
    """A read-only query over open views (the names of `tables`); anything else is refused.

    The query runs in a DuckDB database of its own that may read only the Parquet files of the
    named views' versions (`allowed_paths`), nothing else, with its configuration locked; each
    named table is a temporary view over its resource's rows with the reader's plan and the
    dataset's view applied. The check above lets the query name only `tables`' names, so the
    files themselves are out of its reach (no read_parquet, no quoted paths).
    """
    names = referenced(sql)
    for name in names:
        if name not in tables:
            raise Invalid(f"{name!r} is not an open dataset", field="sql")
    scans = {name: _scan(lake, tables[name].plan, tables[name].version) for name in names}
    readable = sorted({f for scan in scans.values() for f in scan.files or ()})
    con = _sql_engine(readable)
    timer = threading.Timer(timeout_s, con.interrupt)
    try:
        for name in names:
            entry, scan = tables[name], scans[name]
            source = scan.source(con, f"__src_{secrets.token_hex(8)}")
            body = relation(entry.plan, entry.view, scan.columns, source)
            con.execute(f"CREATE TEMP VIEW {quote(name)} AS {body}")
        timer.start()
        try:
            result = con.sql(
                f"SELECT * FROM ({sql.strip().rstrip(';')}) LIMIT {int(row_limit) + 1}"
            ).to_arrow_table()
        except duckdb.InterruptException:
            raise Invalid(f"the query ran longer than {timeout_s:g} s", field="sql") from None
        except duckdb.Error as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else "error"
            raise Invalid(f"the query failed: {message}", field="sql") from None
    finally:
        timer.cancel()
        con.close()
    truncated = result.num_rows > row_limit
    return SqlResult(result.slice(0, row_limit), truncated, tuple(names))


@lru_cache(maxsize=1)
def _engine() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def _sql_engine(readable: Sequence[str]) -> duckdb.DuckDBPyConnection:
    """A connection of its own for one reader's SQL, to a database that may read no file but
    `readable` (the Parquet files of the views it names), no network, settings locked.

    The database is kept per set of files (opening one and locking it costs tens of
    milliseconds, more than a GROUP BY over a million rows); each query has its own connection
    (`cursor`), so its temporary views are its own and vanish when it closes.
    """
    return _sql_database(tuple(sorted(readable))).cursor()


@lru_cache(maxsize=32)
def _sql_database(readable: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    if readable:
        con.execute(f"SET allowed_paths = [{', '.join(literal(f) for f in readable)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con
