"""The Python row test of a filter (`core.filters.row_test`) against the engine.

A key lookup whose plan filters rows tests the one row it read from the serving index in
Python. It must agree with DuckDB, which applies the same filter everywhere else, on every
row and filter: nulls, NaN, Chinese text, LIKE patterns, dates, negations and nesting.
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minyun.core.errors import Invalid
from minyun.core.filters import compile_filter, parse_filter, row_test
from minyun.core.serving import json_value

SCHEMA = pa.schema(
    [
        ("s", pa.string()),
        ("i", pa.int64()),
        ("f", pa.float64()),
        ("b", pa.bool_()),
        ("d", pa.date32()),
    ]
)
KINDS = {"s": "string", "i": "integer", "f": "number", "b": "boolean", "d": "date"}

_text = st.text(alphabet="ab%_\\'林陈 ", max_size=4)
_values = {
    "s": _text,
    "i": st.integers(-3, 3),
    "f": st.sampled_from([-1.5, 0.0, 1.0, 2.5, math.nan]) | st.integers(-2, 2).map(float),
    "b": st.booleans(),
    "d": st.dates(date(2020, 1, 1), date(2020, 1, 5)),
}
_literals = {
    "s": _text.map(lambda t: "'" + t.replace("'", "''") + "'"),
    "i": st.integers(-3, 3).map(str) | st.sampled_from(["1.5", "-0.5"]),
    "f": st.sampled_from(["-1.5", "0", "1", "2.5", "3"]),
    "b": st.sampled_from(["true", "false"]),
    "d": st.dates(date(2020, 1, 1), date(2020, 1, 5)).map(lambda d: f"'{d.isoformat()}'"),
}


@st.composite
def one_test(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(list(KINDS)))
    literal = _literals[name]
    how = draw(st.sampled_from(["compare", "in", "between", "null", "like"]))
    neg = draw(st.sampled_from(["", "not "]))
    if how == "null":
        return f"{name} is {neg}null"
    if how == "like" and name == "s":
        return f"{name} {neg}like {draw(literal)}"
    if how == "in":
        values = draw(st.lists(literal, min_size=1, max_size=3))
        return f"{name} {neg}in ({', '.join(values)})"
    if how == "between":
        return f"{name} {neg}between {draw(literal)} and {draw(literal)}"
    op = draw(st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">="]))
    return f"{name} {op} {draw(literal)}"


filters = st.recursive(
    one_test(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda t: f"not ({t})"),
    ),
    max_leaves=5,
)
rows = st.fixed_dictionaries({name: st.none() | values for name, values in _values.items()})


_DUCKDB = duckdb.connect()


def _engine(row: dict[str, Any], text: str) -> bool:
    where, params = compile_filter(text, KINDS)
    _DUCKDB.register("one_row", pa.Table.from_pylist([row], schema=SCHEMA))
    found = _DUCKDB.execute(f"SELECT count(*) FROM one_row WHERE {where}", params).fetchall()
    return bool(found[0][0])


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the serving index gives it back (JSON)."""
    return json.loads(json.dumps(row, default=json_value))


@settings(max_examples=400, deadline=None)
@given(row=rows, text=filters)
def test_the_python_test_agrees_with_the_engine(row: dict[str, Any], text: str) -> None:
    node = parse_filter(text)
    assert node is not None
    try:
        expected = _engine(row, text)
    except Invalid:  # the engine's compiler refuses it (a fractional integer, …): so must we
        with pytest.raises(Invalid):
            row_test(node, SCHEMA)
        return
    test = row_test(node, SCHEMA)
    assert test is not None
    assert test(_stored(row)) is expected, (row, text)


def test_types_without_an_exact_twin_are_left_to_the_engine() -> None:
    schema = pa.schema([("t", pa.timestamp("us")), ("m", pa.decimal128(10, 2))])
    for text in ("t > '2020-01-01T00:00:00'", "m = 1", "m in (1, 2)"):
        node = parse_filter(text)
        assert node is not None and row_test(node, schema) is None
    null_test = parse_filter("t is null")
    assert null_test is not None and row_test(null_test, schema) is not None
    infinite = parse_filter("f < 1e999")
    assert infinite is not None and row_test(infinite, SCHEMA) is None


def test_an_unknown_field_is_refused() -> None:
    node = parse_filter("nope = 1")
    assert node is not None
    with pytest.raises(Invalid, match="unknown field"):
        row_test(node, SCHEMA)
