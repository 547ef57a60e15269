"""Row validation as DuckDB SQL: one boolean expression per rule, never a Python loop per row.

`Checks` turns a TableSchema into SQL over the source rows (`src`, the columns as they
came, and, where rejects are reported, the source row number `__row`): the typed value of
each field, each rule as a (field, reason, condition) triple, the row check `ok()` used
while writing, the duplicate-key joins (over typed keys), and the aggregate query of the
quality report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from minyun.core import identifiers
from minyun.core.errors import Invalid
from minyun.core.tableschema import SQL_TYPES, Field, TableSchema, constant_sql
from minyun.ingest.sources import ROW

CODE_TABLES = {"GB/T 2260", "divisions"}
EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
# Columns `Checks.wrap` adds to a source: a field's typed value, an identity number's digits.
TYPED = "__minyun_t"
# The widest range of integer keys checked for repeats with a bitmap (2**27 bits = 16 MiB).
BITMAP_MAX = 1 << 27
DIGITS = "__minyun_d"
NUMBER = "__minyun_n"
WHOLE = "__minyun_w"  # an integer's cast, before `Checks.wrap` makes sure it lost nothing


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: object) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Rule:
    field: str
    reason: str
    condition: str  # true when the row breaks the rule; never null
    holds: str | None = None  # for a rule on the typed value: true when kept, null for null


class Checks:
    """The SQL of one load's validation, for the fields this load checks."""

    def __init__(self, schema: TableSchema, *, key_only: bool = False) -> None:
        self.schema = schema
        self.fields = [f for f in schema.fields if not key_only or f.name in schema.primary_key]
        self.rules: list[Rule] = []
        self.row_rules: list[Rule] = []  # the rules a row can break on its own
        self.dup_tables: list[tuple[str, list[str]]] = []  # (alias, columns)
        for f in self.fields:
            self.rules.extend(self._field_rules(f))
        self.row_rules = list(self.rules)
        unique_sets = [[f.name] for f in self.fields if f.unique and not key_only]
        if schema.primary_key:
            unique_sets.insert(0, list(schema.primary_key))
        for n, cols in enumerate(unique_sets):
            alias = f"__dup{n}"
            self.dup_tables.append((alias, cols))
            label = "primary key" if n == 0 and schema.primary_key else "value"
            self.rules.append(
                Rule(
                    ",".join(cols),
                    f"duplicate {label} (first at row ' || {alias}.first || ')",
                    f"coalesce({alias}.first <> src.{ROW}, false)",
                )
            )

    def cast(self, f: Field) -> str:
        """The field's value in its lake type, from the raw column; null if not convertible.

        For an integer or a year this is only the first step: DuckDB's cast rounds 1.5 to
        2 and reads 0x10 as hexadecimal, which `wrap` then refuses.
        """
        raw = f"src.{q(f.name)}"
        if f.type == "string":
            return f"CAST({raw} AS VARCHAR)"
        return f"TRY_CAST({raw} AS {SQL_TYPES[f.type]})"

    def typed(self, f: Field) -> str:
        """The field's typed value as a column of a `wrap`ped source (computed there once)."""
        return f"src.{q(TYPED + str(self.schema.names.index(f.name)))}"

    def wrap(self, source: str, columns: list[str], *, lake_types: bool = False) -> str:
        """A FROM item: `source` with every field's typed value (and check helpers) added.

        `lake_types`: the columns already hold their lake types (a committed version, read back
        by the quality report): each is its own typed value, and the rules are the same.

        Each cast is evaluated once per row here; the rules and the select list refer to
        the columns (DuckDB does not reliably share a cast repeated across expressions,
        and the GB 11643 digits are used by seventeen terms). What is derived from a cast
        is computed a level above it, so the cast is not repeated:

        - an integer's or a year's value is kept only when it equals the value read as a
          number: 1.5 and 0x10 are refused, 3.0 and 1e3 are the whole numbers they say;
        - an identity number's helpers are its 18 characters as a number, and its first
          17 digits taken from that number (from the characters only when the last is not
          a digit).
        """
        casts, derived = [], []
        for i, f in enumerate(self.schema.fields):
            if f.name not in columns:
                continue
            typed = q(TYPED + str(i))
            if lake_types:
                casts.append(f"src.{q(f.name)} AS {typed}")
            elif f.type in ("integer", "year"):
                whole = q(WHOLE + str(i))
                casts.append(f"{self.cast(f)} AS {whole}")
                derived.append(
                    f"CASE WHEN src.{whole} = TRY_CAST(src.{q(f.name)} AS DOUBLE) "
                    f"THEN src.{whole} END AS {typed}"
                )
            else:
                casts.append(f"{self.cast(f)} AS {typed}")
            if f.format == "cn-ric":
                number, digits = q(NUMBER + str(i)), q(DIGITS + str(i))
                casts.append(f"TRY_CAST({self.cast(f)} AS BIGINT) AS {number}")
                first17 = f"substr(src.{typed}, 1, {len(identifiers.RIC_WEIGHTS)})"
                derived.append(
                    f"coalesce(src.{number} // 10, TRY_CAST({first17} AS BIGINT)) AS {digits}"
                )
        if not casts:
            return source
        wrapped = f"(SELECT *, {', '.join(casts)} FROM {source} AS src)"
        if derived:
            wrapped = f"(SELECT *, {', '.join(derived)} FROM {wrapped} AS src)"
        return wrapped

    def _field_rules(self, f: Field) -> list[Rule]:
        raw = f"src.{q(f.name)}"
        t = self.typed(f)
        rules: list[Rule] = []
        required = f.required or f.name in self.schema.primary_key
        if required:
            rules.append(Rule(f.name, "required", f"{raw} IS NULL"))
        if f.type != "string":
            rules.append(
                Rule(f.name, f"not a valid {f.type}", f"({raw} IS NOT NULL AND {t} IS NULL)")
            )

        def value(reason: str, holds: str) -> None:
            # A rule on the typed value: `holds` is true when it is kept, null for null.
            rules.append(Rule(f.name, reason, f"coalesce(NOT ({holds}), false)", holds))

        text = f"CAST({t} AS VARCHAR)"
        if f.type == "year":
            value("not a year", f"{t} BETWEEN 0 AND 9999")
        if f.enum is not None:
            values = ", ".join(self._value(f, v) for v in f.enum)
            value("not one of the allowed values", f"{t} IN ({values})")
        codes = _codelist(f)
        if codes is not None:
            value("not in the code list", f"{text} IN ({', '.join(lit(v) for v in codes)})")
        if f.pattern is not None:
            value("does not match the pattern", f"regexp_full_match({text}, {lit(f.pattern)})")
        if f.minimum is not None:
            value(f"below the minimum {f.minimum}", f"{t} >= {self._value(f, f.minimum)}")
        if f.maximum is not None:
            value(f"above the maximum {f.maximum}", f"{t} <= {self._value(f, f.maximum)}")
        if f.min_length is not None:
            value(f"shorter than {f.min_length}", f"length({text}) >= {int(f.min_length)}")
        if f.max_length is not None:
            value(f"longer than {f.max_length}", f"length({text}) <= {int(f.max_length)}")
        if f.format == "cn-ric":
            i = self.schema.names.index(f.name)
            number, digits = f"src.{q(NUMBER + str(i))}", f"src.{q(DIGITS + str(i))}"
            check = _fast_ric_sql(f.name, number, digits).replace(q(f.name), t)
            value("not a valid identity number (GB 11643)", check)
        elif f.format == "cn-uscc":
            check = identifiers.uscc_check_sql(f.name).replace(q(f.name), t)
            value("not a valid credit code (GB 32100)", check)
        elif f.format == "email":
            value("not an e-mail address", f"regexp_full_match({t}, {lit(EMAIL)})")
        return rules

    def field_ok(self, f: Field) -> str | None:
        """True when field `f` of a row breaks none of its rules (None: it has none).

        The same as NOT (any of its rules), in fewer terms: the value rules hold, or, where
        the typed value is null, the raw value is null and the field is not required.
        """
        raw, t = f"src.{q(f.name)}", self.typed(f)
        required = f.required or f.name in self.schema.primary_key
        holds = [r.holds for r in self.row_rules if r.field == f.name and r.holds]
        if holds:
            return f"coalesce({' AND '.join(holds)}, {'false' if required else f'{raw} IS NULL'})"
        if f.type != "string":
            return f"{t} IS NOT NULL" if required else f"({t} IS NOT NULL OR {raw} IS NULL)"
        return f"{raw} IS NOT NULL" if required else None

    def _value(self, f: Field, value: Any) -> str:
        return constant_sql(f, value)

    # --- queries over the source rows ---

    def key_fields(self) -> list[str]:
        """The columns of every unique set (primary key first), each once."""
        seen: list[str] = []
        for _, cols in self.dup_tables:
            seen.extend(c for c in cols if c not in seen)
        return seen

    def ok(self) -> str:
        """True for a row that breaks none of the rules a row can break on its own.

        Equal to NOT bad(dups=False), written one term per field (see `field_ok`): this
        expression runs on every row of every load, so its size is the validation's cost.
        """
        terms = [t for f in self.fields if (t := self.field_ok(f)) is not None]
        return " AND ".join(terms) if terms else "true"

    def select_typed(self, *, keys_only: bool = False) -> str:
        """The select list of the lake columns, typed, over `src`."""
        fields = self.fields if keys_only else self.schema.fields
        return ", ".join(f"{self.typed(f)} AS {q(f.name)}" for f in fields)

    def from_clause(self, source: str, *, dups: bool = True) -> str:
        """`source` (a FROM item yielding `src`) joined to the first rows of duplicated keys."""
        joins = []
        if dups:
            for alias, cols in self.dup_tables:
                on = " AND ".join(
                    f"{alias}.{q(c)} = {self.typed(self.schema.field(c))}" for c in cols
                )
                joins.append(f" LEFT JOIN {alias} ON {on}")
        return f"{source} AS src" + "".join(joins)

    def dup_views(self, source: str) -> list[str]:
        """CREATE statements for the typed keys that occur more than once, with their first row."""
        statements = []
        for alias, cols in self.dup_tables:
            keys = ", ".join(f"{self.typed(self.schema.field(c))} AS {q(c)}" for c in cols)
            groups = ", ".join(str(i + 1) for i in range(len(cols)))
            not_null = " AND ".join(f"{self.typed(self.schema.field(c))} IS NOT NULL" for c in cols)
            statements.append(
                f"CREATE OR REPLACE TEMP TABLE {alias} AS SELECT {keys}, min(src.{ROW}) AS first "
                f"FROM {source} AS src WHERE {not_null} "
                f"GROUP BY {groups} HAVING count(*) > 1"
            )
        return statements

    def dup_count_query(
        self, files: str, bounds: dict[str, tuple[int, int]] | None = None
    ) -> str | None:
        """How many written rows repeat a typed key value of an earlier one, over Parquet `files`.

        `bounds` gives the smallest and largest value of integer columns (from the written
        files' statistics): a one-column integer key within a small enough range is counted
        with a bitmap (`bitstring_agg`), which DuckDB fills in one cheap pass, instead of a
        hash table of every key.
        """
        if not self.dup_tables:
            return None
        parts = []
        for _, cols in self.dup_tables:
            not_null = " AND ".join(f"{q(c)} IS NOT NULL" for c in cols)
            low, high = (bounds or {}).get(cols[0], (0, -1))
            if len(cols) == 1 and 0 < high - low + 1 <= BITMAP_MAX:
                distinct = f"bit_count(bitstring_agg({q(cols[0])}, {low}, {high}))"
            else:
                key = q(cols[0]) if len(cols) == 1 else "row(" + ", ".join(q(c) for c in cols) + ")"
                distinct = f"count(DISTINCT {key})"
            parts.append(
                f"(SELECT count(*) - {distinct} FROM read_parquet({files}) WHERE {not_null})"
            )
        return "SELECT " + " + ".join(parts)

    def bad(self, *, dups: bool = True) -> str:
        """True for a row that breaks any rule."""
        rules = self.rules if dups else self.row_rules
        if not rules:
            return "false"
        return "(" + " OR ".join(r.condition for r in rules) + ")"

    def rejects_query(
        self, source: str, load_id: int, raw_columns: list[str], *, dups: bool = True
    ) -> str:
        """One row per broken rule: load_id, row_number, field, reason, record (JSON text)."""
        rules = self.rules if dups else self.row_rules
        parts = ", ".join(
            f"CASE WHEN {r.condition} THEN {{'field': {lit(r.field)}, 'reason': '{r.reason}'}} END"
            for r in rules
        )
        record = ", ".join(f"{lit(c)}: src.{q(c)}" for c in raw_columns)
        inner = (
            f"SELECT src.{ROW} AS row_number, to_json({{{record}}})::VARCHAR AS record, "
            f"list_filter([{parts}], lambda x: x IS NOT NULL) AS errors "
            f"FROM {self.from_clause(source, dups=dups)} WHERE {self.bad(dups=dups)}"
        )
        return (
            f"SELECT CAST({load_id} AS BIGINT) AS load_id, row_number, e.field AS field, "
            f"e.reason AS reason, record FROM ({inner}), unnest(errors) AS u(e) "
            "ORDER BY row_number"
        )


