"""Table Schema descriptors: frictionless rules, minyun keys, lake types, compatibility."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from minyun.core.errors import Invalid
from minyun.core.tableschema import arrow_schema, check_loadable, compatibility, parse_schema
from tests.ingest.loadkit import PERSON_SCHEMA


def _schema(*fields: dict[str, Any], pk: list[str] | None = None) -> dict[str, Any]:
    return {"fields": list(fields), "primaryKey": pk or []}


def test_person_schema_parses_with_minyun_keys() -> None:
    ts = parse_schema(PERSON_SCHEMA)
    ric = ts.field("ric")
    assert ts.primary_key == ("id",)
    assert (ric.format, ric.sensitivity, ric.mask, ric.unique) == (
        "cn-ric",
        "sensitive",
        "keep(3,4)",  # "partial" in the descriptor, kept in its normal form
        True,
    )
    assert ts.field("county").codelist == "GB/T 2260"
    assert ts.field("name").sensitivity == "internal"


def test_unknown_type_is_refused_naming_the_field() -> None:
    with pytest.raises(Invalid, match=r"'age'.*integr"):
        parse_schema(_schema({"name": "age", "type": "integr"}))


def test_type_frictionless_knows_but_the_lake_does_not_is_refused() -> None:
    with pytest.raises(Invalid, match=r"'where'.*geopoint"):
        parse_schema(_schema({"name": "where", "type": "geopoint"}))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"sensitivity": "top"}, "sensitivity"),
        ({"mask": "blur"}, "mask"),
        ({"mask": "keep(3)"}, "keep"),
        ({"mask": "address(street)"}, "address"),
        ({"codelist": [1, 2]}, "codelist"),
        ({"constraints": {"pattern": "["}}, "pattern"),
    ],
)
def test_bad_minyun_keys_are_refused(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message) as caught:
        parse_schema(_schema({"name": "x", "type": "string", **extra}))
    assert "'x'" in str(caught.value) or caught.value.extra.get("field") in ("x", "schema")


@pytest.mark.parametrize(
    ("type_", "spec", "normal"),
    [
        ("string", "keep(6,4)", "keep(6,4)"),
        ("string", " keep( 3 , 4 )", "keep(3,4)"),
        ("string", "name", "name"),
        ("string", "address(city)", "address(city)"),
        ("date", "date(year)", "date(year)"),
        ("datetime", "date(month)", "date(month)"),
        ("integer", "hash", "pseudonym"),
        ("number", "full", "null"),
    ],
)
def test_masks_are_checked_and_kept_in_normal_form(type_: str, spec: str, normal: str) -> None:
    ts = parse_schema(_schema({"name": "x", "type": type_, "mask": spec}))
    assert ts.field("x").mask == normal


@pytest.mark.parametrize(
    ("type_", "spec"), [("date", "name"), ("number", "keep(3,4)"), ("integer", "date(year)")]
)
def test_a_mask_that_does_not_fit_the_type_is_refused(type_: str, spec: str) -> None:
    with pytest.raises(Invalid, match=rf"'x'.*mask.*not {type_}") as caught:
        parse_schema(_schema({"name": "x", "type": type_, "mask": spec}))
    assert caught.value.extra["field"] == "x"


def test_one_mask_named_two_ways_is_the_same_schema() -> None:
    legacy = parse_schema(_schema({"name": "x", "type": "string", "mask": "partial"}))
    modern = parse_schema(_schema({"name": "x", "type": "string", "mask": "keep(3,4)"}))
    assert compatibility(legacy, modern) == "same"


def test_primary_key_must_name_a_field_and_names_are_unique() -> None:
    with pytest.raises(Invalid, match="primary key"):
        parse_schema(_schema({"name": "a"}, pk=["b"]))
    with pytest.raises(Invalid, match="not unique"):
        parse_schema(_schema({"name": "a"}, {"name": "a"}))


def test_arrow_schema_gives_lake_types() -> None:
    schema = arrow_schema(parse_schema(PERSON_SCHEMA))
    assert schema.field("id").type == pa.int64() and not schema.field("id").nullable
    assert schema.field("birth").type == pa.date32()
    assert schema.field("updated").type == pa.timestamp("us", tz="UTC")
    assert schema.field("score").type == pa.float64()


def test_compatibility() -> None:
    base = _schema(
        {"name": "id", "type": "integer"},
        {"name": "n", "type": "integer", "constraints": {"maximum": 10}},
        pk=["id"],
    )
    old = parse_schema(base)
    assert compatibility(old, parse_schema(base)) == "same"
    added = {**base, "fields": [*base["fields"], {"name": "note", "type": "string"}]}
    assert compatibility(old, parse_schema(added)) == "compatible"
    widened = _schema({"name": "id", "type": "integer"}, {"name": "n", "type": "number"}, pk=["id"])
    assert compatibility(old, parse_schema(widened)) == "compatible"
    narrowed = _schema(
        {"name": "id", "type": "integer"},
        {"name": "n", "type": "integer", "constraints": {"maximum": 5}},
        pk=["id"],
    )
    assert compatibility(old, parse_schema(narrowed)) == "major"
    dropped = _schema({"name": "id", "type": "integer"}, pk=["id"])
    assert compatibility(old, parse_schema(dropped)) == "major"
    new_pk = {**base, "primaryKey": ["n"]}
    assert compatibility(old, parse_schema(new_pk)) == "major"
    required = {
        **base,
        "fields": [*base["fields"], {"name": "r", "constraints": {"required": True}}],
    }
    assert compatibility(old, parse_schema(required)) == "major"


def test_the_fast_identity_number_check_equals_the_reference() -> None:
    import datetime as dt
    import random

    import duckdb

    from minyun.core import identifiers
    from minyun.ingest.validate import Checks, _fast_ric_sql

    fast = _fast_ric_sql("ric", "n", "d")
    assert "list_dot_product" not in fast and "strptime" not in fast and "regexp" not in fast
    good = [
        identifiers.make_ric("350102", dt.date(1950, 1, 1) + dt.timedelta(days=n * 7), n % 1000)
        for n in range(2000)
    ]
    rnd = random.Random(1)
    broken = []
    for value in good:
        chars = list(value)
        chars[rnd.randrange(18)] = rnd.choice("0123456789X")
        broken.append("".join(chars))
    odd = ["", "abc", "35010219800101001", "3501021980010100100", "+3501021980010100X"]
    # What a cast to BIGINT accepts besides digits: signs, spaces, separators, exponents, hex.
    odd += [
        "-35010219800101001",
        " 35010219800101001",
        "35010219800101001 ",
        "3501021980_0101001",
        "350102198001010e03",
        "350102198001010E03",
        "1350102198001010e2",
        "0x4DC62DE0E0A0C1",
        "0x4DC62DE0E0A0C1X",
        "350102198001010.1",
        "35010219800101001x",
    ]
    # 350102YYYYMMDD0000 written with an exponent: a number with a correct check digit.
    birth = next(
        f"1980{m:02}{d:02}"
        for m in range(1, 13)
        for d in range(1, 29)
        if identifiers.ric_check_char(f"3501021980{m:02}{d:02}000") == "0"
    )
    exponent = f"00350102{birth}e4"
    odd += [exponent, f"350102{birth}0000"]
    odd += [v[:17] + "x" for v in good if v.endswith("X")][:3]
    odd += [v[:17] + "X" for v in good if not v.endswith("X")][:3]
    # Birth dates around the edges, each with a correct check character.
    births = ["19000229", "20000229", "19990229", "20240229", "20240431", "20241231", "20241301",
              "20240100", "20240132", "18491231", "18500101", "29991231", "00000101"]  # fmt: skip
    odd += [f"350102{b}001" + identifiers.ric_check_char(f"350102{b}001") for b in births]
    values = good + broken + odd
    con = duckdb.connect()
    con.execute("CREATE TABLE t (ric VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[v] for v in values])
    # The check as a load runs it: over the helper columns `Checks.wrap` computes.
    checks = Checks(
        parse_schema({"fields": [{"name": "ric", "type": "string", "format": "cn-ric"}]})
    )
    (holds,) = [r.holds for r in checks.rules if r.holds]
    got = dict(
        con.execute(f"SELECT src.ric, {holds} FROM {checks.wrap('t', ['ric'])} AS src").fetchall()
    )
    assert {v: got[v] for v in values} == {v: identifiers.is_valid_ric(v) for v in values}
    assert con.execute(f"SELECT TRY_CAST('{exponent}' AS BIGINT)").fetchall() == [
        (int(f"350102{birth}0000"),)
    ]
    assert got[f"350102{birth}0000"] and not got[exponent]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"type": "string", "constraints": {"pattern": r"(a)\1"}}, r"pattern '\(a\)\\\\1'.*RE2"),
        ({"type": "string", "constraints": {"pattern": "(?=a)a"}}, "RE2"),
        ({"type": "integer", "constraints": {"minimum": "abc"}}, "minimum 'abc' is not a integer"),
        ({"type": "integer", "constraints": {"maximum": True}}, "maximum True"),
        ({"type": "date", "constraints": {"minimum": 5}}, "minimum 5 is not a date"),
        ({"type": "datetime", "constraints": {"maximum": "soon"}}, "maximum 'soon'"),
        ({"type": "year", "constraints": {"enum": [2020, "MMXX"]}}, "allowed value 'MMXX'"),
    ],
)
def test_a_constraint_the_loads_sql_cannot_use_is_refused_naming_the_field(
    field: dict[str, Any], message: str
) -> None:
    schema = parse_schema(_schema({"name": "x", **field}))  # the standard allows them
    with pytest.raises(Invalid, match=message) as caught:
        check_loadable(schema)
    assert caught.value.extra["field"] == "x" and "'x'" in str(caught.value)


def test_constraints_duckdb_can_use_pass() -> None:
    assert check_loadable(parse_schema(PERSON_SCHEMA)) == parse_schema(PERSON_SCHEMA)
    fine = _schema(
        {"name": "a", "type": "string", "constraints": {"pattern": r"(?i)[a-z]{2}\d+"}},
        {"name": "b", "type": "integer", "constraints": {"minimum": "3", "maximum": 9.5}},
        {"name": "c", "type": "datetime", "constraints": {"minimum": "2020-01-01 08:00:00"}},
        {"name": "d", "type": "time", "constraints": {"maximum": "18:00:00"}},
    )
    check_loadable(parse_schema(fine))
