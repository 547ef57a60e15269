"""AQI per HJ 633-2012: breakpoints, special rules, levels, and scalar/vectorised agreement."""

from __future__ import annotations

import itertools
import math
import random
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from minyun.apps.ecocloud.aqi import (
    BREAKPOINTS,
    IAQI_STEPS,
    LEVELS,
    Concentration,
    Item,
    aqi_columns,
    city_hourly_aqi_table,
    city_mean_table,
    daily_aqi,
    daily_aqi_table,
    hourly_aqi,
    hourly_aqi_table,
    iaqi,
    iaqi_array,
    level_of,
    mean_concentration,
    micro_array,
    to_micro,
)

# (concentration, IAQI) one reporting step below, on, and above each breakpoint of HJ 633
# table 1 (1 µg/m³; CO 0.1 mg/m³). Worked by hand, e.g. PM10 351: 200 + 100/70 × 1 = 201.4 → 202.
# fmt: off
SIDES: dict[Item, list[tuple[str, int | None]]] = {
    Item.SO2_24H: [
        ("0", 0), ("1", 1), ("49", 49), ("50", 50), ("51", 51), ("149", 100), ("150", 100),
        ("151", 101), ("474", 150), ("475", 150), ("476", 151), ("799", 200), ("800", 200),
        ("801", 201), ("1599", 300), ("1600", 300), ("1601", 301), ("2099", 400), ("2100", 400),
        ("2101", 401), ("2619", 500), ("2620", 500), ("2621", 500),
    ],
    Item.SO2_1H: [
        ("0", 0), ("1", 1), ("149", 50), ("150", 50), ("151", 51), ("499", 100), ("500", 100),
        ("501", 101), ("649", 150), ("650", 150), ("651", 151), ("799", 200), ("800", 200),
        ("801", None),
    ],
    Item.NO2_24H: [
        ("0", 0), ("1", 2), ("39", 49), ("40", 50), ("41", 52), ("79", 99), ("80", 100),
        ("81", 101), ("179", 150), ("180", 150), ("181", 151), ("279", 200), ("280", 200),
        ("281", 201), ("564", 300), ("565", 300), ("566", 301), ("749", 400), ("750", 400),
        ("751", 401), ("939", 500), ("940", 500), ("941", 500),
    ],
    Item.NO2_1H: [
        ("0", 0), ("1", 1), ("99", 50), ("100", 50), ("101", 51), ("199", 100), ("200", 100),
        ("201", 101), ("699", 150), ("700", 150), ("701", 151), ("1199", 200), ("1200", 200),
        ("1201", 201), ("2339", 300), ("2340", 300), ("2341", 301), ("3089", 400),
        ("3090", 400), ("3091", 401), ("3839", 500), ("3840", 500), ("3841", 500),
    ],
    Item.PM10_24H: [
        ("0", 0), ("1", 1), ("49", 49), ("50", 50), ("51", 51), ("149", 100), ("150", 100),
        ("151", 101), ("249", 150), ("250", 150), ("251", 151), ("349", 200), ("350", 200),
        ("351", 202), ("419", 299), ("420", 300), ("421", 302), ("499", 399), ("500", 400),
        ("501", 401), ("599", 499), ("600", 500), ("601", 500),
    ],
    Item.CO_24H: [
        ("0.0", 0), ("0.1", 3), ("1.9", 48), ("2.0", 50), ("2.1", 53), ("3.9", 98),
        ("4.0", 100), ("4.1", 101), ("13.9", 150), ("14.0", 150), ("14.1", 151), ("23.9", 200),
        ("24.0", 200), ("24.1", 201), ("35.9", 300), ("36.0", 300), ("36.1", 301),
        ("47.9", 400), ("48.0", 400), ("48.1", 401), ("59.9", 500), ("60.0", 500),
        ("60.1", 500),
    ],
    Item.CO_1H: [
        ("0.0", 0), ("0.1", 1), ("4.9", 49), ("5.0", 50), ("5.1", 51), ("9.9", 99),
        ("10.0", 100), ("10.1", 101), ("34.9", 150), ("35.0", 150), ("35.1", 151),
        ("59.9", 200), ("60.0", 200), ("60.1", 201), ("89.9", 300), ("90.0", 300),
        ("90.1", 301), ("119.9", 400), ("120.0", 400), ("120.1", 401), ("149.9", 500),
        ("150.0", 500), ("150.1", 500),
    ],
    Item.O3_1H: [
        ("0", 0), ("1", 1), ("159", 50), ("160", 50), ("161", 52), ("199", 99), ("200", 100),
        ("201", 101), ("299", 150), ("300", 150), ("301", 151), ("399", 200), ("400", 200),
        ("401", 201), ("799", 300), ("800", 300), ("801", 301), ("999", 400), ("1000", 400),
        ("1001", 401), ("1199", 500), ("1200", 500), ("1201", 500),
    ],
    Item.O3_8H: [
        ("0", 0), ("1", 1), ("99", 50), ("100", 50), ("101", 51), ("159", 100), ("160", 100),
        ("161", 101), ("214", 150), ("215", 150), ("216", 151), ("264", 199), ("265", 200),
        ("266", 201), ("799", 300), ("800", 300), ("801", None),
    ],
    Item.PM2_5_24H: [
        ("0", 0), ("1", 2), ("34", 49), ("35", 50), ("36", 52), ("74", 99), ("75", 100),
        ("76", 102), ("114", 149), ("115", 150), ("116", 152), ("149", 199), ("150", 200),
        ("151", 201), ("249", 299), ("250", 300), ("251", 301), ("349", 399), ("350", 400),
        ("351", 401), ("499", 500), ("500", 500), ("501", 500),
    ],
}
# fmt: on