def _fast_ric_sql(name: str, number: str, digits: str) -> str:
    """identifiers.ric_check_sql computed with integer arithmetic; null for null.

    `number` is a column holding `TRY_CAST(value AS BIGINT)`, and `digits` one holding the
    first 17 digits as a BIGINT (`number // 10`, or the first 17 characters cast when
    `number` is null, as it is for a trailing X), both computed once per row by
    `Checks.wrap`. Arithmetic replaces the reference's regular expression, character list
    and date parse, which were most of the cost of a load of identity numbers:

    - the shape: the value must be exactly the decimal text of `number` (or of `digits`
      followed by X), which rules out the signs, spaces, separators, exponents and hex
      prefixes a cast accepts; the region ranges then make it 18 characters;
    - the check character: the weighted sum s, whose check value (12 - s % 11) % 11 must
      be the last digit, or 10 for X; for the sum, digit k (from the right) of a number x
      is p(k) - 10 p(k+1) with p(k) = x // 10^k, so sum(w_k digit_k) = w_0 p(0) +
      sum((w_k - 10 w_(k-1)) p(k)), taken mod 11 on each coefficient: one division per
      digit instead of a division and a remainder; done on the last 9 and the first 8
      digits apart, as DOUBLE (exact below 2**53, and DuckDB's floating-point arithmetic
      has no overflow check per value, so it is about three times faster than BIGINT);
    - the birth date (characters 7-14) as the integer YYYYMMDD: month 1-12, day within its
      month (Gregorian leap years), between the earliest birth date and today;
    - the region as the first two digits in ranges of the province codes (plus, where the
      code table has them, the six-digit codes outside those provinces).
    """
    col = q(name)
    weights = identifiers.RIC_WEIGHTS  # left to right; weight of digit k from the right: [16 - k]
    lo = f"CAST({digits} % 1000000000 AS DOUBLE)"
    hi = f"CAST({digits} // 1000000000 AS DOUBLE)"
    total = f"CAST({_digit_sum(lo, weights[8:])} + {_digit_sum(hi, weights[:8])} AS BIGINT)"
    check = f"coalesce({number} % 10, 10) = (12 - {total} % 11) % 11"
    shape = (
        f"CASE WHEN {number} IS NOT NULL THEN CAST({number} AS VARCHAR) = {col} "
        f"ELSE CAST({digits} AS VARCHAR) || 'X' = {col} END"
    )
    ymd = f"(({digits} // 1000) % 100000000)"
    y, m, d = f"({ymd} // 10000)", f"(({ymd} // 100) % 100)", f"({ymd} % 100)"
    leap = f"(({y} % 4 = 0 AND {y} % 100 <> 0) OR {y} % 400 = 0)"
    days = (
        f"CASE WHEN {m} = 2 THEN CASE WHEN {leap} THEN 29 ELSE 28 END "
        f"WHEN {m} IN (4, 6, 9, 11) THEN 30 ELSE 31 END"
    )
    today = "(year(current_date) * 10000 + month(current_date) * 100 + day(current_date))"
    low = identifiers.RIC_MIN_BIRTH
    birth = (
        f"coalesce({ymd} BETWEEN {low:%Y%m%d} AND {today} AND {m} BETWEEN 1 AND 12 "
        f"AND {d} BETWEEN 1 AND {days}, false)"
    )
    province = f"({digits} // 1000000000000000)"
    spans = " OR ".join(
        f"{province} BETWEEN {a} AND {b}" for a, b in _runs(identifiers.PROVINCE_CODES)
    )
    outside = identifiers._listed_regions(None, strict=False)
    region = f"({spans}" + (
        f" OR substr({col}, 1, 6) IN ({', '.join(lit(c) for c in outside)}))" if outside else ")"
    )
    return identifiers._null_guard(col, f"{check} AND {shape} AND {birth} AND {region}")


