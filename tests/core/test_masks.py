"""Masks: the examples, the edges, and DuckDB SQL against Arrow compute on random values."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minyun.core.errors import Invalid
from minyun.core.masks import (
    COMPOUND_SURNAMES,
    Keep,
    Mask,
    Null,
    Pseudonym,
    parse_mask,
    pseudonym_key,
)

KEY = pseudonym_key(b"node secret of the test", "consumer-a")
_DUCK = duckdb.connect()


def _sql(mask: Mask, values: pa.Array, *, key: bytes = KEY, column: str = "v") -> list[Any]:
    """The mask run by DuckDB over the values, as the lake reader runs it."""
    quoted = '"' + column.replace('"', '""') + '"'
    _DUCK.register("masked_input", pa.table({column: values}))
    try:
        sql = f"SELECT {mask.sql(quoted, key=key)} AS m FROM masked_input"
        result = _DUCK.sql(sql).to_arrow_table().column("m")
    finally:
        _DUCK.unregister("masked_input")
    assert result.type in (pa.string(), pa.string_view(), pa.null())
    return result.to_pylist()


def _arrow(mask: Mask, values: pa.Array, *, key: bytes = KEY) -> list[Any]:
    """The mask run by Arrow compute; checked equal to the mask on the Python values."""
    result = mask.arrow(values, key=key)
    assert result.type == pa.string() and len(result) == len(values)
    assert _values(mask, values, key=key) == result.to_pylist()
    return result.to_pylist()


def _values(mask: Mask, values: pa.Array, *, key: bytes = KEY) -> list[Any]:
    """The mask on the Python values of the array (as the serving reader has them), one call
    per value and one for all, as a key lookup and a small page call it."""
    python = values.to_pylist()
    one_by_one = [mask.values([v], values.type, key=key)[0] for v in python]
    assert one_by_one == mask.values(python, values.type, key=key)
    return one_by_one


def _both(spec: str, values: list[Any], type_: pa.DataType | None = None) -> list[Any]:
    """The masked values, checked to be the same from SQL and from Arrow."""
    mask = parse_mask(spec)
    array = pa.array(values, type_)
    from_sql = _sql(mask, array)
    assert from_sql == _arrow(mask, array)
    return from_sql


# ----------------------------------------------------------------------------- examples


def test_keep_masks_the_middle_one_star_per_character() -> None:
    assert _both("keep(6,4)", ["350102199001011234"]) == ["350102********1234"]
    assert _both("keep(3,4)", ["13812345678"]) == ["138****5678"]
    assert _both("keep(1,1)", ["福建省福州市"]) == ["福****市"]
    assert _both("keep(2,0)", ["林小闽abc"]) == ["林小****"]
    assert _both("keep(0,2)", ["林小闽abc"]) == ["****bc"]


def test_keep_of_a_value_no_longer_than_what_it_keeps_is_all_stars() -> None:
    assert _both("keep(3,4)", ["1381234", "138123", "林", ""]) == ["*******", "******", "*", ""]
    assert _both("keep(0,0)", ["abc", "闽"]) == ["***", "*"]


def test_keep_counts_characters_not_bytes() -> None:
    assert _both("keep(1,1)", ["林小闽", "a林b", "😀x😀"]) == ["林*闽", "a*b", "😀*😀"]


def test_name_keeps_the_surname() -> None:
    got = _both("name", ["林小闽", "林闽", "林小小闽", "林", "", "John Smith"])
    assert got == ["林*闽", "林*", "林**闽", "*", "", "J********h"]


def test_name_keeps_a_compound_surname_whole() -> None:
    got = _both("name", ["欧阳小闽", "欧阳闽", "司马相如", "诸葛孔明亮", "欧阳"])
    # A two-character name is surname and one given character, even if they could be 复姓.
    assert got == ["欧阳*闽", "欧阳*", "司马*如", "诸葛**亮", "欧*"]
    assert len(set(COMPOUND_SURNAMES)) == len(COMPOUND_SURNAMES)


@pytest.mark.parametrize(
    ("address", "province", "city", "county"),
    [
        ("福建省福州市鼓楼区五四路158号", "福建省", "福建省福州市", "福建省福州市鼓楼区"),
        ("福州市鼓楼区五四路158号", None, "福州市", "福州市鼓楼区"),
        ("北京市朝阳区建国路1号", "北京市", "北京市", "北京市朝阳区"),
        ("广西壮族自治区南宁市青秀区民族大道", "广西壮族自治区", "广西壮族自治区南宁市",
         "广西壮族自治区南宁市青秀区"),
        ("内蒙古自治区锡林郭勒盟锡林浩特市额尔敦路", "内蒙古自治区", "内蒙古自治区锡林郭勒盟",
         "内蒙古自治区锡林郭勒盟锡林浩特市"),
        ("新疆维吾尔自治区喀什地区喀什市人民路", "新疆维吾尔自治区", "新疆维吾尔自治区喀什地区",
         "新疆维吾尔自治区喀什地区喀什市"),
        ("吉林省延边朝鲜族自治州延吉市光明街", "吉林省", "吉林省延边朝鲜族自治州",
         "吉林省延边朝鲜族自治州延吉市"),
        ("四川省乐山市峨边彝族自治县沙坪镇", "四川省", "四川省乐山市", "四川省乐山市峨边彝族自治县"),
        ("内蒙古自治区呼伦贝尔市鄂温克族自治旗", "内蒙古自治区", "内蒙古自治区呼伦贝尔市",
         "内蒙古自治区呼伦贝尔市鄂温克族自治旗"),
        ("香港特别行政区中西区", "香港特别行政区", "香港特别行政区", "香港特别行政区中西区"),
        ("福建省 福州市　鼓楼区 五四路", "福建省", "福建省福州市", "福建省福州市鼓楼区"),
        # No county written: county level gives the coarser levels found.
        ("福建省福州市五四路158号", "福建省", "福建省福州市", "福建省福州市"),
        # Nothing recognisable: NULL, never the address.
        ("五四路158号", None, None, None),
        ("", None, None, None),
    ],
)  # fmt: skip
def test_address_is_cut_to_the_division_level(
    address: str, province: str | None, city: str | None, county: str | None
) -> None:
    assert _both("address(province)", [address]) == [province]
    assert _both("address(city)", [address]) == [city]
    assert _both("address(county)", [address]) == [county]


def test_date_gives_year_or_month_of_dates_timestamps_and_iso_text() -> None:
    dates = [dt.date(2024, 1, 2), dt.date(999, 12, 31), None]
    assert _both("date(year)", dates) == ["2024", "0999", None]
    assert _both("date(month)", dates) == ["2024-01", "0999-12", None]
    text = ["2024-05-06", "2024-05-06T23:30:00+08:00", "2024-05", "2024", "2024-13-01", "五月", ""]
    assert _both("date(year)", text) == ["2024", "2024", "2024", "2024", None, None, None]
    assert _both("date(month)", text) == ["2024-05", "2024-05", "2024-05", None, None, None, None]


def test_date_of_a_utc_timestamp_is_read_in_china_time() -> None:
    utc = pa.timestamp("us", tz="UTC")
    new_year_in_fuzhou = dt.datetime(2024, 12, 31, 16, 30, tzinfo=dt.UTC)
    assert _both("date(month)", [new_year_in_fuzhou], utc) == ["2025-01"]
    assert _both("date(year)", [new_year_in_fuzhou, None], utc) == ["2025", None]
    # A naive timestamp is taken as written.
    assert _both("date(month)", [dt.datetime(2024, 12, 31, 16, 30)]) == ["2024-12"]


def test_date_is_the_same_whatever_the_sql_session_time_zone() -> None:
    mask = parse_mask("date(month)")
    values = pa.array([dt.datetime(2024, 12, 31, 16, 30, tzinfo=dt.UTC)], pa.timestamp("us", "UTC"))
    _DUCK.execute("SET TimeZone = 'America/New_York'")
    try:
        assert _sql(mask, values) == ["2025-01"]
    finally:
        _DUCK.execute("SET TimeZone = 'UTC'")


def test_pseudonym_is_python_hmac_of_the_text_under_the_consumers_key() -> None:
    values = ["350102199001011234", "林小闽", "", None]
    got = _both("pseudonym", values)
    expected = [
        hmac.new(KEY, v.encode(), hashlib.sha256).hexdigest()[:32] if v is not None else None
        for v in values
    ]
    assert got == expected
    assert all(v is None or len(v) == 32 for v in got)
    assert _both("pseudonym", [350102, 2024]) == [
        hmac.new(KEY, b"350102", hashlib.sha256).hexdigest()[:32],
        hmac.new(KEY, b"2024", hashlib.sha256).hexdigest()[:32],
    ]


def test_pseudonyms_are_stable_for_one_consumer_and_differ_across_consumers() -> None:
    mask, values = parse_mask("pseudonym"), pa.array(["林小闽", "林小闽", "林大闽"])
    a = _sql(mask, values, key=pseudonym_key(b"node", "consumer-a"))
    again = _sql(mask, values, key=pseudonym_key(b"node", "consumer-a"))
    b = _sql(mask, values, key=pseudonym_key(b"node", "consumer-b"))
    other_node = _sql(mask, values, key=pseudonym_key(b"other node", "consumer-a"))
    assert a == again and a[0] == a[1] != a[2]
    assert not set(a) & set(b) and not set(a) & set(other_node)


def test_pseudonym_key_is_the_documented_hmac() -> None:
    expected = hmac.new(b"node", b"minyun.pseudonym\0c", hashlib.sha256).digest()
    assert pseudonym_key(b"node", "c") == expected
    # The separator keeps "ab" + "c" and "a" + "bc" apart: the consumer is the whole tail.
    assert pseudonym_key(b"node", "c") != pseudonym_key(b"node", "c\0")
    with pytest.raises(Invalid, match="consumer"):
        pseudonym_key(b"node", "")
    with pytest.raises(Invalid, match="secret"):
        pseudonym_key(b"", "c")


def test_a_long_key_is_hashed_first_as_hmac_does() -> None:
    long_key = bytes(range(100))
    got = _sql(parse_mask("pseudonym"), pa.array(["x"]), key=long_key)
    assert got == [hmac.new(long_key, b"x", hashlib.sha256).hexdigest()[:32]]


def test_pseudonym_without_a_key_is_refused() -> None:
    with pytest.raises(Invalid, match="key"):
        parse_mask("pseudonym").sql('"v"', key=b"")
    with pytest.raises(Invalid, match="key"):
        parse_mask("pseudonym").arrow(pa.array(["x"]), key=b"")
    with pytest.raises(Invalid, match="key"):
        parse_mask("pseudonym").values(["x"], pa.string(), key=b"")


def test_null_gives_null_for_any_type() -> None:
    assert _both("null", ["林小闽", None]) == [None, None]
    assert _both("null", [1.5, 2.0]) == [None, None]
    assert _both("null", [dt.date(2024, 1, 1)]) == [None]


@pytest.mark.parametrize(
    "spec",
    ["keep(3,4)", "name", "address(city)", "date(year)", "date(month)", "pseudonym", "null"],
)
def test_null_in_null_out_and_empty_input(spec: str) -> None:
    assert _both(spec, [None, None], pa.string()) == [None, None]
    assert _both(spec, [], pa.string()) == []


# ------------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("spec", "normal"),
    [
        ("keep(6,4)", "keep(6,4)"),
        (" keep( 6 , 4 ) ", "keep(6,4)"),
        ("partial", "keep(3,4)"),
        ("hash", "pseudonym"),
        ("full", "null"),
        ("name", "name"),
        ("address(county)", "address(county)"),
        ("date(month)", "date(month)"),
        ("pseudonym", "pseudonym"),
        ("null", "null"),
    ],
)
def test_specs_parse_to_their_normal_form(spec: str, normal: str) -> None:
    mask = parse_mask(spec)
    assert mask.spec == normal == str(mask)
    assert parse_mask(mask.spec) == mask


def test_aliases_are_the_masks_they_name() -> None:
    assert parse_mask("partial") == Keep(3, 4)
    assert parse_mask("hash") == Pseudonym()
    assert parse_mask("full") == Null()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("blur", "unknown mask"),
        ("", "unknown mask"),
        ("KEEP(3,4)", "unknown mask"),
        ("keep", "two whole numbers"),
        ("keep(3)", "two whole numbers"),
        ("keep(3,4,5)", "two whole numbers"),
        ("keep(-1,4)", "two whole numbers"),
        ("keep(a,b)", "two whole numbers"),
        ("keep(３,４)", "two whole numbers"),
        ("keep(100,4)", "at most 64"),
        ("address", "province|city|county"),
        ("address(street)", "province|city|county"),
        ("date(day)", "year|month"),
        ("name(2)", "no arguments"),
        ("null()", "no arguments"),
        ("keep(3,4)); DROP TABLE x; --", "unknown mask"),
        ("pseudonym') || 'x", "unknown mask"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(Invalid, match=message) as caught:
        parse_mask(spec)
    assert caught.value.extra["field"] == "mask"


def test_a_spec_that_is_not_text_is_refused() -> None:
    with pytest.raises(Invalid, match="text spec"):
        parse_mask(3)  # type: ignore[arg-type]


def test_a_column_name_with_quotes_is_used_as_given() -> None:
    mask = parse_mask("keep(1,1)")
    assert _sql(mask, pa.array(["林小闽"]), column="we\"ird'") == ["林*闽"]


# ------------------------------------------------------------- SQL against Arrow, at random

_CHINESE = "林小闽欧阳司马诸葛福建省州市区县路号自治区盟地区旗特别行政北京上海"
_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(_CHINESE + "0123456789-T*' \u3000\\%_"),
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    ),
    max_size=24,
)
_ADDRESS = st.lists(
    st.sampled_from(
        ["福建省", "福州市", "鼓楼区", "北京市", "朝阳区", "内蒙古自治区", "锡林郭勒盟",
         "锡林浩特市", "喀什地区", "延边朝鲜族自治州", "峨边彝族自治县", "五四路", "158号",
         " ", "林", "市", "区", "省", "a"]
    ),
    max_size=6,
).map("".join)  # fmt: skip
_NAME = st.one_of(
    _TEXT,
    st.tuples(st.sampled_from(COMPOUND_SURNAMES), st.text(_CHINESE, max_size=3)).map("".join),
)
_ISO_TEXT = st.one_of(
    _TEXT,
    st.dates().map(dt.date.isoformat),
    st.dates().map(lambda d: d.isoformat()[:7]),
    st.datetimes().map(dt.datetime.isoformat),
)
_UTC = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
)
_FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _nullable(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.one_of(st.none(), values), max_size=12)


def _agree(spec: str, values: list[Any], type_: pa.DataType, key: bytes = KEY) -> None:
    mask, array = parse_mask(spec), pa.array(values, type_)
    assert _sql(mask, array, key=key) == _arrow(mask, array, key=key)


@_FAST
@pytest.mark.parametrize("spec", ["keep(3,4)", "keep(6,4)", "keep(0,1)", "keep(2,0)", "keep(0,0)"])
@given(values=_nullable(_TEXT))
def test_keep_sql_and_arrow_agree(spec: str, values: list[str | None]) -> None:
    _agree(spec, values, pa.string())


@_FAST
@given(values=_nullable(st.integers(-(2**63), 2**63 - 1)))
def test_keep_of_integers_sql_and_arrow_agree(values: list[int | None]) -> None:
    _agree("keep(3,4)", values, pa.int64())


@_FAST
@given(values=_nullable(_NAME))
def test_name_sql_and_arrow_agree(values: list[str | None]) -> None:
    _agree("name", values, pa.string())


@_FAST
@pytest.mark.parametrize("level", ["province", "city", "county"])
@given(values=_nullable(st.one_of(_ADDRESS, _TEXT)))
def test_address_sql_and_arrow_agree(level: str, values: list[str | None]) -> None:
    _agree(f"address({level})", values, pa.string())


@_FAST
@pytest.mark.parametrize("level", ["year", "month"])
@given(
    dates=_nullable(st.dates()),
    stamps=_nullable(_UTC),
    naive=_nullable(st.datetimes()),
    text=_nullable(_ISO_TEXT),
)
def test_date_sql_and_arrow_agree(
    level: str,
    dates: list[dt.date | None],
    stamps: list[dt.datetime | None],
    naive: list[dt.datetime | None],
    text: list[str | None],
) -> None:
    spec = f"date({level})"
    _agree(spec, dates, pa.date32())
    _agree(spec, stamps, pa.timestamp("us", tz="UTC"))
    _agree(spec, naive, pa.timestamp("us"))
    _agree(spec, text, pa.string())


@_FAST
@given(
    text=_nullable(_TEXT),
    numbers=_nullable(st.integers(-(2**63), 2**63 - 1)),
    dates=_nullable(st.dates()),
    consumer=st.text(min_size=1, max_size=8),
)
def test_pseudonym_sql_and_arrow_agree_with_python_hmac(
    text: list[str | None],
    numbers: list[int | None],
    dates: list[dt.date | None],
    consumer: str,
) -> None:
    key = pseudonym_key(b"node", consumer)
    _agree("pseudonym", text, pa.string(), key)
    _agree("pseudonym", numbers, pa.int64(), key)
    _agree("pseudonym", dates, pa.date32(), key)
    got = _arrow(parse_mask("pseudonym"), pa.array(text, pa.string()), key=key)
    assert got == [
        None if v is None else hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:32]
        for v in text
    ]


@_FAST
@given(values=_nullable(_TEXT))
def test_null_sql_and_arrow_agree(values: list[str | None]) -> None:
    _agree("null", values, pa.string())