HOURLY_KEYS = ("so2", "no2", "pm10", "pm2_5", "co", "o3", "so2_24h")
DAILY_KEYS = ("so2", "no2", "pm10", "pm2_5", "co", "o3_1h", "o3_8h")


def test_every_table_row_has_its_boundaries_tested() -> None:
    for item, bps in BREAKPOINTS.items():
        tested = {Decimal(c) for c, _ in SIDES[item]}
        assert {Decimal(bp) for bp in bps} <= tested, item


@pytest.mark.parametrize("item", list(Item))
def test_iaqi_on_both_sides_of_every_breakpoint(item: Item) -> None:
    concentrations = [c for c, _ in SIDES[item]]
    expected = [v for _, v in SIDES[item]]
    assert [iaqi(item, c) for c in concentrations] == expected
    assert [iaqi(item, float(c)) for c in concentrations] == expected
    assert iaqi_array(item, pa.array(concentrations)).to_pylist() == expected
    assert iaqi_array(item, np.array([float(c) for c in concentrations])).to_pylist() == expected


@pytest.mark.parametrize("item", list(Item))
def test_a_millionth_above_a_breakpoint_is_the_next_integer(item: Item) -> None:
    # The ceiling: exactly on a breakpoint gives its IAQI, anything above gives one more.
    tiny = Decimal("0.000001")
    bps = BREAKPOINTS[item]
    for k, bp in enumerate(bps[1:], start=1):
        assert iaqi(item, Decimal(bp)) == IAQI_STEPS[k]
        assert iaqi(item, Decimal(bp) - tiny) == IAQI_STEPS[k]
        if k < len(bps) - 1:
            assert iaqi(item, Decimal(bp) + tiny) == IAQI_STEPS[k] + 1
    values = pa.array([Decimal(bp) + d for bp in bps[1:-1] for d in (-tiny, 0, tiny)])
    expected = [IAQI_STEPS[k] + (d > 0) for k in range(1, len(bps) - 1) for d in (-1, 0, 1)]
    assert iaqi_array(item, values).to_pylist() == expected