def _digit_sum(number: str, weights: tuple[int, ...]) -> str:
    """SQL for a value congruent mod 11 to sum(weights[i] * digit i of `number`), digits left to right.

    `number` is a DOUBLE holding a whole number of at most len(weights) digits; p(k) is
    floor(number / 10^k), exact for numbers this small (see _fast_ric_sql).
    """
    right = weights[::-1]  # right[k]: weight of digit k from the right
    terms = []
    for k, w in enumerate(right):
        coef = (w - 10 * right[k - 1]) % 11 if k else w % 11
        if coef:
            p = number if k == 0 else f"floor({number} / {10**k}.0)"
            terms.append(f"{p} * {coef}")
    return "(" + " + ".join(terms) + ")"


def _runs(codes: frozenset[str]) -> list[tuple[int, int]]:
    """Sorted two-digit codes as inclusive ranges of consecutive numbers."""
    runs: list[list[int]] = []
    for n in sorted(int(c) for c in codes):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return [(a, b) for a, b in runs]


def _codelist(f: Field) -> list[str] | None:
    if f.codelist is None:
        return None
    if isinstance(f.codelist, list):
        return f.codelist
    if f.codelist in CODE_TABLES:
        return sorted(identifiers.division_codes())
    raise Invalid(f"field {f.name!r}: unknown code list {f.codelist!r}", field=f.name)


