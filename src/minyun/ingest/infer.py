"""A first schema from a sample file: types, required, formats and a key, guessed in DuckDB.

The sample is read as text, as a load reads it (`sources.relation_sql`), and each column is
judged by one aggregate query over its first `SAMPLE_ROWS` rows: a type is proposed only
when every non-empty value casts to it the way a load casts (`TRY_CAST`), a format only
when every value keeps it (`cn-ric` by GB 11643, `cn-uscc` by GB 32100, through the same
SQL checks as `core.identifiers`). The steward edits the result before it is saved; nothing
here is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from minyun.core import identifiers
from minyun.ingest import sources
from minyun.ingest.sources import SourceError

SAMPLE_ROWS = 10_000
HEAD_ROWS = 5
MAX_COLUMNS = 500
# Longer runs of digits are codes (telephone numbers, account numbers), not quantities.
MAX_INTEGER_DIGITS = 15
EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
MOBILE = r"1[3-9][0-9]{9}"
TIME_OF_DAY = r".*[ T][0-9]{1,2}:[0-9]{2}.*"
# Header words that say what a column holds (Chinese first; English as departments write it).
PERSON_NAMES = {"姓名", "名字", "联系人", "法定代表人", "法人代表", "负责人", "name", "full_name",
                "person_name", "contact", "legal_person"}  # fmt: skip
PHONE_WORDS = ("电话", "手机", "phone", "mobile", "tel")
ADDRESS_WORDS = ("地址", "住址", "住所", "address")
BIRTH_WORDS = ("出生", "birth")
KEY_NAMES = {"id", "编号", "代码", "code", "序号"}


@dataclass(frozen=True)
class Column:
    """What the sample showed of one column, beside the field proposed for it."""

    name: str
    values: int  # non-empty values in the sample
    distinct: int
    example: str | None


@dataclass(frozen=True)
class Sample:
    """The proposed Table Schema (with minyun keys) and what it was guessed from."""

    descriptor: dict[str, Any]
    columns: list[Column]
    rows: int  # rows read (at most SAMPLE_ROWS)
    head: list[dict[str, str | None]] = field(default_factory=list)


def infer(path: Path, *, filename: str | None, encoding: str | None, work: Path) -> Sample:
    """The schema a sample file suggests; SourceError if it cannot be read as its kind."""
    fetched = sources.fetch_file(path, filename=filename, sha256="-")
    work.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": "512MB"})
    try:
        con.sql("SET enable_progress_bar = false")
        con.sql(f"SET disabled_optimizers = {_lit(sources.UNSAFE_OPTIMIZERS)}")
        relation = _relation(con, fetched, work, encoding)
        try:
            con.sql(
                f"CREATE TEMP TABLE sample AS SELECT COLUMNS(*)::VARCHAR FROM {relation} "
                f"LIMIT {SAMPLE_ROWS}"
            )
            names = [row[0] for row in con.execute("DESCRIBE sample").fetchall()]
        except duckdb.Error as exc:
            raise _unreadable(exc, fetched.kind) from exc
        if not names:
            raise SourceError("the sample has no columns", field="sample", code="empty-sample")
        if len(names) > MAX_COLUMNS:
            raise SourceError(
                f"the sample has {len(names)} columns; at most {MAX_COLUMNS}",
                field="sample", code="too-many-columns",
            )  # fmt: skip
        rows = int(con.execute("SELECT count(*) FROM sample").fetchall()[0][0])
        if rows == 0:
            raise SourceError(
                "the sample has a header but no rows", field="sample", code="empty-sample"
            )
        facts = _facts(con, names)
        head = [
            dict(zip(names, values, strict=True))
            for values in con.execute(f"SELECT * FROM sample LIMIT {HEAD_ROWS}").fetchall()
        ]
    finally:
        con.close()
    fields = [_field(name, found, rows) for name, found in zip(names, facts, strict=True)]
    descriptor: dict[str, Any] = {"fields": fields}
    key = _primary_key(fields, facts, rows)
    if key is not None:
        descriptor["primaryKey"] = [key]
    columns = [
        Column(n, int(f["values"]), int(f["distinct"]), f["example"])
        for n, f in zip(names, facts, strict=True)
    ]
    return Sample(descriptor, columns, rows, head)


def _relation(
    con: duckdb.DuckDBPyConnection, fetched: sources.Fetched, work: Path, encoding: str | None
) -> str:
    """A FROM item over the sample; JSON lines with the columns they name."""
    try:
        if fetched.kind == "jsonl":
            if encoding:
                sources.text_encoding(encoding)
            return f"read_json({_lit(fetched.path)}, format='newline_delimited')"
        return sources.relation_sql(con, fetched, work, encoding=encoding, fields=[])
    except duckdb.Error as exc:
        raise _unreadable(exc, fetched.kind) from exc


def _unreadable(exc: duckdb.Error, kind: str) -> SourceError:
    text = str(exc)
    if "Invalid unicode" in text or "byte sequence" in text.lower():
        return SourceError(
            "the sample is not UTF-8 text: choose its encoding (GBK or GB18030 for most files "
            "saved by Excel or WPS)",
            field="encoding", code="wrong-encoding",
        )  # fmt: skip
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    return SourceError(
        f"cannot read the sample as {kind}: {first[:300]}", field="sample", code="bad-sample"
    )


def _lit(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_MEASURES = (
    "values", "distinct", "integers", "leading_zero", "longest", "numbers", "booleans",
    "dates", "datetimes", "times", "with_time", "rics", "usccs", "emails", "mobiles",
    "divisions", "example",
)  # fmt: skip


def _facts(con: duckdb.DuckDBPyConnection, names: list[str]) -> list[dict[str, Any]]:
    """Per column, in one aggregate query: how many values cast to each type or keep a format."""
    divisions = ", ".join(_lit(c) for c in sorted(identifiers.division_codes()))
    parts: list[str] = []
    # Each column by its position: a header may hold quotes the identifier checks refuse.
    positional = ", ".join(f"{_q(name)} AS c{i}" for i, name in enumerate(names))
    for i in range(len(names)):
        c = name = f"c{i}"

        def n(condition: str) -> str:
            return f"count(*) FILTER (WHERE {condition})"

        parts += [
            f"count({c})",
            f"count(DISTINCT {c})",
            n(f"TRY_CAST({c} AS BIGINT) = TRY_CAST({c} AS DOUBLE)"),
            n(f"regexp_full_match({c}, '[+-]?0[0-9].*')"),
            f"coalesce(max(length({c})), 0)",
            n(f"TRY_CAST({c} AS DOUBLE) IS NOT NULL"),
            n(f"TRY_CAST({c} AS BOOLEAN) IS NOT NULL"),
            n(f"TRY_CAST({c} AS DATE) IS NOT NULL"),
            n(f"TRY_CAST({c} AS TIMESTAMP) IS NOT NULL"),
            n(f"TRY_CAST({c} AS TIME) IS NOT NULL"),
            n(f"regexp_full_match({c}, {_lit(TIME_OF_DAY)})"),
            n(identifiers.ric_check_sql(name)),
            n(identifiers.uscc_check_sql(name)),
            n(f"regexp_full_match({c}, {_lit(EMAIL)})"),
            n(f"regexp_full_match({c}, {_lit(MOBILE)})"),
            n(f"{c} IN ({divisions})"),
            f"first({c}) FILTER (WHERE {c} IS NOT NULL)",
        ]
    row = con.execute(
        f"SELECT {', '.join(parts)} FROM (SELECT {positional} FROM sample)"
    ).fetchall()[0]
    width = len(_MEASURES)
    return [
        dict(zip(_MEASURES, row[i * width : (i + 1) * width], strict=True))
        for i in range(len(names))
    ]


def _words(name: str) -> str:
    return name.casefold()


def _field(name: str, f: dict[str, Any], rows: int) -> dict[str, Any]:
    """The field proposed for one column."""
    values = int(f["values"])
    out: dict[str, Any] = {"name": name, "type": "string"}
    if re.search(r"[^\x00-\x7f]", name):
        out["title"] = name
    words = _words(name)
    every = values > 0

    def all_(measure: str) -> bool:
        return every and int(f[measure]) == values

    numeric_code = int(f["leading_zero"]) > 0 or int(f["longest"]) > MAX_INTEGER_DIGITS
    if all_("rics"):
        out.update(format="cn-ric", sensitivity="sensitive", mask="keep(3,4)")
    elif all_("usccs"):
        out["format"] = "cn-uscc"
    elif all_("divisions"):
        out["codelist"] = "GB/T 2260"
    elif all_("mobiles") or any(w in words for w in PHONE_WORDS):
        out.update(sensitivity="sensitive", mask="keep(3,4)")
    elif all_("integers") and not numeric_code:
        out["type"] = "integer"
    elif all_("numbers") and not numeric_code:
        out["type"] = "number"
    elif all_("booleans"):
        out["type"] = "boolean"
    elif all_("dates") and int(f["with_time"]) == 0:
        out["type"] = "date"
    elif all_("datetimes"):
        out["type"] = "datetime"
    elif all_("times"):
        out["type"] = "time"
    elif all_("emails"):
        out.update(format="email", sensitivity="sensitive", mask="keep(2,4)")
    if out["type"] == "string" and "format" not in out and "mask" not in out:
        if words in PERSON_NAMES:
            out.update(sensitivity="sensitive", mask="name")
        elif any(w in words for w in ADDRESS_WORDS):
            out.update(sensitivity="sensitive", mask="address(county)")
    if out["type"] == "date" and any(w in words for w in BIRTH_WORDS):
        out.update(sensitivity="sensitive", mask="date(year)")
    out.setdefault("sensitivity", "internal")
    if values == rows and rows > 0:
        out["constraints"] = {"required": True}
    return out


def _primary_key(
    fields: list[dict[str, Any]], facts: list[dict[str, Any]], rows: int
) -> str | None:
    """A column every sample row has, with no value twice: identity numbers and codes first."""
    candidates = [
        (f, found)
        for f, found in zip(fields, facts, strict=True)
        if int(found["values"]) == rows and int(found["distinct"]) == rows and rows > 1
    ]

    def rank(item: tuple[dict[str, Any], dict[str, Any]]) -> int:
        f, _ = item
        if f.get("format") in ("cn-ric", "cn-uscc"):
            return 0
        name = _words(str(f["name"]))
        if name in KEY_NAMES or name.endswith(("_id", "编号", "代码")):
            return 1
        return 2 if f["type"] in ("integer", "string") else 3

    ranked = sorted(candidates, key=rank)
    if not ranked or rank(ranked[0]) > 1:
        return None
    return str(ranked[0][0]["name"])
