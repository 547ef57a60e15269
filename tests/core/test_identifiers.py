"""GB 11643 identity numbers and GB 32100 credit codes: scalar, Arrow and DuckDB forms agree."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Sequence

import duckdb
import pyarrow as pa
import pytest

from minyun.core.identifiers import (
    USCC_ALPHABET,
    InvalidIdentifier,
    division_codes,
    is_valid_ric,
    is_valid_uscc,
    make_ric,
    make_uscc,
    org_code_check_char,
    ric_birth_date,
    ric_check_char,
    ric_check_sql,
    ric_sex,
    ric_valid_mask,
    uscc_check_char,
    uscc_check_sql,
    uscc_valid_mask,
    validate_ric,
    validate_uscc,
)

# The two worked examples printed in GB 11643-1999 itself.
RIC_EXAMPLES = ["11010519491231002X", "440524188001010014"]
# A published Fuzhou credit code; both its check characters verify (org code M000100Y -> 4).
USCC_EXAMPLES = ["91350100M000100Y43"]
RIC_CHARS = "0123456789X"
TODAY = dt.date(2026, 1, 1)


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    yield connection
    connection.close()


def sql_ric(
    con: duckdb.DuckDBPyConnection, values: Sequence[str | None], *, strict_region: bool = False
) -> list[object]:
    con.register("ric_values", pa.table({"v": pa.array(values, pa.string())}))
    expr = ric_check_sql("v", strict_region=strict_region, today=TODAY)
    rows = con.sql(f"SELECT {expr} FROM ric_values").fetchall()
    con.unregister("ric_values")
    return [r[0] for r in rows]


def sql_uscc(con: duckdb.DuckDBPyConnection, values: Sequence[str | None]) -> list[object]:
    con.register("uscc_values", pa.table({"v": pa.array(values, pa.string())}))
    rows = con.sql(f"SELECT {uscc_check_sql('v')} FROM uscc_values").fetchall()
    con.unregister("uscc_values")
    return [r[0] for r in rows]


def single_changes(value: str, alphabet: str) -> list[str]:
    return [
        value[:pos] + char + value[pos + 1 :]
        for pos in range(len(value))
        for char in alphabet
        if char != value[pos]
    ]


# --------------------------------------------------------------------------- RIC scalar


@pytest.mark.parametrize("value", RIC_EXAMPLES)
def test_standard_ric_examples_are_valid(value: str) -> None:
    validate_ric(value)
    assert is_valid_ric(value)
    assert ric_check_char(value[:17]) == value[17]


def test_ric_birth_date_and_sex_follow_the_standard_examples() -> None:
    assert ric_birth_date("11010519491231002X") == dt.date(1949, 12, 31)
    assert ric_sex("11010519491231002X") == "F"  # sequence 002 is even
    assert ric_birth_date("440524188001010014") == dt.date(1880, 1, 1)
    assert ric_sex("440524188001010014") == "M"  # sequence 001 is odd


@pytest.mark.parametrize("value", RIC_EXAMPLES)
def test_every_single_character_change_of_a_ric_is_rejected(value: str) -> None:
    changed = single_changes(value, RIC_CHARS)
    assert len(changed) == 18 * 10
    for bad in changed:
        assert not is_valid_ric(bad), bad
        # MOD 11-2 catches every single substitution on its own (all weights are non-zero
        # mod the prime 11), so even a change leaving a real date and region is caught.
        if "X" not in bad[:17]:
            assert ric_check_char(bad[:17]) != bad[17], bad
    assert not any(ric_valid_mask(pa.array(changed), today=TODAY).to_pylist())


def test_single_character_changes_of_a_ric_are_rejected_by_sql(
    con: duckdb.DuckDBPyConnection,
) -> None:
    changed = [bad for v in RIC_EXAMPLES for bad in single_changes(v, RIC_CHARS)]
    assert sql_ric(con, changed) == [False] * len(changed)
    assert sql_ric(con, RIC_EXAMPLES) == [True, True]


def checked(first17: str) -> str:
    """first17 plus its right check character, so only the rule under test is broken."""
    return first17 + ric_check_char(first17)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("110105194912310023", "check digit should be X, got 3"),
        ("11010519491231002x", r"got 'x' \(use upper-case X\)"),
        ("1101051949123100", "must have 18 characters, got 16"),
        ("1101A5194912310020", "character 5 must be a digit, got 'A'"),
        (checked("11010519490230002"), "birth date 19490230 is not a calendar date"),
        (checked("11010518491231002"), "before 1850-01-01"),
        (checked("99010519491231002"), "region code 990105 does not start with a province code"),
    ],
)
def test_invalid_ric_says_which_rule_it_breaks(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason):
        validate_ric(value)


def test_future_birth_date_is_rejected() -> None:
    tomorrow = TODAY + dt.timedelta(days=1)
    value = checked(f"350102{tomorrow:%Y%m%d}001")
    assert is_valid_ric(value, today=tomorrow)
    with pytest.raises(InvalidIdentifier, match="in the future"):
        validate_ric(value, today=TODAY)


def test_strict_region_needs_a_code_from_the_table() -> None:
    beijing = RIC_EXAMPLES[0]
    assert is_valid_ric(beijing)
    with pytest.raises(InvalidIdentifier, match="not a known division code"):
        validate_ric(beijing, strict_region=True)
    assert is_valid_ric(beijing, strict_region=True, regions={"110105"})
    assert "350102" in division_codes() and "350000" in division_codes()
    fuzhou = make_ric("350102", dt.date(1990, 5, 17), 123)
    assert is_valid_ric(fuzhou, strict_region=True)


def test_make_ric_round_trips() -> None:
    value = make_ric("350583", dt.date(2000, 2, 29), 7)
    assert value[:17] == "35058320000229007"
    assert ric_birth_date(value) == dt.date(2000, 2, 29)
    assert ric_sex(value) == "M"
    with pytest.raises(InvalidIdentifier):
        make_ric("3501", dt.date(2000, 1, 1), 1)
    with pytest.raises(InvalidIdentifier):
        make_ric("350102", dt.date(2000, 1, 1), 1000)


# --------------------------------------------------------------------------- USCC scalar


@pytest.mark.parametrize("value", USCC_EXAMPLES)
def test_published_uscc_example_is_valid(value: str) -> None:
    validate_uscc(value)
    assert org_code_check_char(value[8:16]) == value[16]
    assert uscc_check_char(value[:17]) == value[17]


def test_make_uscc_rebuilds_the_published_example() -> None:
    assert make_uscc("9", "1", "350100", "M000100Y") == "91350100M000100Y43"


def test_constructed_usccs_are_valid() -> None:
    rng = random.Random(7)
    for _ in range(200):
        body = "".join(rng.choice(USCC_ALPHABET) for _ in range(8))
        region = rng.choice(sorted(division_codes()))
        code = make_uscc(rng.choice("159Y"), rng.choice("123"), region, body)
        validate_uscc(code)


def uscc_examples() -> list[str]:
    return [
        *USCC_EXAMPLES,
        make_uscc("9", "1", "350102", "MA2XY0K7"),
        make_uscc("5", "2", "350200", "X0000000"),
    ]


@pytest.mark.parametrize("value", uscc_examples())
def test_every_single_character_change_of_a_uscc_is_rejected(value: str) -> None:
    changed = single_changes(value, USCC_ALPHABET)
    assert len(changed) == 18 * 30
    for bad in changed:
        assert not is_valid_uscc(bad), bad
        # 3**i mod 31 are non-zero weights mod the prime 31: the last check alone catches it.
        assert uscc_check_char(bad[:17]) != bad[17], bad
    assert not any(uscc_valid_mask(pa.array(changed)).to_pylist())


def test_single_character_changes_of_a_uscc_are_rejected_by_sql(
    con: duckdb.DuckDBPyConnection,
) -> None:
    changed = [bad for v in uscc_examples() for bad in single_changes(v, USCC_ALPHABET)]
    assert sql_uscc(con, changed) == [False] * len(changed)
    assert sql_uscc(con, uscc_examples()) == [True] * 3


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("91350100M000100Y44", "check character should be 3, got 4"),
        ("91350100M000100Y53", "organisation code check character should be 4, got 5"),
        ("91350100I000100Y43", "character 9 'I' is not allowed"),
        ("91350100m000100Y43", r"'m' is not allowed \(use upper case\)"),
        ("913501A0M000100Y43", "character 7 is in the region code"),
        ("91350100M000100Y4", "must have 18 characters, got 17"),
    ],
)
def test_invalid_uscc_says_which_rule_it_breaks(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason):
        validate_uscc(value)


# --------------------------------------------------------------------------- agreement


def ric_corpus(rng: random.Random, size: int) -> list[str | None]:
    """Valid identity numbers and near misses: each kind of damage, check char kept right."""
    codes = sorted(division_codes())
    start, span = dt.date(1850, 1, 1), (TODAY - dt.date(1850, 1, 1)).days
    out: list[str | None] = []
    while len(out) < size:
        kind = rng.randrange(12)
        if kind < 2:
            region = rng.choice(codes)
        else:
            region = f"{rng.randrange(100):02d}{rng.randrange(10_000):04d}"
        birth = start + dt.timedelta(days=rng.randrange(span + 1))
        ymd = f"{birth:%Y%m%d}"
        if kind == 3:  # not a calendar date, or outside 1850..today
            ymd = rng.choice(
                [
                    f"{rng.randrange(1800, 2100)}{rng.randrange(20):02d}{rng.randrange(40):02d}",
                    f"{rng.choice([1900, 2001, 2023, 2100])}0229",
                    "18491231",
                    "18500101",
                    f"{TODAY:%Y%m%d}",
                    f"{TODAY + dt.timedelta(days=1):%Y%m%d}",
                ]
            )
        first17 = f"{region}{ymd}{rng.randrange(1000):03d}"
        value = first17 + ric_check_char(first17)
        if kind == 4:
            pos = rng.randrange(18)
            value = value[:pos] + rng.choice(RIC_CHARS) + value[pos + 1 :]
        elif kind == 5:
            pos = rng.randrange(17)
            value = value[:pos] + value[pos + 1] + value[pos] + value[pos + 2 :]
        elif kind == 6:
            value = rng.choice(
                [value[:-1], value + "0", value.lower(), " " + value[1:], value[:-1] + "x"]
            )
        elif kind == 7:
            pos = rng.randrange(18)
            odd = rng.choice(["A", "-", " ", "\x00", "\uff11", "福", "x", "/", ":"])
            value = value[:pos] + odd + value[pos + 1 :]
        elif kind == 8 and rng.random() < 0.2:
            out.append(None)
            continue
        out.append(value)
    return out


def uscc_corpus(rng: random.Random, size: int) -> list[str | None]:
    codes = sorted(division_codes())
    out: list[str | None] = []
    while len(out) < size:
        kind = rng.randrange(10)
        body = "".join(rng.choice(USCC_ALPHABET) for _ in range(8))
        value = make_uscc(
            rng.choice(USCC_ALPHABET), rng.choice(USCC_ALPHABET), rng.choice(codes), body
        )
        if kind == 3:
            pos = rng.randrange(18)
            value = value[:pos] + rng.choice(USCC_ALPHABET) + value[pos + 1 :]
        elif kind == 4:
            pos = rng.randrange(17)
            value = value[:pos] + value[pos + 1] + value[pos] + value[pos + 2 :]
        elif kind == 5:
            pos = rng.randrange(18)
            odd = rng.choice("IOSVZaxm -\x00福\uff21")
            value = value[:pos] + odd + value[pos + 1 :]
        elif kind == 6:  # region letters with both check characters recomputed
            first16 = value[:5] + rng.choice("ABCXY") + value[6:16]
            first17 = first16[:16] + org_code_check_char(first16[8:16])
            value = first17 + uscc_check_char(first17)
        elif kind == 7:  # organisation check broken, final check recomputed
            first17 = value[:16] + rng.choice(USCC_ALPHABET)
            value = first17 + uscc_check_char(first17)
        elif kind == 8:
            value = rng.choice([value[:-1], value + "0", value.lower(), ""])
        elif kind == 9 and rng.random() < 0.2:
            out.append(None)
            continue
        out.append(value)
    return out


@pytest.mark.parametrize("strict", [False, True])
def test_ric_scalar_arrow_and_sql_agree(con: duckdb.DuckDBPyConnection, strict: bool) -> None:
    values = ric_corpus(random.Random(11643 + strict), 20_000)
    scalar = [
        None if v is None else is_valid_ric(v, strict_region=strict, today=TODAY) for v in values
    ]
    assert 0.1 < sum(bool(s) for s in scalar) / len(values) < 0.9  # both sides are exercised
    arrow = ric_valid_mask(pa.array(values), strict_region=strict, today=TODAY).to_pylist()
    assert arrow == scalar
    assert sql_ric(con, values, strict_region=strict) == scalar


def test_uscc_scalar_arrow_and_sql_agree(con: duckdb.DuckDBPyConnection) -> None:
    values = uscc_corpus(random.Random(32100), 20_000)
    scalar = [None if v is None else is_valid_uscc(v) for v in values]
    assert 0.1 < sum(bool(s) for s in scalar) / len(values) < 0.9
    assert uscc_valid_mask(pa.array(values)).to_pylist() == scalar
    assert sql_uscc(con, values) == scalar


def test_masks_keep_nulls_null_and_take_any_string_layout() -> None:
    values = [RIC_EXAMPLES[0], None, "bad", RIC_EXAMPLES[1], ""]
    expected = [True, None, False, True, False]
    assert ric_valid_mask(pa.array(values)).to_pylist() == expected
    assert ric_valid_mask(pa.array(values, pa.large_string())).to_pylist() == expected
    chunked = pa.chunked_array([values[:2], values[2:], []], pa.string())
    assert ric_valid_mask(chunked).to_pylist() == expected
    sliced = pa.array(["junk", *values])[1:]
    assert ric_valid_mask(sliced).to_pylist() == expected
    all_valid_slice = pa.array(["junk", *RIC_EXAMPLES, *RIC_EXAMPLES])[1:4]  # no filter needed
    assert ric_valid_mask(all_valid_slice).to_pylist() == [True, True, True]
    assert ric_valid_mask(pa.array([], pa.string())).to_pylist() == []
    assert ric_valid_mask(pa.nulls(2)).to_pylist() == [None, None]
    assert uscc_valid_mask(pa.array([USCC_EXAMPLES[0], None])).to_pylist() == [True, None]
    with pytest.raises(TypeError):
        ric_valid_mask(pa.array([1, 2]))


def test_sql_is_null_for_null_so_not_expr_skips_it(con: duckdb.DuckDBPyConnection) -> None:
    assert sql_ric(con, [None, RIC_EXAMPLES[0], "x"]) == [None, True, False]
    assert sql_uscc(con, [None, USCC_EXAMPLES[0], "x"]) == [None, True, False]
    table = pa.table({"id": pa.array([None, RIC_EXAMPLES[0], "bad", RIC_EXAMPLES[1][:-1] + "5"])})
    con.register("people", table)
    rejected = con.sql(f"SELECT id FROM people WHERE NOT ({ric_check_sql('id')})").fetchall()
    con.unregister("people")
    assert rejected == [("bad",), (RIC_EXAMPLES[1][:-1] + "5",)]


def test_sql_quotes_odd_column_names(con: duckdb.DuckDBPyConnection) -> None:
    con.register("odd", pa.table({"身份 证号": [RIC_EXAMPLES[0]], "统一 代码": [USCC_EXAMPLES[0]]}))
    row = con.sql(
        f"SELECT {ric_check_sql('身份 证号')}, {uscc_check_sql('统一 代码')} FROM odd"
    ).fetchall()[0]
    con.unregister("odd")
    assert row == (True, True)


@pytest.mark.parametrize(
    "column",
    ['id" IS NULL OR "1', "id'); DROP TABLE t; --", "a`b", "", "id\n", 'x"'],
)
def test_sql_refuses_injection_like_column_names(column: str) -> None:
    with pytest.raises(ValueError, match="unsafe column name"):
        ric_check_sql(column)
    with pytest.raises(ValueError, match="unsafe column name"):
        uscc_check_sql(column)
