"""The filter language: grammar, typing against columns, limits, error positions, injection."""

from __future__ import annotations

import random
import re
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pytest

from minyun.core import filters
from minyun.core.errors import Invalid
from minyun.core.filters import compile_filter, kind_of, parse_fields, parse_sort

COLUMNS = {
    "name": "string",
    "age": "integer",
    "score": "number",
    "born": "date",
    "seen": "datetime",
    "active": "boolean",
    "tags": "other",
    "姓名": "string",
    "and": "string",
}


def compiled(text: str) -> tuple[str, list[Any]]:
    return compile_filter(text, COLUMNS)


def error(text: str, columns: dict[str, str] = COLUMNS) -> Invalid:
    with pytest.raises(Invalid) as caught:
        compile_filter(text, columns)
    assert caught.value.extra["field"] == "filter"
    return caught.value


@pytest.mark.parametrize(
    ("text", "sql", "params"),
    [
        ("name = 'a'", '("name" = ?)', ["a"]),
        ("age != 3", '("age" <> ?)', [3]),
        ("age <> 3", '("age" <> ?)', [3]),
        ("score >= -1.5e2", '("score" >= ?)', [-150.0]),
        ("age<3", '("age" < ?)', [3]),
        ("age in (1, 2,3)", '("age" IN (?, ?, ?))', [1, 2, 3]),
        ("age not in (1)", '("age" NOT IN (?))', [1]),
        ("name like '张%'", '("name" LIKE ?)', ["张%"]),
        ("name NOT LIKE 'x_'", '("name" NOT LIKE ?)', ["x_"]),
        ("name is null", '("name" IS NULL)', []),
        ("tags is not null", '("tags" IS NOT NULL)', []),
        ("age between 1 and 9", '("age" BETWEEN ? AND ?)', [1, 9]),
        ("age not between 1 and 9", '("age" NOT BETWEEN ? AND ?)', [1, 9]),
        ("active = true", '("active" = ?)', [True]),
        ("active = FALSE", '("active" = ?)', [False]),
        ("born >= '2024-02-29'", '("born" >= ?)', [date(2024, 2, 29)]),
        ("seen < '2024-01-01T08:00:00'", '("seen" < ?)', [datetime(2024, 1, 1, 8)]),
        ("姓名 = '王五'", '("姓名" = ?)', ["王五"]),
        ("\"and\" = 'x'", '("and" = ?)', ["x"]),
        ("name = 'it''s'", '("name" = ?)', ["it's"]),
        ("name = ''", '("name" = ?)', [""]),
        ("", "TRUE", []),
        ("   ", "TRUE", []),
    ],
)
def test_filters_compile_to_quoted_fields_and_parameters(
    text: str, sql: str, params: list[Any]
) -> None:
    assert compiled(text) == (sql, params)


def test_and_binds_tighter_than_or_and_parentheses_and_not_group() -> None:
    sql, params = compiled("age = 1 or age = 2 and name = 'x'")
    assert sql == '(("age" = ?) OR (("age" = ?) AND ("name" = ?)))'
    assert params == [1, 2, "x"]
    sql, params = compiled("(age = 1 or age = 2) and not name = 'x'")
    assert sql == '((("age" = ?) OR ("age" = ?)) AND (NOT ("name" = ?)))'
    assert compiled("not not (age = 1)")[0] == '(NOT (NOT ("age" = ?)))'