@pytest.mark.parametrize(
    ("item", "concentration", "exact"),
    [(Item.CO_24H, 2.2, 55), (Item.CO_1H, 65.4, 218), (Item.CO_1H, 66.9, 223)],
)
def test_float_error_does_not_move_the_ceiling(
    item: Item, concentration: float, exact: int
) -> None:
    bps = BREAKPOINTS[item]
    k = next(k for k in range(1, len(bps)) if concentration <= bps[k])
    slope = (IAQI_STEPS[k] - IAQI_STEPS[k - 1]) / (bps[k] - bps[k - 1])
    naive = math.ceil(slope * (concentration - bps[k - 1]) + IAQI_STEPS[k - 1])
    assert naive == exact + 1  # what plain float arithmetic would publish
    assert iaqi(item, concentration) == exact
    assert iaqi_array(item, np.array([concentration])).to_pylist() == [exact]


def test_above_the_top_is_500_except_where_hj633_stops_computing() -> None:
    assert iaqi(Item.PM2_5_24H, 501) == 500
    assert iaqi(Item.PM10_24H, 10**12) == 500
    assert iaqi(Item.CO_1H, "150.1") == 500
    assert iaqi(Item.SO2_1H, 801) is None
    assert iaqi(Item.O3_8H, 801) is None
    assert iaqi_array(Item.SO2_1H, pa.array([800, 801])).to_pylist() == [200, None]


def _hourly(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "so2": 5, "no2": 20, "pm10": 40, "pm2_5": 20, "co": 0.5, "o3": 60, "so2_24h": None,
    }  # fmt: skip
    base.update(over)
    return base


def test_so2_above_800_reports_the_24_hour_so2_iaqi() -> None:
    at_top = hourly_aqi(**_hourly(so2=800))
    assert (at_top.aqi, at_top.primary_pollutant) == (200, "二氧化硫")
    above = hourly_aqi(**_hourly(so2=801, so2_24h=476))
    assert above.iaqi[Item.SO2_1H] == 151  # SO2 24h 476 on the 24-hour row
    assert (above.aqi, above.primary_pollutant) == (151, "二氧化硫")
    low_daily = hourly_aqi(**_hourly(so2=2000, so2_24h=60))
    assert (low_daily.aqi, low_daily.primary_pollutant) == (55, "二氧化硫")


def test_so2_above_800_without_a_24_hour_value_is_missing() -> None:
    result = hourly_aqi(**_hourly(so2=801, so2_24h=None))
    assert result.iaqi[Item.SO2_1H] is None
    assert result.aqi == 40  # from PM10 40 and the others present
    strict = hourly_aqi(**_hourly(so2=801), require_all=True)
    assert strict.aqi is None


def test_so2_rule_in_the_vectorised_path() -> None:
    rows = [_hourly(so2=800), _hourly(so2=801, so2_24h=476), _hourly(so2=801)]
    table = pa.Table.from_pylist(rows)
    result = hourly_aqi_table(table, with_iaqi=True)
    assert result["iaqi_so2_1h"].to_pylist() == [200, 151, None]
    assert result["aqi"].to_pylist() == [200, 151, 40]
    strict = hourly_aqi_table(table, require_all=True)
    assert strict["aqi"].to_pylist() == [200, 151, None]


def _daily(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "so2": 5, "no2": 20, "pm10": 40, "pm2_5": 20, "co": 0.5, "o3_1h": 100, "o3_8h": 90,
    }  # fmt: skip
    base.update(over)
    return base


def test_ozone_8_hour_up_to_800_uses_its_own_row() -> None:
    result = daily_aqi(**_daily(o3_8h=800, o3_1h=300))
    assert result.iaqi[Item.O3_8H] == 300
    assert (result.aqi, result.primary_pollutant) == (300, "臭氧8小时")


