"""Identity formats: resident identity numbers (GB 11643), unified social credit codes (GB 32100).

Each format comes in three forms that agree with each other:

- scalar: ``validate_ric`` / ``validate_uscc`` raise ``InvalidIdentifier`` naming the broken rule;
- Arrow: ``ric_valid_mask`` / ``uscc_valid_mask`` check whole columns with numpy, no per-row loop;
- DuckDB: ``ric_check_sql`` / ``uscc_check_sql`` give a boolean SQL expression for the lake loader.

Null handling in the column forms: a null input gives a null result (neither valid nor invalid),
so ``WHERE NOT (<expr>)`` never selects nulls; whether a null is allowed is the schema's
``required`` constraint, checked separately.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
from collections.abc import Callable, Collection
from importlib import resources
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ORG_WEIGHTS",
    "PROVINCE_CODES",
    "RIC_MIN_BIRTH",
    "RIC_WEIGHTS",
    "USCC_ALPHABET",
    "USCC_WEIGHTS",
    "InvalidIdentifier",
    "division_codes",
    "is_valid_ric",
    "is_valid_uscc",
    "make_ric",
    "make_uscc",
    "org_code_check_char",
    "ric_birth_date",
    "ric_check_char",
    "ric_check_sql",
    "ric_sex",
    "ric_valid_mask",
    "uscc_check_char",
    "uscc_check_sql",
    "uscc_valid_mask",
    "validate_ric",
    "validate_uscc",
]


class InvalidIdentifier(ValueError):
    """An identifier that breaks its standard; the message says which rule."""


# --------------------------------------------------------------------------- shared tables

# GB/T 2260 province-level codes (first two digits of a division code), incl. 71 台湾, 81/82 港澳.
PROVINCE_CODES: frozenset[str] = frozenset(
    ["11", "12", "13", "14", "15", "21", "22", "23"]
    + [str(c) for c in range(31, 38)]
    + [str(c) for c in range(41, 47)]
    + [str(c) for c in range(50, 55)]
    + [str(c) for c in range(61, 66)]
    + ["71", "81", "82"]
)

_DIGITS = frozenset("0123456789")

_RegionArg: TypeAlias = Collection[str] | None


@functools.cache
def division_codes() -> frozenset[str]:
    """The 6-digit division codes of the bundled table (Fujian, GB/T 2260), all levels."""
    text = resources.files("minyun.core").joinpath("data/divisions.csv").read_text("utf-8")
    return frozenset(row["code"] for row in csv.DictReader(io.StringIO(text)))


def _regions(regions: _RegionArg) -> frozenset[str]:
    return division_codes() if regions is None else frozenset(regions)


def _region_ok(region: str, regions: frozenset[str], strict: bool) -> bool:
    return region in regions or (not strict and region[:2] in PROVINCE_CODES)


@functools.lru_cache(maxsize=8)
def _region_table(regions: frozenset[str], strict: bool) -> npt.NDArray[np.bool_]:
    """Lookup table over all 10**6 six-digit codes: True where the region rule accepts it."""
    table = np.zeros(1_000_000, dtype=np.bool_)
    codes = [int(r) for r in regions if len(r) == 6 and set(r) <= _DIGITS]
    table[np.asarray(codes, dtype=np.int64)] = True
    if not strict:
        for prov in PROVINCE_CODES:
            base = int(prov) * 10_000
            table[base : base + 10_000] = True
    return table


def _today(today: dt.date | None) -> dt.date:
    return dt.date.today() if today is None else today


# --------------------------------------------------------------------------- GB 11643: RIC

RIC_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# ISO 7064 MOD 11-2 check character indexed by (weighted sum % 11): (12 - s % 11) % 11, 10 -> X.
_RIC_CHECK = "10X98765432"
RIC_MIN_BIRTH = dt.date(1850, 1, 1)


def ric_check_char(first17: str) -> str:
    """The GB 11643 check character (ISO 7064 MOD 11-2, 10 -> 'X') of the first 17 digits."""
    if len(first17) != 17 or not set(first17) <= _DIGITS:
        raise InvalidIdentifier("need exactly 17 digits to compute an identity check character")
    total = sum(int(c) * w for c, w in zip(first17, RIC_WEIGHTS, strict=True))
    return _RIC_CHECK[total % 11]


def validate_ric(
    value: str,
    *,
    strict_region: bool = False,
    regions: _RegionArg = None,
    today: dt.date | None = None,
) -> None:
    """Raise InvalidIdentifier unless value is a GB 11643 identity number.

    Rules: 18 characters, 17 digits then a digit or 'X'; the MOD 11-2 check character
    matches; the birth date is a calendar date from 1850-01-01 to today; the region code is
    in ``regions`` (default: the bundled Fujian divisions) or, unless ``strict_region``,
    starts with a GB/T 2260 province code.
    """
    if not isinstance(value, str):
        raise InvalidIdentifier(f"identity number must be a string, got {type(value).__name__}")
    if len(value) != 18:
        raise InvalidIdentifier(f"identity number must have 18 characters, got {len(value)}")
    for pos, char in enumerate(value[:17], start=1):
        if char not in _DIGITS:
            raise InvalidIdentifier(f"character {pos} must be a digit, got {char!r}")
    last = value[17]
    if last not in _DIGITS and last != "X":
        hint = " (use upper-case X)" if last == "x" else ""
        raise InvalidIdentifier(f"check character must be a digit or X, got {last!r}{hint}")
    expected = ric_check_char(value[:17])
    if expected != last:
        raise InvalidIdentifier(f"check digit should be {expected}, got {last}")
    ymd = value[6:14]
    try:
        birth = dt.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
    except ValueError:
        raise InvalidIdentifier(f"birth date {ymd} is not a calendar date") from None
    if birth < RIC_MIN_BIRTH:
        raise InvalidIdentifier(f"birth date {birth} is before {RIC_MIN_BIRTH}")
    if birth > _today(today):
        raise InvalidIdentifier(f"birth date {birth} is in the future")
    region = value[:6]
    if not _region_ok(region, _regions(regions), strict_region):
        if strict_region:
            raise InvalidIdentifier(f"region code {region} is not a known division code")
        raise InvalidIdentifier(f"region code {region} does not start with a province code")


def is_valid_ric(
    value: str,
    *,
    strict_region: bool = False,
    regions: _RegionArg = None,
    today: dt.date | None = None,
) -> bool:
    """True if validate_ric accepts value."""
    try:
        validate_ric(value, strict_region=strict_region, regions=regions, today=today)
    except InvalidIdentifier:
        return False
    return True


def make_ric(region: str, birth: dt.date, seq: int) -> str:
    """Build a valid identity number from region, birth date and sequence (odd = male)."""
    if len(region) != 6 or not set(region) <= _DIGITS:
        raise InvalidIdentifier(f"region code must be 6 digits, got {region!r}")
    if not 0 <= seq <= 999:
        raise InvalidIdentifier(f"sequence must be 0..999, got {seq}")
    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    value = first17 + ric_check_char(first17)
    validate_ric(value)
    return value


def ric_birth_date(value: str) -> dt.date:
    """The birth date encoded in a valid identity number (characters 7-14)."""
    validate_ric(value)
    return dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))


def ric_sex(value: str) -> Literal["M", "F"]:
    """'M' if the sequence (characters 15-17) of a valid identity number is odd, else 'F'."""
    validate_ric(value)
    return "M" if int(value[16]) % 2 == 1 else "F"


# --------------------------------------------------------------------------- GB 32100: USCC

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
USCC_WEIGHTS: tuple[int, ...] = tuple(pow(3, i, 31) for i in range(17))
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
# GB 11714 organisation code: digits keep their value, letters A..Z count 10..35.
ORG_WEIGHTS: tuple[int, ...] = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ORG_VALUE = {c: i for i, c in enumerate(_ORG_CHARS)}
# check = 11 - (sum % 11), 10 -> X, 11 -> 0; indexed by sum % 11.
_ORG_CHECK = "0X987654321"


def org_code_check_char(body8: str) -> str:
    """The GB 11714 check character of an 8-character organisation code body (MOD 11)."""
    if len(body8) != 8 or any(c not in _ORG_VALUE for c in body8):
        raise InvalidIdentifier("need 8 digits or upper-case letters for an organisation code")
    total = sum(_ORG_VALUE[c] * w for c, w in zip(body8, ORG_WEIGHTS, strict=True))
    return _ORG_CHECK[total % 11]


def uscc_check_char(first17: str) -> str:
    """The GB 32100 check character: 31 - (sum of value x 3**i mod 31) % 31, 31 -> '0'."""
    if len(first17) != 17 or any(c not in _USCC_VALUE for c in first17):
        raise InvalidIdentifier("need 17 credit-code characters to compute a check character")
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def validate_uscc(value: str) -> None:
    """Raise InvalidIdentifier unless value is a GB 32100 unified social credit code.

    Rules: 18 characters from USCC_ALPHABET; characters 3-8 (region) are digits; character
    17 is the GB 11714 check character of characters 9-16; character 18 is the GB 32100
    check character of the first 17.
    """
    if not isinstance(value, str):
        raise InvalidIdentifier(f"credit code must be a string, got {type(value).__name__}")
    if len(value) != 18:
        raise InvalidIdentifier(f"credit code must have 18 characters, got {len(value)}")
    for pos, char in enumerate(value, start=1):
        if char not in _USCC_VALUE:
            hint = " (use upper case)" if char.upper() in _USCC_VALUE else ""
            raise InvalidIdentifier(f"character {pos} {char!r} is not allowed{hint}")
    for pos, char in enumerate(value[2:8], start=3):
        if char not in _DIGITS:
            raise InvalidIdentifier(f"character {pos} is in the region code and must be a digit")
    org_expected = org_code_check_char(value[8:16])
    if org_expected != value[16]:
        raise InvalidIdentifier(
            f"organisation code check character should be {org_expected}, got {value[16]}"
        )
    expected = uscc_check_char(value[:17])
    if expected != value[17]:
        raise InvalidIdentifier(f"check character should be {expected}, got {value[17]}")


def is_valid_uscc(value: str) -> bool:
    """True if validate_uscc accepts value."""
    try:
        validate_uscc(value)
    except InvalidIdentifier:
        return False
    return True


def make_uscc(authority: str, kind: str, region: str, org_body8: str) -> str:
    """Build a valid credit code; both check characters (GB 11714, GB 32100) are computed."""
    for label, part, size in (("authority", authority, 1), ("type", kind, 1)):
        if len(part) != size or part not in _USCC_VALUE:
            raise InvalidIdentifier(f"{label} code must be one credit-code character, got {part!r}")
    if len(region) != 6 or not set(region) <= _DIGITS:
        raise InvalidIdentifier(f"region code must be 6 digits, got {region!r}")
    if len(org_body8) != 8 or any(c not in _USCC_VALUE for c in org_body8):
        raise InvalidIdentifier(
            f"organisation body must be 8 credit-code characters: {org_body8!r}"
        )
    first17 = authority + kind + region + org_body8 + org_code_check_char(org_body8)
    return first17 + uscc_check_char(first17)


# --------------------------------------------------------------------------- Arrow forms

_ArrowStrings: TypeAlias = "pa.Array | pa.ChunkedArray"
_U8 = npt.NDArray[np.uint8]
_Bool = npt.NDArray[np.bool_]
_I32 = npt.NDArray[np.int32]
# A check over an (n, width) byte matrix, one row per value, giving n booleans.
_MatrixCheck = Callable[[_U8], _Bool]


def _fixed_width_mask(values: _ArrowStrings, width: int, check: _MatrixCheck) -> pa.BooleanArray:
    """Run check on the rows of exactly `width` bytes as an (n, width) uint8 matrix."""
    if isinstance(values, pa.ChunkedArray):
        parts = [_fixed_width_mask(chunk, width, check) for chunk in values.chunks]
        return pa.concat_arrays(parts) if parts else pa.array([], pa.bool_())
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), pa.bool_())
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.string())
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise TypeError(f"expected a string array, got {values.type}")
    valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    lengths = pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
    take = valid & (lengths == width)
    sub = values if take.all() else values.filter(pa.array(take))
    k = len(sub)
    ok = np.zeros(0, dtype=np.bool_)
    if k:
        # Every kept row is exactly `width` bytes, so the rows sit back to back in the buffer.
        _, offsets_buf, data_buf = sub.buffers()
        off_type = np.int64 if pa.types.is_large_string(sub.type) else np.int32
        start = int(np.frombuffer(offsets_buf, dtype=off_type)[sub.offset])
        data = np.frombuffer(data_buf, dtype=np.uint8)[start : start + width * k]
        ok = check(data.reshape(k, width))
    result = np.zeros(len(values), dtype=np.bool_)
    result[take] = ok
    return pa.array(result, type=pa.bool_(), mask=~valid)


def _ymd_int(today: dt.date) -> int:
    return today.year * 10_000 + today.month * 100 + today.day


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0], dtype=np.int32)


def _ric_rows_ok(m: _U8, *, region_table: _Bool, max_ymd: int) -> _Bool:
    # One contiguous row per character position: column reductions stay cache-friendly.
    d = np.ascontiguousarray(m.T) - np.uint8(48)  # non-digits wrap round to > 9
    last = d[17]
    is_x = last == np.uint8(ord("X") - 48)
    ok = np.asarray((d[:17] <= 9).all(axis=0), dtype=np.bool_)
    ok &= (last <= 9) | is_x
    total = np.zeros(m.shape[0], dtype=np.int32)
    for i, w in enumerate(RIC_WEIGHTS):
        total += d[i] * np.int32(w)
    expected = (12 - total % 11) % 11
    ok &= expected == np.where(is_x, np.int32(10), last.astype(np.int32))
    year, month, day = _number(d, 6, 10), _number(d, 10, 12), _number(d, 12, 14)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    dim = _DAYS_IN_MONTH[np.clip(month, 0, 13)] + (leap & (month == 2))
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= dim)
    ymd = (year * 100 + month) * 100 + day
    ok &= (ymd >= _ymd_int(RIC_MIN_BIRTH)) & (ymd <= max_ymd)
    ok &= region_table[np.clip(_number(d, 0, 6), 0, 999_999)]
    return ok


def _number(d: _U8, start: int, stop: int) -> _I32:
    """Decimal value of digit rows start..stop-1 (garbage where they are not digits)."""
    out: _I32 = d[start].astype(np.int32)
    for i in range(start + 1, stop):
        np.multiply(out, 10, out=out)
        np.add(out, d[i], out=out)
    return out


def _lut(chars: str) -> _I32:
    table = np.full(256, -1, dtype=np.int32)
    for i, c in enumerate(chars):
        table[ord(c)] = i
    return table


_USCC_LUT = _lut(USCC_ALPHABET)
_ORG_LUT = _lut(_ORG_CHARS)
_ORG_CHECK_BYTES = np.frombuffer(_ORG_CHECK.encode(), dtype=np.uint8)


def _uscc_rows_ok(m: _U8) -> _Bool:
    cols = np.ascontiguousarray(m.T)
    v = _USCC_LUT[cols]
    ok = np.asarray((v >= 0).all(axis=0), dtype=np.bool_)
    ok &= np.asarray(((cols[2:8] - np.uint8(48)) <= 9).all(axis=0), dtype=np.bool_)
    org = np.zeros(m.shape[0], dtype=np.int32)
    for i, w in enumerate(ORG_WEIGHTS):
        org += _ORG_LUT[cols[8 + i]] * np.int32(w)
    ok &= cols[16] == _ORG_CHECK_BYTES[org % 11]
    total = np.zeros(m.shape[0], dtype=np.int32)
    for i, w in enumerate(USCC_WEIGHTS):
        total += v[i] * np.int32(w)
    ok &= v[17] == (31 - total % 31) % 31
    return ok


def ric_valid_mask(
    values: _ArrowStrings,
    *,
    strict_region: bool = False,
    regions: _RegionArg = None,
    today: dt.date | None = None,
) -> pa.BooleanArray:
    """validate_ric over a string column at once; null in, null out."""
    table = _region_table(_regions(regions), strict_region)
    return _fixed_width_mask(
        values,
        18,
        functools.partial(_ric_rows_ok, region_table=table, max_ymd=_ymd_int(_today(today))),
    )


def uscc_valid_mask(values: _ArrowStrings) -> pa.BooleanArray:
    """validate_uscc over a string column at once; null in, null out."""
    return _fixed_width_mask(values, 18, _uscc_rows_ok)


# --------------------------------------------------------------------------- DuckDB SQL forms


def _quote_column(column: str) -> str:
    """The column as a double-quoted identifier; names with quotes or control chars refused."""
    if not column or any(c in column for c in "\"'`") or not column.isprintable():
        raise ValueError(f"unsafe column name for SQL: {column!r}")
    return f'"{column}"'


def _weighted_mod_sql(q: str, start: int, weights: Collection[int], value: str, mod: int) -> str:
    """SQL for (sum of w_i x value(char_i)) mod `mod`, over characters start.. of q, in 0..mod-1.

    Done as one list expression so DuckDB evaluates it without relying on common
    subexpression elimination; rpad keeps the list length fixed even for short or odd
    inputs (list_dot_product raises on unequal lengths, and AND does not short-circuit).
    """
    size = len(weights)
    chars = f"string_split(rpad(substr({q}, {start}, {size}), {size}, '0'), '')"
    dot = f"list_dot_product(list_transform({chars}, lambda c: {value}), {list(weights)})"
    return f"((CAST({dot} AS BIGINT) % {mod}) + {mod}) % {mod}"


def _listed_regions(regions: _RegionArg, strict: bool) -> list[str]:
    """The six-digit codes a region rule lists one by one (not strict: those outside the provinces)."""
    codes = sorted(r for r in _regions(regions) if len(r) == 6 and set(r) <= _DIGITS)
    if not strict:  # the province prefix already admits these
        codes = [c for c in codes if c[:2] not in PROVINCE_CODES]
    return codes


def _null_guard(q: str, body: str) -> str:
    return f"(CASE WHEN {q} IS NULL THEN NULL ELSE coalesce(({body}), false) END)"


def ric_check_sql(
    column: str,
    *,
    strict_region: bool = False,
    regions: _RegionArg = None,
    today: dt.date | None = None,
) -> str:
    """A DuckDB boolean expression equal to is_valid_ric(column); null for null.

    ``today`` defaults to DuckDB's ``current_date`` at query time.
    """
    q = _quote_column(column)
    total = _weighted_mod_sql(q, 1, RIC_WEIGHTS, "ascii(c) - 48", 11)
    birth = f"CAST(try_strptime(substr({q}, 7, 8), '%Y%m%d') AS DATE)"
    upper = "current_date" if today is None else f"DATE '{today.isoformat()}'"
    codes = _listed_regions(regions, strict_region)
    region = f"substr({q}, 1, 6) IN ({', '.join(repr(c) for c in codes)})" if codes else "false"
    if not strict_region:
        provinces = ", ".join(repr(p) for p in sorted(PROVINCE_CODES))
        region = f"(substr({q}, 1, 2) IN ({provinces}) OR {region})"
    body = (
        f"regexp_full_match({q}, '[0-9]{{17}}[0-9X]')"
        f" AND substr({q}, 18, 1) = substr('{_RIC_CHECK}', {total} + 1, 1)"
        f" AND coalesce({birth} BETWEEN DATE '{RIC_MIN_BIRTH.isoformat()}' AND {upper}, false)"
        f" AND {region}"
    )
    return _null_guard(q, body)


def uscc_check_sql(column: str) -> str:
    """A DuckDB boolean expression equal to is_valid_uscc(column); null for null."""
    q = _quote_column(column)
    cls = "[0-9A-HJ-NPQRTUWXY]"
    org = _weighted_mod_sql(q, 9, ORG_WEIGHTS, f"instr('{_ORG_CHARS}', c) - 1", 11)
    total = _weighted_mod_sql(q, 1, USCC_WEIGHTS, f"instr('{USCC_ALPHABET}', c) - 1", 31)
    body = (
        f"regexp_full_match({q}, '{cls}{{2}}[0-9]{{6}}{cls}{{10}}')"
        f" AND substr({q}, 17, 1) = substr('{_ORG_CHECK}', {org} + 1, 1)"
        f" AND substr({q}, 18, 1) = substr('{USCC_ALPHABET}', (31 - {total}) % 31 + 1, 1)"
    )
    return _null_guard(q, body)