@pytest.mark.parametrize(
    ("text", "position", "says"),
    [
        ("age = ", 7, "expected a value"),
        ("age", 4, "expected an operator"),
        ("= 1", 1, "expected a field name"),
        ("age = 1 age = 2", 9, "expected 'and', 'or'"),
        ("(age = 1", 9, "expected ')'"),
        ("age in 1", 8, "expected '('"),
        ("age in (1 2)", 11, "expected ')'"),
        ("name like 5", 11, "expected a quoted pattern"),
        ("age between 1 or 2", 15, "expected 'and'"),
        ("name is 'x'", 9, "expected 'null'"),
        ("name = 'open", 8, "unterminated"),
        ('"name = 1', 1, "unterminated"),
        ("age = 1 ; drop table t", 9, "unexpected character ';'"),
        ("nobody = 1", 1, "unknown field 'nobody'"),
        ("age = 1 and ghost is null", 13, "unknown field 'ghost'"),
        ("age = 'x'", 7, "age is of type integer"),
        ("name = 1", 8, "quote the text"),
        ("active = 1", 10, "use true or false"),
        ("born = 'yesterday'", 8, "ISO date"),
        ("seen > '2024-13-01'", 8, "ISO datetime"),
        ("age like '1%'", 1, "'like' needs a text field"),
        ("tags = 'x'", 1, "only be tested with 'is null'"),
        ("age = 99999999999999999999", 7, "out of range"),
    ],
)
def test_errors_name_the_position(text: str, position: int, says: str) -> None:
    exc = error(text)
    assert exc.extra["position"] == position, str(exc)
    assert says in str(exc) and f"at position {position}" in str(exc)


def test_limits_on_length_terms_values_and_depth() -> None:
    long = "name = '" + "x" * 2000 + "'"
    assert error(long).extra["position"] == filters.MAX_LENGTH + 1
    fifty = " and ".join(f"age = {n}" for n in range(filters.MAX_TERMS))
    assert compiled(fifty)[1] == list(range(filters.MAX_TERMS))
    exc = error(fifty + " or age = 0")
    assert "more than 50 conditions" in str(exc) and exc.extra["position"] == len(fifty) + 5
    many = "age in (" + ",".join("1" for _ in range(filters.MAX_VALUES + 1)) + ")"
    assert "more than 500 values" in str(error(many))
    deep = "(" * 25 + "age = 1" + ")" * 25
    assert "nested deeper" in str(error(deep))
    assert "nested deeper" in str(error("not " * 30 + "age = 1"))