def test_ozone_8_hour_above_800_leaves_ozone_to_the_1_hour_iaqi() -> None:
    result = daily_aqi(**_daily(o3_8h=801, o3_1h=300), require_all=True)
    assert result.iaqi[Item.O3_8H] is None
    assert result.iaqi[Item.O3_1H] == 150
    # Not computed is not missing: the day still has an AQI with all items required.
    assert (result.aqi, result.primary_pollutant) == (150, "臭氧1小时")
    high_1h = daily_aqi(**_daily(o3_8h=900, o3_1h=1100))
    assert (high_1h.aqi, high_1h.primary_pollutant) == (450, "臭氧1小时")


def test_ozone_8_hour_above_800_without_1_hour_ozone() -> None:
    lenient = daily_aqi(**_daily(o3_8h=801, o3_1h=None))
    assert lenient.aqi == 40
    strict = daily_aqi(**_daily(o3_8h=801, o3_1h=None), require_all=True)
    assert strict.aqi is None
    only_8h = aqi_columns({Item.O3_8H: pa.array([801, 100])}, require_all=True)
    assert only_8h["aqi"].to_pylist() == [None, 50]


def test_ozone_rules_in_the_vectorised_daily_path() -> None:
    table = pa.Table.from_pylist(
        [_daily(o3_8h=800, o3_1h=300), _daily(o3_8h=801, o3_1h=300), _daily(o3_8h=801, o3_1h=None)]
    )
    result = daily_aqi_table(table, require_all=True, with_iaqi=True)
    assert result["iaqi_o3_8h"].to_pylist() == [300, None, None]
    assert result["aqi"].to_pylist() == [300, 150, None]
    assert result["primary_pollutant"].to_pylist() == ["臭氧8小时", "臭氧1小时", None]


@pytest.mark.parametrize(
    ("concentrations", "aqi", "primary"),
    [
        (_daily(pm10=150, pm2_5=75, no2=80), 100, "二氧化氮,颗粒物(PM10),细颗粒物(PM2.5)"),
        (_daily(o3_1h=200, o3_8h=160), 100, "臭氧1小时,臭氧8小时"),
        (_daily(so2=150, co=4.0), 100, "二氧化硫,一氧化碳"),
        (_daily(pm10=83, pm2_5=48), 67, "颗粒物(PM10),细颗粒物(PM2.5)"),
        (_daily(pm10=150, pm2_5=76), 102, "细颗粒物(PM2.5)"),
    ],
)
def test_ties_at_the_maximum_are_all_primary_pollutants(
    concentrations: dict[str, Any], aqi: int, primary: str
) -> None:
    result = daily_aqi(**concentrations)
    assert (result.aqi, result.primary_pollutant) == (aqi, primary)
    table = daily_aqi_table(pa.Table.from_pylist([concentrations]))
    assert table["aqi"].to_pylist() == [aqi]
    assert table["primary_pollutant"].to_pylist() == [primary]


def test_there_is_no_primary_pollutant_at_aqi_50_or_below() -> None:
    at_50 = daily_aqi(**_daily(pm10=50, pm2_5=35))
    assert (at_50.aqi, at_50.primary_pollutants) == (50, ())
    at_51 = daily_aqi(**_daily(pm10=51))
    assert (at_51.aqi, at_51.primary_pollutant) == (51, "颗粒物(PM10)")


def test_exceeding_pollutants_are_those_above_100() -> None:
    result = daily_aqi(**_daily(pm10=151, pm2_5=75, no2=81))
    assert result.exceeding == ("二氧化氮", "颗粒物(PM10)")


