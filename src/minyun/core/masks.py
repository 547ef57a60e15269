"""Masks: what a reader sees of a field shown masked, in two forms that agree value for value.

A mask is parsed from a spec written in the Table Schema (`"mask": "keep(6,4)"`):

==============================  ==========================================================
spec                            result (text; NULL in gives NULL out)
==============================  ==========================================================
``keep(F,L)``                   first F and last L characters, one ``*`` per character in
                                between: ``350102********1234``; a value of at most F+L
                                characters is all ``*`` (its length only)
``name``                        Chinese name, surname kept, given name masked but for its
                                last character: ``林*闽``, ``林*``, ``欧阳*闽``
``address(province|city|county)``  the address cut to that division level:
                                ``福建省福州市``; a level not written gives the coarser
                                levels found, none found gives NULL
``date(year|month)``            ``YYYY`` / ``YYYY-MM`` of a date, a timestamp (China
                                time) or ISO text; other text gives NULL
``pseudonym``                   HMAC-SHA-256 of the value's text under the consumer's key,
                                first 32 hex digits (128 bits)
``null``                        NULL
``partial`` / ``hash`` /        legacy aliases of ``keep(3,4)`` / ``pseudonym`` / ``null``
``full``
==============================  ==========================================================

Each mask gives a DuckDB SQL expression (`Mask.sql`, for the lake reader: the mask runs inside
the query) and an Arrow compute function (`Mask.arrow`, for the serving-index reader, which has
a handful of rows already in Arrow). Lengths and slices count characters (code points) on both
sides, and both sides use the same RE2 patterns; `tests/core/test_masks.py` runs them against
each other on random text. See docs/decisions/0006-masks.md.

`Mask.values` is the same mask on a few Python values (the one row of a key lookup), where an
Arrow call per field costs more than the lookup's database round trip. Keep, name, pseudonym,
null and date of a `date` work on the values' text directly; anything else (addresses,
dates of text or timestamps, a type without a plain text form) goes through `arrow`. The same
differential tests run it against the other two.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast, get_args

import pyarrow as pa
import pyarrow.compute as pc

from minyun.core.errors import Invalid

__all__ = [
    "ALIASES",
    "COMPOUND_SURNAMES",
    "KINDS",
    "PSEUDONYM_HEX_DIGITS",
    "Address",
    "Date",
    "Keep",
    "Mask",
    "Name",
    "Null",
    "Pseudonym",
    "parse_mask",
    "pseudonym_key",
]

AddressLevel = Literal["province", "city", "county"]
DateLevel = Literal["year", "month"]
KINDS = ("keep", "name", "address", "date", "pseudonym", "null")
ALIASES = {"partial": "keep(3,4)", "hash": "pseudonym", "full": "null"}
PSEUDONYM_HEX_DIGITS = 32
MAX_KEEP = 64

# Two-character surnames (复姓) kept whole by `name` when the name has at least three
# characters; a two-character name is always surname + one given character.
COMPOUND_SURNAMES = (
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
    "宇文", "司徒", "夏侯", "轩辕", "令狐", "钟离", "闾丘", "端木", "百里", "呼延",
    "南宫", "澹台", "公冶", "太史", "申屠", "独孤", "司空", "万俟", "拓跋", "西门",
    "东郭", "赫连", "第五", "濮阳", "淳于", "单于", "公羊", "仲孙", "宗政", "漆雕",
    "乐正", "壤驷", "公良", "亓官", "司寇", "子车", "颛孙", "巫马", "公西", "鲜于",
    "谷梁", "左丘", "东门", "羊舌", "微生", "闻人", "公仪", "梁丘", "南门",
)  # fmt: skip

# China Standard Time has no daylight saving: a fixed offset, the same in SQL and Arrow.
_CHINA_OFFSET_US = 8 * 3600 * 1_000_000

# Address levels, by the suffix of each division's name (RE2, shared by DuckDB and Arrow).
# Division names are written in the basic CJK block; \p{Han} would be ten times slower to
# compile, and Arrow compiles a pattern on every call.
_HAN = r"[\x{4E00}-\x{9FFF}]"
_MUNICIPALITY = "(?:北京|天津|上海|重庆)市"
_PROVINCE = rf"(?:{_HAN}{{2,3}}省|{_HAN}{{2,8}}?自治区|{_HAN}{{2}}特别行政区)"
_CITY = rf"(?:{_HAN}{{2,10}}?自治州|{_HAN}{{2,6}}?地区|{_HAN}{{2,6}}?盟|{_HAN}{{2,4}}?市)"
_COUNTY = rf"(?:{_HAN}{{1,8}}?(?:自治县|自治旗|县|区|市|旗))"
_ADDRESS_PATTERNS = {
    "province": rf"^((?:{_MUNICIPALITY}|{_PROVINCE})?)",
    "city": rf"^((?:{_MUNICIPALITY}|{_PROVINCE}?{_CITY}?))",
    "county": rf"^((?:{_MUNICIPALITY}|{_PROVINCE}?{_CITY}?){_COUNTY}?)",
}
_SPACE = r"[\s\x{3000}]+"

# ISO text: YYYY, YYYY-MM, YYYY-MM-DD[ T…]; a date or timestamp is first turned into such text.
_MONTH = "(?:0[1-9]|1[0-2])"
_DATE_PATTERNS = {
    "year": rf"^([0-9]{{4}})(?:-{_MONTH}(?:[-T ]|$)|$)",
    "month": rf"^([0-9]{{4}}-{_MONTH})(?:[-T ]|$)",
}

_STAR, _EMPTY, _NULL_TEXT = pa.scalar("*"), pa.scalar(""), pa.scalar(None, pa.string())
_COMPOUND_SET = pa.array(COMPOUND_SURNAMES)
_COMPOUND_NAMES = frozenset(COMPOUND_SURNAMES)
_STRING_TYPES = frozenset({"string"})
_TEXT_TYPES = frozenset({"string", "integer", "year"})


class Mask(ABC):
    """A parsed mask: its normalised spec, the field types it applies to, SQL and Arrow forms."""

    # Table Schema types the mask applies to (their text form is the same in DuckDB and Arrow).
    types: ClassVar[frozenset[str]]

    @property
    @abstractmethod
    def spec(self) -> str:
        """The normalised spec, e.g. ``keep(3,4)`` for ``partial``."""

    @abstractmethod
    def sql(self, column_sql: str, *, key: bytes) -> str:
        """A DuckDB expression giving the masked VARCHAR (or NULL) of an already-quoted column."""

    @abstractmethod
    def arrow(self, values: pa.Array, *, key: bytes) -> pa.Array:
        """The masked values as a string array, equal to what `sql` gives for them."""

    def values(self, values: Sequence[Any], type_: pa.DataType, *, key: bytes) -> list[str | None]:
        """The masked Python values of Arrow type `type_`, equal to what `arrow` gives for them.

        For a handful of values (a key lookup's row); many values belong in `arrow`.
        """
        texts = _texts(values, type_)
        if texts is None:
            return self._via_arrow(values, type_, key=key)
        return [None if t is None else self._one(t, key) for t in texts]

    def _one(self, text: str, key: bytes) -> str | None:
        """The masked text of one value (masks without a text rule of their own: never called)."""
        raise NotImplementedError

    def _via_arrow(self, values: Sequence[Any], type_: pa.DataType, *, key: bytes) -> list[Any]:
        masked: list[Any] = self.arrow(pa.array(values, type_), key=key).to_pylist()
        return masked

    def __str__(self) -> str:
        return self.spec


@dataclass(frozen=True)
class Keep(Mask):
    """First and last characters kept, each one in between replaced by ``*``."""

    first: int
    last: int
    types: ClassVar[frozenset[str]] = _TEXT_TYPES

    @property
    def spec(self) -> str:
        return f"keep({self.first},{self.last})"

    def sql(self, column_sql: str, *, key: bytes) -> str:
        s = f"CAST({column_sql} AS VARCHAR)"
        f, last, kept = self.first, self.last, self.first + self.last
        return (
            f"CASE WHEN length({s}) > {kept} "
            f"THEN left({s}, {f}) || repeat('*', length({s}) - {kept}) || right({s}, {last}) "
            f"ELSE repeat('*', length({s})) END"
        )

    def arrow(self, values: pa.Array, *, key: bytes) -> pa.Array:
        s = _text(values)
        n = pc.utf8_length(s)
        kept = _i32(self.first + self.last)
        middle = pc.binary_repeat(_STAR, pc.max_element_wise(pc.subtract(n, kept), _i32(0)))
        joined = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(s, 0, self.first), middle, _right(s, self.last), _EMPTY
        )
        return pc.if_else(pc.greater(n, kept), joined, pc.binary_repeat(_STAR, n))

    def _one(self, text: str, key: bytes) -> str:
        n, kept = len(text), self.first + self.last
        if n <= kept:
            return "*" * n
        return text[: self.first] + "*" * (n - kept) + (text[n - self.last :])


@dataclass(frozen=True)
class Name(Mask):
    """A Chinese name: surname kept (two characters for a compound surname), given name masked
    but for its last character. One character or fewer is all ``*``."""

    types: ClassVar[frozenset[str]] = _STRING_TYPES

    @property
    def spec(self) -> str:
        return "name"

    def sql(self, column_sql: str, *, key: bytes) -> str:
        s = f"CAST({column_sql} AS VARCHAR)"
        n = f"length({s})"
        compound = ", ".join(_literal(c) for c in COMPOUND_SURNAMES)
        k = f"(CASE WHEN {n} >= 3 AND left({s}, 2) IN ({compound}) THEN 2 ELSE 1 END)"
        return (
            f"CASE WHEN {n} <= 1 THEN repeat('*', {n}) "
            f"WHEN {n} - {k} = 1 THEN left({s}, {k}) || '*' "
            f"ELSE left({s}, {k}) || repeat('*', {n} - {k} - 1) || right({s}, 1) END"
        )

    def arrow(self, values: pa.Array, *, key: bytes) -> pa.Array:
        s = _text(values)
        n = pc.utf8_length(s)
        two = pc.utf8_slice_codeunits(s, 0, 2)
        compound = pc.and_(pc.greater_equal(n, _i32(3)), pc.is_in(two, value_set=_COMPOUND_SET))
        head = pc.if_else(compound, two, pc.utf8_slice_codeunits(s, 0, 1))
        given = pc.subtract(n, pc.if_else(compound, _i32(2), _i32(1)))
        stars = pc.binary_repeat(_STAR, pc.max_element_wise(pc.subtract(given, _i32(1)), _i32(1)))
        # One given character: "*"; more: "*" for each but the last, then the last.
        tail = pc.binary_join_element_wise(
            stars, pc.if_else(pc.equal(given, _i32(1)), _EMPTY, _right(s, 1)), _EMPTY
        )
        masked = pc.binary_join_element_wise(head, tail, _EMPTY)
        return pc.if_else(pc.less_equal(n, _i32(1)), pc.binary_repeat(_STAR, n), masked)

    def values(self, values: Sequence[Any], type_: pa.DataType, *, key: bytes) -> list[str | None]:
        if not _is_string(type_):
            return self._via_arrow(values, type_, key=key)
        return super().values(values, type_, key=key)

    def _one(self, text: str, key: bytes) -> str:
        n = len(text)
        if n <= 1:
            return "*" * n
        head = text[:2] if n >= 3 and text[:2] in _COMPOUND_NAMES else text[:1]
        given = n - len(head)
        return head + "*" if given == 1 else head + "*" * (given - 1) + text[-1]


@dataclass(frozen=True)
class Address(Mask):
    """The leading divisions of an address, down to `level`; whitespace removed first."""

    level: AddressLevel
    types: ClassVar[frozenset[str]] = _STRING_TYPES

    @property
    def spec(self) -> str:
        return f"address({self.level})"

    def sql(self, column_sql: str, *, key: bytes) -> str:
        s = f"regexp_replace(CAST({column_sql} AS VARCHAR), {_literal(_SPACE)}, '', 'g')"
        pattern = _literal(_ADDRESS_PATTERNS[self.level])
        return f"nullif(regexp_extract({s}, {pattern}, 1), '')"

    def arrow(self, values: pa.Array, *, key: bytes) -> pa.Array:
        s = pc.replace_substring_regex(_text(values), _SPACE, "")
        return _extract(s, _ADDRESS_PATTERNS[self.level])

    def values(self, values: Sequence[Any], type_: pa.DataType, *, key: bytes) -> list[str | None]:
        # RE2 patterns (its \s, its $): run where they are defined.
        return self._via_arrow(values, type_, key=key)


@dataclass(frozen=True)
class Date(Mask):
    """Year or year-month as ISO text. A timestamp with a time zone is read in China time
    (UTC+8); a date, a naive timestamp and text as written."""

    level: DateLevel
    types: ClassVar[frozenset[str]] = frozenset({"date", "datetime", "string"})

    @property
    def spec(self) -> str:
        return f"date({self.level})"

    def sql(self, column_sql: str, *, key: bytes) -> str:
        # Both branches bind for every type the mask applies to; typeof picks the right one.
        china = (
            f"CAST(make_timestamp(epoch_us(try_cast({column_sql} AS TIMESTAMPTZ))"
            f" + {_CHINA_OFFSET_US}) AS VARCHAR)"
        )
        text = (
            f"CASE WHEN typeof({column_sql}) = 'TIMESTAMP WITH TIME ZONE' "
            f"THEN {china} ELSE CAST({column_sql} AS VARCHAR) END"
        )
        return f"nullif(regexp_extract({text}, {_literal(_DATE_PATTERNS[self.level])}, 1), '')"

    def arrow(self, values: pa.Array, *, key: bytes) -> pa.Array:
        if pa.types.is_timestamp(values.type) and values.type.tz is not None:
            china = pa.timestamp(values.type.unit, tz="+08:00")
            values = pc.local_timestamp(values.cast(china))
        return _extract(_text(values), _DATE_PATTERNS[self.level])

    def values(self, values: Sequence[Any], type_: pa.DataType, *, key: bytes) -> list[str | None]:
        # A date's text is always YYYY-MM-DD (years 1-9999 in Python); text and timestamps
        # are read by the RE2 patterns, in Arrow.
        if not pa.types.is_date32(type_):
            return self._via_arrow(values, type_, key=key)
        return super().values(values, type_, key=key)

    def _one(self, text: str, key: bytes) -> str:
        return text[:4] if self.level == "year" else text[:7]


@dataclass(frozen=True)
class Pseudonym(Mask):
    """HMAC-SHA-256 of the value's text under the reader's key, first 32 lower-case hex digits."""

    types: ClassVar[frozenset[str]] = frozenset({"string", "integer", "year", "date"})

    @property
    def spec(self) -> str:
        return "pseudonym"

    def sql(self, column_sql: str, *, key: bytes) -> str:
        # HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)); the padded keys are computed here
        # and embedded as hex, so DuckDB needs only sha256, unhex and blob concatenation.
        inner, outer = _padded_keys(key)
        message = f"encode(CAST({column_sql} AS VARCHAR))"
        digest = f"sha256(unhex('{outer}') || unhex(sha256(unhex('{inner}') || {message})))"
        return f"left({digest}, {PSEUDONYM_HEX_DIGITS})"

    def arrow(self, values: pa.Array, *, key: bytes) -> pa.Array:
        # Arrow compute has no cryptographic hash, so this one mask hashes in Python: once per
        # distinct value (dictionary encoding), with the keyed state prepared once. The serving
        # reader masks a handful of rows; handing them to DuckDB would cost more than hashing.
        _check_key(key)
        encoded = pc.dictionary_encode(_text(values))
        base = hmac.new(key, digestmod=hashlib.sha256)
        digests = []
        for text in encoded.dictionary.to_pylist():
            h = base.copy()
            h.update(text.encode())
            digests.append(h.hexdigest()[:PSEUDONYM_HEX_DIGITS])
        return pa.array(digests, pa.string()).take(encoded.indices)

    def values(self, values: Sequence[Any], type_: pa.DataType, *, key: bytes) -> list[str | None]:
        _check_key(key)
        return super().values(values, type_, key=key)

    def _one(self, text: str, key: bytes) -> str:
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_DIGITS]


@dataclass(frozen=True)
class Null(Mask):
    """Nothing: NULL of type text."""

    types: ClassVar[frozenset[str]] = frozenset(
        {"string", "integer", "number", "boolean", "date", "datetime", "time", "year"}
    )

    @property
    def spec(self) -> str:
        return "null"

    def sql(self, column_sql: str, *, key: bytes) -> str:
        return "CAST(NULL AS VARCHAR)"

    def arrow(self, values: pa.Array, *, key: bytes) -> pa.Array:
        return pa.nulls(len(values), pa.string())

    def values(self, values: Sequence[Any], type_: pa.DataType, *, key: bytes) -> list[str | None]:
        return [None] * len(values)


_SPEC = re.compile(r"([a-z]+)(?:\((.*)\))?", re.DOTALL)


def parse_mask(spec: str) -> Mask:
    """The mask a spec names; Invalid, saying what is accepted, if it names none."""
    if not isinstance(spec, str):
        raise Invalid(f"a mask is a text spec, not {type(spec).__name__}", field="mask")
    text = ALIASES.get(spec.strip(), spec.strip())
    match = _SPEC.fullmatch(text)
    if match is None or match.group(1) not in KINDS:
        raise Invalid(
            f"unknown mask {spec!r}: use keep(F,L), name, address(province|city|county), "
            "date(year|month), pseudonym or null",
            field="mask",
        )
    kind, args = match.group(1), match.group(2)
    parts = [a.strip() for a in args.split(",")] if args is not None else []
    if kind == "keep":
        return _keep(spec, parts)
    if kind == "address":
        return Address(cast(AddressLevel, _level(spec, kind, parts, get_args(AddressLevel))))
    if kind == "date":
        return Date(cast(DateLevel, _level(spec, kind, parts, get_args(DateLevel))))
    if args is not None:
        raise Invalid(f"mask {spec!r}: {kind} takes no arguments", field="mask")
    if kind == "name":
        return Name()
    return Pseudonym() if kind == "pseudonym" else Null()


def pseudonym_key(node_secret: bytes, consumer: str) -> bytes:
    """The consumer's pseudonym key: HMAC-SHA-256(node secret, "minyun.pseudonym\\0" + consumer).

    One consumer always gets the same pseudonyms; two consumers' pseudonyms of one value cannot
    be linked without the node secret.
    """
    if not node_secret:
        raise Invalid("pseudonyms need a node secret", field="node_secret")
    if not consumer:
        raise Invalid("pseudonyms need the consumer's id", field="consumer")
    message = b"minyun.pseudonym\0" + consumer.encode()
    return hmac.new(node_secret, message, hashlib.sha256).digest()


def _keep(spec: str, parts: list[str]) -> Keep:
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise Invalid(f"mask {spec!r}: keep takes two whole numbers, keep(F,L)", field="mask")
    first, last = int(parts[0]), int(parts[1])
    if first > MAX_KEEP or last > MAX_KEEP:
        raise Invalid(f"mask {spec!r}: keep at most {MAX_KEEP} characters each side", field="mask")
    return Keep(first, last)


def _level(spec: str, kind: str, parts: list[str], levels: tuple[str, ...]) -> str:
    if len(parts) != 1 or parts[0] not in levels:
        raise Invalid(f"mask {spec!r}: use {kind}({'|'.join(levels)})", field="mask")
    return parts[0]


def _literal(text: str) -> str:
    """A DuckDB string literal (standard strings: backslashes are literal, quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _text(values: pa.Array) -> pa.Array:
    """The values as text, as DuckDB's CAST(… AS VARCHAR) writes them for the mask's types."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values.cast(pa.string())


def _is_string(type_: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
    )


def _texts(values: Sequence[Any], type_: pa.DataType) -> list[str | None] | None:
    """The values' text as `_text` gives it, for the types whose text Python writes alike
    (strings, integers, dates); None for any other type."""
    if _is_string(type_):
        return [None if v is None else str(v) for v in values]
    if pa.types.is_integer(type_):
        return [None if v is None else str(int(v)) for v in values]
    if pa.types.is_date32(type_):
        return [None if v is None else v.isoformat() for v in values]
    return None


@functools.lru_cache(maxsize=256)
def _i32(value: int) -> pa.Scalar:
    # utf8_length gives int32; a typed scalar spares pyarrow inferring one on every call.
    return pa.scalar(value, pa.int32())


def _right(s: pa.Array, count: int) -> pa.Array:
    # utf8_slice_codeunits(start=-0) would be the whole string, not none of it.
    if count == 0:
        return pc.utf8_slice_codeunits(s, 0, 0)
    return pc.utf8_slice_codeunits(s, -count)


def _extract(s: pa.Array, pattern: str) -> pa.Array:
    """Group 1 of `pattern`, NULL when it is empty or does not match (as nullif(…, '') in SQL)."""
    named = pattern.replace("(", "(?P<g>", 1)
    found = pc.struct_field(pc.extract_regex(s, named), [0])
    return pc.if_else(pc.equal(found, _EMPTY), _NULL_TEXT, found)


def _check_key(key: bytes) -> None:
    if not key:
        raise Invalid("a pseudonym needs the consumer's key", field="key")


def _padded_keys(key: bytes) -> tuple[str, str]:
    """HMAC's inner and outer padded keys (RFC 2104) as hex, for SHA-256's 64-byte block."""
    _check_key(key)
    block = key if len(key) <= 64 else hashlib.sha256(key).digest()
    block = block.ljust(64, b"\0")
    inner = bytes(b ^ 0x36 for b in block).hex()
    outer = bytes(b ^ 0x5C for b in block).hex()
    return inner, outer