WITHHELD = frozenset({"sensitive", "secret"})


def _withheld(f: Field) -> bool:
    # The quality report is shown to every reader of the catalog: a minimum or maximum of
    # a sensitive field would be a real person's identity number, so none is computed.
    return f.sensitivity in WITHHELD


def unique_sets(schema: TableSchema) -> list[tuple[str, list[str]]]:
    """The sets of fields whose values must not repeat: the primary key, each unique field."""
    sets = [("primary key", list(schema.primary_key))] if schema.primary_key else []
    return sets + [("unique", [f.name]) for f in schema.fields if f.unique]


@dataclass(frozen=True)
class Settled:
    """What the loads of a version already checked on every row of it: the fields whose
    rules they all applied as the report's schema has them, and whether one load's check
    for repeated keys covered the whole version."""

    fields: frozenset[str] = frozenset()
    keys: bool = False


def quality_query(schema: TableSchema, table: str, settled: Settled | None = None) -> str:
    """One aggregate over a table version: its rows; per field the non-null values, the rows
    that keep the field's rules, approximate distinct values, min and max; per unique set
    (primary key, unique fields) its non-null and exactly distinct values.

    A field's rules are the load's own (`Checks`, the same SQL the load ran) over the
    version's values, which already have their types: a version whose loads refused every
    row that broke a rule is 100% valid, and one holding rows loaded under an older schema
    shows how many break the schema it is reported against. What is `settled` is not
    checked again (the rules of a credit code or an identity number cost as much as the
    load): a settled field is valid on every row, settled keys do not repeat.
    """
    settled = settled or Settled()
    checks = Checks(schema)
    names = schema.names
    keys = {cols[0] for _, cols in unique_sets(schema) if len(cols) == 1}
    source = checks.wrap(table, names, lake_types=True)
    parts = ["count(*) AS rows"]
    for i, f in enumerate(schema.fields):
        c = f"src.{q(f.name)}"
        ok = "true" if f.name in settled.fields else (checks.field_ok(f) or "true")
        parts.append(f"count({c}) AS n{i}, count(*) FILTER (WHERE {ok}) AS ok{i}")
        if f.name not in keys:  # a key's distinct values are counted exactly below
            parts.append(f"approx_count_distinct({c}) AS d{i}")
        if f.type != "boolean" and not _withheld(f):
            parts.append(f"CAST(min({c}) AS VARCHAR) AS lo{i}, CAST(max({c}) AS VARCHAR) AS hi{i}")
    for k, (_, cols) in enumerate(unique_sets(schema)):
        originals = [f"src.{q(c)}" for c in cols]
        key = originals[0] if len(cols) == 1 else f"row({', '.join(originals)})"
        not_null = " AND ".join(f"{c} IS NOT NULL" for c in originals)
        distinct = "count(*)" if settled.keys else f"count(DISTINCT {key})"
        parts.append(
            f"count(*) FILTER (WHERE {not_null}) AS kn{k}, "
            f"{distinct} FILTER (WHERE {not_null}) AS kd{k}"
        )
    return f"SELECT {', '.join(parts)} FROM {source} AS src"