@pytest.mark.parametrize(
    ("aqi", "grade", "name", "category", "colour"),
    [
        (0, 1, "一级", "优", "#00e400"),
        (50, 1, "一级", "优", "#00e400"),
        (51, 2, "二级", "良", "#ffff00"),
        (100, 2, "二级", "良", "#ffff00"),
        (101, 3, "三级", "轻度污染", "#ff7e00"),
        (150, 3, "三级", "轻度污染", "#ff7e00"),
        (151, 4, "四级", "中度污染", "#ff0000"),
        (200, 4, "四级", "中度污染", "#ff0000"),
        (201, 5, "五级", "重度污染", "#99004c"),
        (300, 5, "五级", "重度污染", "#99004c"),
        (301, 6, "六级", "严重污染", "#7e0023"),
        (500, 6, "六级", "严重污染", "#7e0023"),
    ],
)
def test_levels_and_colours(aqi: int, grade: int, name: str, category: str, colour: str) -> None:
    level = level_of(aqi)
    assert (level.grade, level.name, level.category, level.colour) == (
        grade,
        name,
        category,
        colour,
    )
    columns = aqi_columns({Item.O3_1H: pa.array([_o3_for(aqi)])})
    assert columns["aqi"].to_pylist() == [aqi]
    assert columns["aqi_level"].to_pylist() == [grade]
    assert columns["aqi_category"].to_pylist() == [category]
    assert columns["aqi_colour"].to_pylist() == [colour]


def _o3_for(aqi: int) -> str:
    """An O3 1-hour concentration whose IAQI is exactly `aqi` (the formula inverted)."""
    bps = BREAKPOINTS[Item.O3_1H]
    k = max(1, next(k for k, step in enumerate(IAQI_STEPS) if aqi <= step))
    share = Fraction(aqi - IAQI_STEPS[k - 1], IAQI_STEPS[k] - IAQI_STEPS[k - 1])
    value = bps[k - 1] + share * (bps[k] - bps[k - 1])
    return str(Decimal(value.numerator) / Decimal(value.denominator))


def test_levels_cover_0_to_infinity_without_gaps() -> None:
    assert LEVELS[0].low == 0
    for lower, upper in itertools.pairwise(LEVELS):
        assert upper.low == (lower.high or 0) + 1
    assert LEVELS[-1].high is None
    with pytest.raises(ValueError):
        level_of(-1)


def test_missing_values_leave_the_aqi_to_the_pollutants_present() -> None:
    result = hourly_aqi(so2=None, no2="-", pm10="", pm2_5=float("nan"), co=-0.1, o3=170)
    assert all(result.iaqi[i] is None for i in result.iaqi if i is not Item.O3_1H)
    assert (result.aqi, result.primary_pollutant) == (63, "臭氧1小时")
    strict = hourly_aqi(so2=None, no2=1, pm10=1, pm2_5=1, co=0.1, o3=170, require_all=True)
    assert strict.aqi is None and strict.level is None and strict.primary_pollutant == ""
    nothing = hourly_aqi(so2=None, no2=None, pm10=None, pm2_5=None, co=None, o3=None)
    assert nothing.aqi is None


def test_missing_marks_in_the_vectorised_path() -> None:
    values = pa.array(["170", None, "", "-", "—", " 12 ", "-3"])
    assert micro_array(values)[1].tolist() == [True, False, False, False, False, True, False]
    assert iaqi_array(Item.O3_1H, values).to_pylist() == [63, None, None, None, None, 4, None]
    floats = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0])
    assert iaqi_array(Item.O3_1H, floats).to_pylist() == [None, None, None, None, 0]


def test_text_that_is_not_a_concentration_is_an_error() -> None:
    with pytest.raises(ValueError):
        to_micro("abc")
    with pytest.raises(ValueError):
        to_micro("NaN")
    with pytest.raises(TypeError):
        to_micro(True)
    with pytest.raises(ValueError):
        micro_array(pa.array(["12", "abc"]))


def test_every_number_type_is_the_same_concentration() -> None:
    forms: list[Concentration] = [Decimal("65.4"), "65.4", 65.4, Fraction(654, 10)]
    assert {to_micro(f) for f in forms} == {65_400_000}
    arrays = [
        pa.array([Decimal("65.4")], pa.decimal128(10, 3)),
        pa.array(["65.4"]),
        pa.array([65.4]),
        pa.array([Decimal("65.4")], pa.decimal128(12, 1)),
        np.array([65.4]),
    ]
    assert {int(micro_array(a)[0][0]) for a in arrays} == {65_400_000}
    assert micro_array(pa.array([65], pa.int8()))[0].tolist() == [65_000_000]


