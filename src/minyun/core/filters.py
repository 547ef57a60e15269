"""The row filter language of the query API, parsed by hand and compiled to parameterised SQL.

    filter := or
    or     := and ("or" and)*
    and    := unary ("and" unary)*
    unary  := "not" unary | "(" or ")" | test
    test   := field ( op value | ["not"] "in" "(" value ("," value)* ")"
                    | ["not"] "like" string | "is" ["not"] "null"
                    | ["not"] "between" value "and" value )
    op     := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    field  := name | '"' name with "" for a quote '"'
    value  := 'text with '' for a quote' | number | true | false

Keywords are case-insensitive; dates and timestamps are written as ISO strings. Nothing of
the text reaches SQL: fields are checked against the resource's columns and quoted, values
become `?` parameters. Error positions are 1-based characters, as in PostgreSQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NoReturn

import pyarrow as pa

from minyun.core.errors import Invalid

MAX_LENGTH = 2000
MAX_TERMS = 50
MAX_VALUES = 500
MAX_DEPTH = 20
MAX_SORT_KEYS = 10
KEYWORDS = frozenset({"and", "or", "not", "in", "like", "is", "null", "between", "true", "false"})
OPERATORS = {"=": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<string>'(?:[^']|'')*')
      | (?P<quoted>"(?:[^"]|"")+")
      | (?P<name>[^\W\d]\w*)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, keyword, op, punct, end
    text: str
    value: Any
    pos: int  # 1-based


@dataclass(frozen=True)
class Field:
    name: str
    pos: int


@dataclass(frozen=True)
class Value:
    value: str | int | float | bool
    pos: int


@dataclass(frozen=True)
class Test:
    """One predicate on a field: `kind` is compare, in, like, null or between."""

    kind: str
    field: Field
    op: str = ""
    values: tuple[Value, ...] = ()
    negated: bool = False


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" or "or"
    items: tuple[Node, ...]


Node = Test | Not | BoolOp


def _error(message: str, pos: int, field: str = "filter") -> Invalid:
    return Invalid(f"{message} at position {pos}", field=field, position=pos)


def tokenize(text: str) -> list[Token]:
    """The tokens of a filter, ending with an `end` token."""
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            if text[at] in "'\"":
                raise _error("unterminated quoted text", at + 1)
            raise _error(f"unexpected character {text[at]!r}", at + 1)
        kind, raw = match.lastgroup or "", match.group()
        if kind == "number":
            number = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(Token(kind, raw, number, at + 1))
        elif kind == "string":
            tokens.append(Token(kind, raw, raw[1:-1].replace("''", "'"), at + 1))
        elif kind == "quoted":
            tokens.append(Token("name", raw, raw[1:-1].replace('""', '"'), at + 1))
        elif kind == "name" and raw.lower() in KEYWORDS:
            tokens.append(Token("keyword", raw, raw.lower(), at + 1))
        elif kind != "ws":
            tokens.append(Token(kind, raw, raw, at + 1))
        at = match.end()
    tokens.append(Token("end", "", None, len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.at = 0
        self.terms = 0
        self.values = 0

    def peek(self, *words: str) -> bool:
        token = self.tokens[self.at]
        return token.kind in ("keyword", "punct", "op") and token.value in words

    def accept(self, *words: str) -> bool:
        if self.peek(*words):
            self.at += 1
            return True
        return False

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expect(self, word: str) -> Token:
        if not self.peek(word):
            self.fail(f"expected {word!r}")
        return self.take()

    def fail(self, message: str) -> NoReturn:
        token = self.tokens[self.at]
        found = "the end of the filter" if token.kind == "end" else repr(token.text)
        raise _error(f"{message} but found {found}", token.pos)

    def parse(self) -> Node:
        node = self.or_(0)
        if self.tokens[self.at].kind != "end":
            self.fail("expected 'and', 'or' or the end")
        return node

    def or_(self, depth: int) -> Node:
        items = [self.and_(depth)]
        while self.accept("or"):
            items.append(self.and_(depth))
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_(self, depth: int) -> Node:
        items = [self.unary(depth)]
        while self.accept("and"):
            items.append(self.unary(depth))
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def unary(self, depth: int) -> Node:
        if depth >= MAX_DEPTH:
            raise _error(f"nested deeper than {MAX_DEPTH} levels", self.tokens[self.at].pos)
        if self.accept("not"):
            return Not(self.unary(depth + 1))
        if self.accept("("):
            node = self.or_(depth + 1)
            self.expect(")")
            return node
        return self.test()

    def test(self) -> Test:
        token = self.tokens[self.at]
        if token.kind != "name":
            self.fail("expected a field name")
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _error(f"more than {MAX_TERMS} conditions", token.pos)
        field = Field(str(self.take().value), token.pos)
        if self.peek(*OPERATORS):
            return Test("compare", field, OPERATORS[self.take().value], (self.value(),))
        if self.accept("is"):
            negated = self.accept("not")
            self.expect("null")
            return Test("null", field, negated=negated)
        negated = self.accept("not")
        if self.accept("in"):
            self.expect("(")
            values = [self.value()]
            while self.accept(","):
                values.append(self.value())
            self.expect(")")
            return Test("in", field, values=tuple(values), negated=negated)
        if self.accept("like"):
            if self.tokens[self.at].kind != "string":
                self.fail("expected a quoted pattern")
            return Test("like", field, values=(self.value(),), negated=negated)
        if self.accept("between"):
            low = self.value()
            self.expect("and")
            return Test("between", field, values=(low, self.value()), negated=negated)
        self.fail("expected an operator (= != < <= > >= in like is between)")

    def value(self) -> Value:
        token = self.tokens[self.at]
        self.values += 1
        if self.values > MAX_VALUES:
            raise _error(f"more than {MAX_VALUES} values", token.pos)
        if token.kind in ("string", "number"):
            return Value(self.take().value, token.pos)
        if self.peek("true", "false"):
            return Value(self.take().value == "true", token.pos)
        self.fail("expected a value ('text', a number, true or false)")


def parse_filter(text: str) -> Node | None:
    """The syntax tree of a filter; None for an empty one."""
    if len(text) > MAX_LENGTH:
        raise _error(f"the filter is longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    if not text.strip():
        return None
    return _Parser(text).parse()


# --- compiling against a resource's columns ------------------------------------------------


def kind_of(type_: pa.DataType) -> str:
    """The filter kind of an Arrow type: string, integer, number, boolean, date, datetime, other."""
    if (
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
    ):
        return "string"
    if pa.types.is_integer(type_):
        return "integer"
    if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return "number"
    if pa.types.is_boolean(type_):
        return "boolean"
    if pa.types.is_date(type_):
        return "date"
    if pa.types.is_timestamp(type_):
        return "datetime"
    return "other"


def quote(name: str) -> str:
    """A SQL identifier for a known column name."""
    return '"' + name.replace('"', '""') + '"'


def _column(field: Field, columns: Mapping[str, str]) -> str:
    if field.name not in columns:
        raise _error(f"unknown field {field.name!r}", field.pos)
    return columns[field.name]


def _param(value: Value, kind: str, field: Field) -> Any:
    v = value.value
    if kind in ("integer", "number") and isinstance(v, int | float) and not isinstance(v, bool):
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            raise _error(f"{v} is out of range", value.pos)
        return v
    if kind == "string" and isinstance(v, str):
        return v
    if kind == "boolean" and isinstance(v, bool):
        return v
    if kind in ("date", "datetime") and isinstance(v, str):
        try:
            return date.fromisoformat(v) if kind == "date" else datetime.fromisoformat(v)
        except ValueError:
            raise _error(
                f"{field.name} is of type {kind}; write it as an ISO {kind}", value.pos
            ) from None
    if kind == "other":
        raise _error(f"{field.name} can only be tested with 'is null'", field.pos)
    hint = {"string": "quote the text", "boolean": "use true or false"}.get(kind, "")
    raise _error(f"{field.name} is of type {kind}; {hint or 'give a number'}", value.pos)


def _sql(node: Node, columns: Mapping[str, str], params: list[Any]) -> str:
    if isinstance(node, BoolOp):
        return "(" + f" {node.op.upper()} ".join(_sql(i, columns, params) for i in node.items) + ")"
    if isinstance(node, Not):
        return f"(NOT {_sql(node.item, columns, params)})"
    kind, name = _column(node.field, columns), quote(node.field.name)
    neg = "NOT " if node.negated else ""
    if node.kind == "null":
        return f"({name} IS {neg}NULL)"
    if node.kind == "like" and kind != "string":
        raise _error(
            f"'like' needs a text field; {node.field.name} is of type {kind}", node.field.pos
        )
    params.extend(_param(v, kind, node.field) for v in node.values)
    if node.kind == "compare":
        return f"({name} {node.op} ?)"
    if node.kind == "in":
        return f"({name} {neg}IN ({', '.join('?' for _ in node.values)}))"
    if node.kind == "like":
        return f"({name} {neg}LIKE ?)"
    return f"({name} {neg}BETWEEN ? AND ?)"


def compile_node(node: Node, columns: Mapping[str, str], params: list[Any]) -> str:
    """A parsed filter as a SQL condition; its values are appended to `params`."""
    return _sql(node, columns, params)


def compile_filter(text: str | None, columns: Mapping[str, str]) -> tuple[str, list[Any]]:
    """A SQL condition with `?` parameters for the filter; `columns` maps name to kind."""
    node = parse_filter(text or "")
    if node is None:
        return "TRUE", []
    params: list[Any] = []
    return _sql(node, columns, params), params


def _items(text: str) -> list[tuple[str, int]]:
    """The comma-separated items of `text`, stripped, with their 1-based positions."""
    items, at = [], 0
    for part in text.split(","):
        stripped = part.strip()
        items.append((stripped, at + len(part) - len(part.lstrip()) + 1))
        at += len(part) + 1
    return items


def parse_fields(text: str | None, columns: Mapping[str, str]) -> list[str]:
    """The fields `a,b,c` to return, all of them if empty; each must be a known column."""
    if not text or not text.strip():
        return list(columns)
    chosen: list[str] = []
    for name, pos in _items(text):
        if name not in columns:
            raise _error(f"unknown field {name!r}", pos, "fields")
        if name in chosen:
            raise _error(f"field {name!r} is listed twice", pos, "fields")
        chosen.append(name)
    return chosen


def parse_sort(text: str | None, columns: Mapping[str, str]) -> list[tuple[str, bool]]:
    """The sort keys of `field,-other` as (field, descending)."""
    if not text or not text.strip():
        return []
    keys: list[tuple[str, bool]] = []
    for item, pos in _items(text):
        name = item.removeprefix("-").removeprefix("+").strip()
        if name not in columns:
            raise _error(f"unknown field {name!r}", pos, "sort")
        if columns[name] == "other":
            raise _error(f"cannot sort by {name!r}", pos, "sort")
        if any(name == k for k, _ in keys):
            raise _error(f"field {name!r} is sorted twice", pos, "sort")
        keys.append((name, item.startswith("-")))
    if len(keys) > MAX_SORT_KEYS:
        raise Invalid(f"sort by at most {MAX_SORT_KEYS} fields", field="sort")
    return keys


# --- testing one stored row in Python ------------------------------------------------------

RowTest = Callable[[Mapping[str, Any]], bool]
_Tri = Callable[[Mapping[str, Any]], "bool | None"]


def row_test(node: Node, schema: pa.Schema) -> RowTest | None:
    """The filter as a Python test of one row as the serving index stores it (JSON values).

    It follows the engine's SQL exactly, three-valued logic included (a test of a null is
    unknown, `not unknown` is unknown, and a row passes only where the condition is true),
    so that a grant's row filter can be applied to a key lookup without leaving the index;
    `tests/core/test_filters.py` holds it against DuckDB on generated rows and filters.
    None where the Python values have no exact twin of the engine's (timestamps, decimals
    and other types, infinite numbers): such plans are read by the engine.
    """
    kinds = {f.name: _exact_kind(f.type) for f in schema}
    try:
        check = _tri(node, kinds)
    except _NoTwin:
        return None

    def passes(row: Mapping[str, Any]) -> bool:
        return check(row) is True

    return passes


class _NoTwin(Exception):
    """A filter the Python test cannot follow exactly."""


def _exact_kind(type_: pa.DataType) -> str:
    if pa.types.is_floating(type_):
        return "float"
    if pa.types.is_decimal(type_):
        return "other"
    kind = kind_of(type_)
    return kind if kind in ("string", "integer", "boolean", "date") else "other"


def _tri(node: Node, kinds: Mapping[str, str]) -> _Tri:
    if isinstance(node, BoolOp):
        parts = [_tri(item, kinds) for item in node.items]
        return _all(parts) if node.op == "and" else _any(parts)
    if isinstance(node, Not):
        inner = _tri(node.item, kinds)
        return lambda row: None if (v := inner(row)) is None else not v
    name = node.field.name
    kind = kinds.get(name)
    if kind is None:
        raise _error(f"unknown field {name!r}", node.field.pos)
    if node.kind == "null":
        return (
            (lambda row: row.get(name) is not None)
            if node.negated
            else (lambda row: row.get(name) is None)
        )
    if kind == "other":
        raise _NoTwin(name)
    if node.kind == "like":
        if kind != "string":
            raise _NoTwin(name)
        pattern = _like(str(node.values[0].value))
        test: _Tri = lambda row: None if (v := row.get(name)) is None else bool(pattern(v))  # noqa: E731
        return _negate(test) if node.negated else test
    params = [_python_param(v, kind, node.field) for v in node.values]
    read = _reader(name, kind)
    if node.kind == "compare":
        compare, value = _COMPARE[node.op], params[0]
        return lambda row: None if (v := read(row)) is None else compare(v, value)
    if node.kind == "in":
        test = lambda row: None if (v := read(row)) is None else any(_eq(v, p) for p in params)  # noqa: E731
    else:  # between
        low, high = params
        test = lambda row: (  # noqa: E731
            None if (v := read(row)) is None else _ge(v, low) and _le(v, high)
        )
    return _negate(test) if node.negated else test


def _all(parts: list[_Tri]) -> _Tri:
    def check(row: Mapping[str, Any]) -> bool | None:
        unknown = False
        for part in parts:
            value = part(row)
            if value is False:
                return False
            unknown = unknown or value is None
        return None if unknown else True

    return check


def _any(parts: list[_Tri]) -> _Tri:
    def check(row: Mapping[str, Any]) -> bool | None:
        unknown = False
        for part in parts:
            value = part(row)
            if value is True:
                return True
            unknown = unknown or value is None
        return None if unknown else False

    return check


def _negate(test: _Tri) -> _Tri:
    return lambda row: None if (v := test(row)) is None else not v


def _python_param(value: Value, kind: str, field: Field) -> Any:
    if kind == "float":
        number = _param(value, "number", field)
        if isinstance(number, float) and not math.isfinite(number):
            raise _NoTwin(field.name)
        return number
    return _param(value, kind, field)


def _reader(name: str, kind: str) -> Callable[[Mapping[str, Any]], Any]:
    if kind == "date":
        return lambda row: None if (v := row.get(name)) is None else date.fromisoformat(v)
    return lambda row: row.get(name)


# The engine orders NaN above every number and equal to itself; Python's NaN is unordered.
def _nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _eq(v: Any, p: Any) -> bool:
    return False if _nan(v) else v == p


def _lt(v: Any, p: Any) -> bool:
    return False if _nan(v) else v < p


def _le(v: Any, p: Any) -> bool:
    return False if _nan(v) else v <= p


def _gt(v: Any, p: Any) -> bool:
    return True if _nan(v) else v > p


def _ge(v: Any, p: Any) -> bool:
    return True if _nan(v) else v >= p


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": _eq, "<>": lambda v, p: not _eq(v, p), "<": _lt, "<=": _le, ">": _gt, ">=": _ge,
}  # fmt: skip


def _like(pattern: str) -> Callable[[str], Any]:
    """SQL LIKE (no escape character): `%` any run of characters, `_` any one."""
    parts = ["(?s)"]
    for char in pattern:
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return re.compile("".join(parts)).fullmatch