def quality_report(
    schema: TableSchema, row: dict[str, Any], rows_read: int, field_errors: dict[str, int]
) -> dict[str, Any]:
    """Completeness, validity, distinct values, min and max of each field, the rows its load
    refused for it, and the uniqueness of each set of fields that must not repeat.

    Validity is the share of the version's rows that keep the field's rules (as the load
    checks them). Uniqueness is given only where repeats are an error (the primary key,
    fields declared unique): for a status or a county a low share is what the data is.
    """
    rows = int(row["rows"])
    keys = []
    expected: dict[str, tuple[str, float | None, int]] = {}  # kind, uniqueness, distinct
    for k, (kind, cols) in enumerate(unique_sets(schema)):
        non_null, distinct = int(row[f"kn{k}"]), int(row[f"kd{k}"])
        uniqueness = round(distinct / non_null, 6) if non_null else None
        keys.append(
            {
                "fields": cols,
                "kind": kind,
                "uniqueness": uniqueness,
                "repeated": non_null - distinct,
            }
        )
        if len(cols) == 1:
            expected.setdefault(cols[0], (kind, uniqueness, distinct))
    fields: dict[str, Any] = {}
    for i, f in enumerate(schema.fields):
        non_null = int(row[f"n{i}"])
        figures: dict[str, Any] = {
            "completeness": round(non_null / rows, 6) if rows else None,
            "validity": round(int(row[f"ok{i}"]) / rows, 6) if rows else None,
            "distinct": min(int(row[f"d{i}"]), non_null) if f"d{i}" in row else None,
            "min": row.get(f"lo{i}"),
            "max": row.get(f"hi{i}"),
            "rejected": field_errors.get(f.name, 0),
        }
        if f.name in expected:
            # exact, for a key
            figures["unique"], figures["uniqueness"], figures["distinct"] = expected[f.name]
        if _withheld(f):
            figures["withheld"] = "min and max are not shown for a sensitive field"
        fields[f.name] = figures
    report = {"rows": rows, "rows_read": rows_read, "fields": fields, "keys": keys}
    out: dict[str, Any] = json.loads(json.dumps(report, default=str))
    return out