def _random_value(rng: random.Random, item: Item) -> Any:
    """A concentration near a breakpoint, in the range, above the top, or missing."""
    bps = BREAKPOINTS[item]
    roll = rng.random()
    if roll < 0.08:
        return rng.choice([None, "", "-", float("nan"), -2])
    if roll < 0.5:
        bp = rng.choice(bps)
        delta = rng.choice(["0", "0.1", "-0.1", "1", "-1", "0.000001", "-0.000001", "0.05"])
        return str(max(Decimal(bp) + Decimal(delta), Decimal(0)))
    if roll < 0.55:
        return bps[-1] * rng.choice([1.01, 3, 10])
    value = rng.uniform(0, bps[-1])
    return round(value, 1) if roll < 0.8 else round(value)


def _column(values: list[Any], kind: str) -> pa.Array:
    """The same values as text, float64 or decimal columns."""

    def text(v: object) -> str | None:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return str(v)

    texts = [text(v) for v in values]
    if kind == "text":
        return pa.array(texts)
    if kind == "float":
        return pa.array([None if t in (None, "", "-") else float(t) for t in texts], pa.float64())
    cleaned = [None if t in (None, "", "-") else Decimal(t) for t in texts]
    return pa.array(cleaned, pa.decimal128(20, 6))


@pytest.mark.parametrize("kind", ["text", "float", "decimal"])
@pytest.mark.parametrize("require_all", [False, True])
def test_vectorised_hourly_agrees_with_scalar(kind: str, require_all: bool) -> None:
    rng = random.Random(f"hourly-{kind}-{require_all}")
    items = dict(
        zip(HOURLY_KEYS[:-1], [Item.SO2_1H, Item.NO2_1H, Item.PM10_24H, Item.PM2_5_24H,
                               Item.CO_1H, Item.O3_1H], strict=True)
    )  # fmt: skip
    rows = []
    for _ in range(3000):
        row = {key: _random_value(rng, item) for key, item in items.items()}
        row["so2_24h"] = _random_value(rng, Item.SO2_24H)
        rows.append(row)
    table = pa.table({key: _column([r[key] for r in rows], kind) for key in HOURLY_KEYS})
    vectorised = hourly_aqi_table(table, require_all=require_all, with_iaqi=True)
    scalars = [
        hourly_aqi(**{k: _scalar(v) for k, v in row.items()}, require_all=require_all)
        for row in rows
    ]
    assert vectorised["aqi"].to_pylist() == [s.aqi for s in scalars]
    assert vectorised["primary_pollutant"].to_pylist() == [
        s.primary_pollutant or None for s in scalars
    ]
    assert vectorised["aqi_level"].to_pylist() == [s.level and s.level.grade for s in scalars]
    for item in items.values():
        assert vectorised[f"iaqi_{item}"].to_pylist() == [s.iaqi[item] for s in scalars]
    aqis = {s.aqi for s in scalars}
    assert 500 in aqis and (None in aqis) == require_all  # the sample reaches the ends


@pytest.mark.parametrize("kind", ["text", "float", "decimal"])
def test_vectorised_daily_agrees_with_scalar(kind: str) -> None:
    rng = random.Random(f"daily-{kind}")
    items = dict(
        zip(DAILY_KEYS, [Item.SO2_24H, Item.NO2_24H, Item.PM10_24H, Item.PM2_5_24H,
                         Item.CO_24H, Item.O3_1H, Item.O3_8H], strict=True)
    )  # fmt: skip
    rows = [{key: _random_value(rng, item) for key, item in items.items()} for _ in range(3000)]
    table = pa.table({key: _column([r[key] for r in rows], kind) for key in DAILY_KEYS})
    for require_all in (False, True):
        vectorised = daily_aqi_table(table, require_all=require_all)
        scalars = [
            daily_aqi(**{k: _scalar(v) for k, v in row.items()}, require_all=require_all)
            for row in rows
        ]
        assert vectorised["aqi"].to_pylist() == [s.aqi for s in scalars]
        assert vectorised["primary_pollutant"].to_pylist() == [
            s.primary_pollutant or None for s in scalars
        ]