INJECTIONS = [
    "1=1; DROP TABLE x",
    "name = 'a' OR '1'='1'",
    "name = 'a' OR 1=1",
    "name = 'a'; DROP TABLE t; --",
    "name = 'a' -- comment",
    "name = 'a' /* c */",
    "name = 'x' union select * from t",
    'name = "x" or 1=1',
    "(select 1) = 1",
    "name = 'a'' OR ''1''=''1'",
    'name = \'a\' or "x"" or 1=1 --" = 1',
    "age = 1) or (1=1",
    "age = 1 or true",
    "name = chr(39)",
    "name = $1",
    "name = ?",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_sql_in_a_filter_is_refused_or_kept_as_a_value(text: str) -> None:
    try:
        sql, params = compiled(text)
    except Invalid as exc:
        assert exc.extra["position"] >= 1
        return
    assert _only_structure(sql), sql
    # Whatever parsed, the text after the field went in as one parameter, not as SQL.
    assert all(isinstance(p, str | int | float | bool | date) for p in params)


def test_the_classic_or_1_equals_1_fails_because_1_is_not_a_field() -> None:
    exc = error("name = 'a' OR '1'='1'")
    assert exc.extra["position"] == 15 and "expected a field name" in str(exc)
    doubled = compiled("name = 'a'' OR ''1''=''1'")
    assert doubled == ('("name" = ?)', ["a' OR '1'='1"])


_STRUCTURE = re.compile(
    r"""^(?:\s+|\(|\)|,|\?|=|<>|<=|>=|<|>|AND|OR|NOT|IN|LIKE|IS|NULL|BETWEEN|TRUE|"(?:[^"]|"")*")*$"""
)


def _only_structure(sql: str) -> bool:
    """The SQL holds nothing but structure, placeholders and quoted known columns."""
    names = {filters.quote(c) for c in COLUMNS}
    return bool(_STRUCTURE.match(sql)) and all(
        q in names for q in re.findall(r'"(?:[^"]|"")*"', sql)
    )


def test_random_garbage_never_reaches_sql() -> None:
    rng = random.Random(20240517)
    alphabet = [
        *"abcdefghijklmnopqrstuvwxyz_ 0123456789'\";=<>!()-,.*/%\\\n\t姓名",
        " and ", " or ", " not ", " in ", " like ", " is ", " null ", " between ", "name",
        "age", "'x'", "DROP TABLE t", "; --", "1=1", "union select",
    ]  # fmt: skip
    compiled_count = 0
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
        try:
            sql, params = compiled(text)
        except Invalid as exc:
            assert 1 <= exc.extra["position"] <= len(text) + 1
            continue
        compiled_count += 1
        assert _only_structure(sql), (text, sql)
        assert sql.count("?") == len(params)
    assert compiled_count > 0


def test_kinds_of_arrow_types() -> None:
    assert kind_of(pa.string()) == kind_of(pa.large_string()) == "string"
    assert kind_of(pa.int8()) == kind_of(pa.uint64()) == "integer"
    assert kind_of(pa.float64()) == kind_of(pa.decimal128(10, 2)) == "number"
    assert kind_of(pa.bool_()) == "boolean"
    assert kind_of(pa.date32()) == "date"
    assert kind_of(pa.timestamp("us", tz="UTC")) == "datetime"
    assert kind_of(pa.list_(pa.int64())) == kind_of(pa.binary()) == "other"


def test_fields_selection() -> None:
    assert parse_fields(None, COLUMNS) == list(COLUMNS)
    assert parse_fields(" age , name", COLUMNS) == ["age", "name"]
    with pytest.raises(Invalid) as caught:
        parse_fields("age,  ghost", COLUMNS)
    assert caught.value.extra == {"field": "fields", "position": 7}
    with pytest.raises(Invalid, match="twice"):
        parse_fields("age,age", COLUMNS)


def test_sort_keys() -> None:
    assert parse_sort("", COLUMNS) == []
    assert parse_sort("age,-name, +born", COLUMNS) == [
        ("age", False),
        ("name", True),
        ("born", False),
    ]
    with pytest.raises(Invalid) as caught:
        parse_sort("age,-ghost", COLUMNS)
    assert caught.value.extra == {"field": "sort", "position": 5}
    with pytest.raises(Invalid, match="cannot sort"):
        parse_sort("tags", COLUMNS)
    with pytest.raises(Invalid, match="twice"):
        parse_sort("age,-age", COLUMNS)
    with pytest.raises(Invalid, match="at most"):
        parse_sort(",".join(f"c{n}" for n in range(11)), {f"c{n}": "integer" for n in range(11)})


PAYLOADS = ["x'; DROP TABLE t; --", "' OR '1'='1", '" OR 1=1 --', "1; SELECT 1", "张三", ""]


def _random_filter(rng: random.Random, depth: int = 0) -> tuple[str, list[Any]]:
    """A valid filter with hostile text values, and the values it must bind."""
    if depth < 3 and rng.random() < 0.4:
        left, lp = _random_filter(rng, depth + 1)
        right, rp = _random_filter(rng, depth + 1)
        joined = f"({left} {rng.choice(['and', 'OR', 'And'])} {right})"
        return (f"not {joined}" if rng.random() < 0.2 else joined), lp + rp
    payload = rng.choice(PAYLOADS)
    literal = "'" + payload.replace("'", "''") + "'"
    choice = rng.randrange(5)
    if choice == 0:
        return f"name {rng.choice(['=', '!=', '<', '>='])} {literal}", [payload]
    if choice == 1:
        return f"姓名 in ({literal}, 'b')", [payload, "b"]
    if choice == 2:
        return f'"and" like {literal}', [payload]
    if choice == 3:
        return f"name between {literal} and {literal}", [payload, payload]
    return "age is not null", []


def test_generated_filters_bind_every_hostile_value_as_a_parameter() -> None:
    rng = random.Random(7)
    for _ in range(500):
        text, values = _random_filter(rng)
        sql, params = compiled(text)
        assert params == values
        assert _only_structure(sql), (text, sql)