def _scalar(value: Any) -> Any:
    """The scalar path gets the same value as the columns: text as Decimal, NaN as None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def test_hourly_table_keeps_its_columns_and_needs_the_inputs() -> None:
    columns = {k: [10.0] for k in HOURLY_KEYS} | {"co": [0.5], "aqi": ["old"], "station": ["x"]}
    table = pa.table(columns)
    result = hourly_aqi_table(table)
    assert result.column_names[: len(table.column_names)] == table.column_names
    assert result["aqi"].to_pylist() == [15]  # PM2.5 10 → 14.3 → 15 is the highest
    with pytest.raises(KeyError, match="o3"):
        hourly_aqi_table(table.drop_columns(["o3"]))


def test_city_mean_rounds_half_to_even() -> None:
    # GB/T 8170 四舍六入五成双, as CNEMC's own published means do.
    assert mean_concentration([1, 2]) == Decimal(2)
    assert mean_concentration([2, 3]) == Decimal(2)
    assert mean_concentration([2, 3, None, "-"]) == Decimal(2)
    assert mean_concentration(["0.6", "0.7"], decimals=1) == Decimal("0.6")
    assert mean_concentration(["0.7", "0.8"], decimals=1) == Decimal("0.8")
    assert mean_concentration([1, 2, 2], decimals=None) == Decimal("1.666667")
    assert mean_concentration([None, ""]) is None


def test_city_aqi_is_the_aqi_of_the_rounded_station_means() -> None:
    stations: dict[str, list[Any]] = {
        "timepoint": ["t1"] * 3 + ["t1"] * 2 + ["t2"] * 2,
        "area": ["A"] * 3 + ["B"] * 2 + ["A"] * 2,
        "so2": [5, 6, 7, 1, 2, 3, None],
        "no2": [20, 21, 22, 10, 11, 12, 13],
        "pm10": [50, 51, 52, 150, 151, 40, 41],
        "pm2_5": [34, 35, 37, 20, 21, 35, 36],
        "co": [0.6, 0.7, 0.7, 1.0, 1.1, 0.6, 0.7],
        "o3": [100, 101, 103, 50, 51, 60, 61],
    }
    table = pa.table(stations)
    cities = city_hourly_aqi_table(table)
    assert cities.select(["timepoint", "area"]).to_pylist() == [
        {"timepoint": "t1", "area": "A"},
        {"timepoint": "t1", "area": "B"},
        {"timepoint": "t2", "area": "A"},
    ]
    expected = []
    for key in (("t1", "A"), ("t1", "B"), ("t2", "A")):
        rows = [
            i
            for i, k in enumerate(zip(stations["timepoint"], stations["area"], strict=True))
            if k == key
        ]
        means: dict[str, Any] = {
            c: mean_concentration([stations[c][i] for i in rows], decimals=1 if c == "co" else 0)
            for c in ("so2", "no2", "pm10", "pm2_5", "co", "o3")
        }
        expected.append(hourly_aqi(**means))
    assert cities["aqi"].to_pylist() == [r.aqi for r in expected]
    assert cities["pm2_5"].to_pylist() == [35.0, 20.0, 36.0]  # 35.33 → 35, 20.5 → 20, 35.5 → 36
    # B's PM10 mean 150.5 rounds to 150 (IAQI 100), not 151 (IAQI 101).
    assert cities["pm10"].to_pylist() == [51.0, 150.0, 40.0]
    assert cities["aqi"].to_pylist() == [51, 100, 52]
    unrounded = city_mean_table(table, by=["timepoint", "area"], decimals={"pm2_5": None})
    assert unrounded["pm2_5"].to_pylist() == [35.333333, 20.5, 35.5]
