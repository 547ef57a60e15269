"""The vectorised AQI engine against the exact one, value by value and row by row.

The batch engine reads IAQIs from tables and runs on threads; these tests hold it to the
exact arithmetic of the scalar engine (`iaqi`, `hourly_aqi`, `daily_aqi`: fractions, no
floats) and to the segment formula the vectorised engine used before the tables, on every
breakpoint of every item from both sides, on every whole reporting step of every table, and
on readings hypothesis makes up.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minyun.apps.ecocloud import aqi as engine
from minyun.apps.ecocloud.aqi import (
    BREAKPOINTS,
    DECIMALS,
    IAQI_STEPS,
    MICRO,
    NOT_COMPUTED_ABOVE_TOP,
    Item,
    aqi_columns,
    daily_aqi,
    hourly_aqi,
    hourly_aqi_table,
    iaqi,
    iaqi_array,
    micro_array,
)

Int64Array = npt.NDArray[np.int64]


def _reference_iaqi(item: Item, values: Any) -> list[int | None]:
    """The vectorised engine as it was before the tables: searchsorted segments, int64 formula."""
    bps = BREAKPOINTS[item]
    segments = [1, *range(1, len(bps))]
    lo = np.array([bps[k - 1] * MICRO for k in segments] + [bps[-1] * MICRO], dtype=np.int64)
    span = np.array([(bps[k] - bps[k - 1]) * MICRO for k in segments] + [1], dtype=np.int64)
    step_lo = np.array([IAQI_STEPS[k - 1] for k in segments] + [IAQI_STEPS[-1]], dtype=np.int64)
    step_span = np.array(
        [IAQI_STEPS[k] - IAQI_STEPS[k - 1] for k in segments] + [0], dtype=np.int64
    )
    micro, valid = micro_array(values)
    position = np.zeros(len(micro), dtype=np.int64)
    for bp in np.array(bps, dtype=np.int64) * MICRO:
        position += micro > bp
    numerator = step_span[position] * (micro - lo[position])
    value: Int64Array = step_lo[position] - np.floor_divide(-numerator, span[position])
    above = position == len(bps)
    computed = valid & ~above if item in NOT_COMPUTED_ABOVE_TOP else valid
    return [int(v) if ok else None for v, ok in zip(value, computed, strict=True)]


def _boundaries(item: Item) -> list[Decimal]:
    """Each breakpoint, and one millionth, one reporting step and one unit either side."""
    steps = [Decimal(0), Decimal("0.000001"), Decimal(1).scaleb(-DECIMALS[item]), Decimal(1)]
    values = {
        Decimal(bp) + sign * step for bp in BREAKPOINTS[item] for step in steps for sign in (-1, 1)
    }
    return sorted(v for v in values if v >= 0)


def _forms(values: list[Decimal]) -> dict[str, pa.Array]:
    """The same concentrations as text, float64, decimal and (where whole) int64 columns."""
    forms = {
        "text": pa.array([str(v) for v in values]),
        "float": pa.array([float(v) for v in values], pa.float64()),
        "decimal": pa.array(values, pa.decimal128(20, 6)),
    }
    if all(v == v.to_integral_value() for v in values):
        forms["int"] = pa.array([int(v) for v in values], pa.int64())
    return forms


@pytest.mark.parametrize("item", list(Item))
def test_every_boundary_from_both_sides_equals_the_exact_engine(item: Item) -> None:
    values = _boundaries(item)
    exact = [iaqi(item, v) for v in values]
    assert _reference_iaqi(item, pa.array([str(v) for v in values])) == exact
    for form, column in _forms(values).items():
        assert iaqi_array(item, column).to_pylist() == exact, form
    whole = [v for v in values if v == v.to_integral_value()]
    assert iaqi_array(item, pa.array([int(v) for v in whole])).to_pylist() == [
        iaqi(item, v) for v in whole
    ]


@pytest.mark.parametrize("item", list(Item))
def test_float_ties_at_a_millionth_round_to_even_like_the_exact_engine(item: Item) -> None:
    # bp ± 0.5 µ: × 10⁶ lands exactly on a half, which must round to even as `to_micro` does.
    values = [bp + d for bp in BREAKPOINTS[item] for d in (0.5e-6, -0.5e-6, 1.5e-6) if bp + d > 0]
    ties = [v for v in values if (v * MICRO) % 1 == 0.5]
    assert len(ties) > len(BREAKPOINTS[item])
    exact = [iaqi(item, v) for v in ties]
    assert iaqi_array(item, pa.array(ties, pa.float64())).to_pylist() == exact
    assert _reference_iaqi(item, np.array(ties)) == exact


@pytest.mark.parametrize("item", list(Item))
def test_every_reporting_step_of_the_table_equals_the_exact_engine(item: Item) -> None:
    per_unit = 10 ** DECIMALS[item]
    top = BREAKPOINTS[item][-1] * per_unit
    values = [Decimal(k).scaleb(-DECIMALS[item]) for k in range(top + 3 * per_unit)]
    exact = [iaqi(item, v) for v in values]
    assert _reference_iaqi(item, pa.array([str(v) for v in values])) == exact
    for form, column in _forms(values).items():
        assert iaqi_array(item, column).to_pylist() == exact, form


def test_missing_and_out_of_range_values_in_every_form() -> None:
    item = Item.CO_1H
    floats = pa.array([None, float("nan"), float("inf"), -float("inf"), -0.05, -1.0, 1e300])
    assert iaqi_array(item, floats).to_pylist() == [None] * 6 + [500]
    ints = pa.array([None, -1, -(2**62), 2**62, 0], pa.int64())
    assert iaqi_array(Item.NO2_1H, ints).to_pylist() == [None, None, None, 500, 0]
    assert iaqi_array(item, ints).to_pylist() == [None, None, None, 500, 0]
    assert iaqi_array(Item.SO2_1H, ints).to_pylist() == [None, None, None, None, 0]
    text = pa.array(["", "-", "—", " 0.35 ", "-0.000001", "1e3"])
    assert iaqi_array(item, text).to_pylist() == [None, None, None, 4, None, 500]


# ------------------------------------------------------------ random readings

HOURLY = {
    "so2": Item.SO2_1H,
    "no2": Item.NO2_1H,
    "pm10": Item.PM10_24H,
    "pm2_5": Item.PM2_5_24H,
    "co": Item.CO_1H,
    "o3": Item.O3_1H,
}


def _concentration(item: Item) -> st.SearchStrategy[Decimal | None]:
    """Missing, near a breakpoint, anywhere in the table, or above it; to a millionth."""
    top = BREAKPOINTS[item][-1]
    near = st.builds(
        lambda bp, delta: max(Decimal(bp) + Decimal(delta).scaleb(-6), Decimal(0)),
        st.sampled_from(BREAKPOINTS[item]),
        st.integers(-200_000, 200_000),
    )
    anywhere = st.decimals(0, top * 3, places=6, allow_nan=False, allow_infinity=False)
    reported = st.integers(0, top * 10 ** DECIMALS[item] + 50).map(
        lambda k: Decimal(k).scaleb(-DECIMALS[item])
    )
    return st.one_of(st.none(), near, anywhere, reported)


readings = st.lists(
    st.fixed_dictionaries(
        {key: _concentration(item) for key, item in HOURLY.items()}
        | {"so2_24h": _concentration(Item.SO2_24H)}
    ),
    min_size=1,
    max_size=40,
)


def _columns(rows: list[dict[str, Decimal | None]], form: str) -> pa.Table:
    def column(values: list[Decimal | None]) -> pa.Array:
        if form == "text":
            return pa.array([None if v is None else str(v) for v in values], pa.string())
        if form == "float":
            return pa.array([None if v is None else float(v) for v in values], pa.float64())
        return pa.array(values, pa.decimal128(20, 6))

    return pa.table({key: column([r[key] for r in rows]) for key in rows[0]})


def _expected(rows: list[dict[str, Any]], form: str, require_all: bool) -> list[Any]:
    """Per row: AQI, primary pollutant, level, missing items, partial, by the exact engine."""
    out = []
    for row in rows:
        values = {
            k: (None if v is None else float(v) if form == "float" else v) for k, v in row.items()
        }
        result = hourly_aqi(**values, require_all=require_all)
        out.append(
            (
                result.aqi,
                result.primary_pollutant or None,
                result.level and result.level.grade,
                ",".join(result.missing) or None,
                result.partial,
            )
        )
    return out


def _got(table: pa.Table) -> list[Any]:
    names = ("aqi", "primary_pollutant", "aqi_level", "aqi_missing", "aqi_partial")
    return list(zip(*(table[n].to_pylist() for n in names), strict=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=readings, form=st.sampled_from(["text", "float", "decimal"]), strict=st.booleans())
def test_random_readings_equal_the_exact_engine(
    rows: list[dict[str, Decimal | None]], form: str, strict: bool
) -> None:
    table = _columns(rows, form)
    got = hourly_aqi_table(table, require_all=strict)
    assert _got(got) == _expected(rows, form, strict)


@settings(max_examples=40, deadline=None)
@given(rows=readings)
def test_random_daily_readings_equal_the_exact_engine(rows: list[dict[str, Any]]) -> None:
    keys = {"so2": Item.SO2_24H, "no2": Item.NO2_24H, "pm10": Item.PM10_24H,
            "pm2_5": Item.PM2_5_24H, "co": Item.CO_24H, "o3_1h": Item.O3_1H,
            "o3_8h": Item.O3_8H}  # fmt: skip
    columns = {item: pa.array([r[src] for r in rows], pa.decimal128(20, 6))
               for item, src in zip(keys.values(), [*HOURLY, "so2_24h"], strict=True)}  # fmt: skip
    got = _got(aqi_columns(columns))
    for row, (aqi, primary, _, missing, partial) in zip(rows, got, strict=True):
        result = daily_aqi(
            **dict(zip(keys, [row[src] for src in [*HOURLY, "so2_24h"]], strict=True))
        )
        assert (aqi, primary, missing, partial) == (
            result.aqi, result.primary_pollutant or None, ",".join(result.missing) or None,
            result.partial,
        )  # fmt: skip


def test_threaded_blocks_give_the_same_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    rows = 5000
    columns: Mapping[Item, pa.Array] = {
        item: pa.array(
            rng.integers(0, BREAKPOINTS[item][-1] + 20, rows)
            * MICRO
            // 10 ** DECIMALS[item]
            / MICRO,
            mask=rng.random(rows) < 0.05,
        )
        for item in HOURLY.values()
    }
    fallback = pa.array(rng.integers(0, 2700, rows))
    whole = aqi_columns(columns, so2_24h=fallback, with_iaqi=True)
    monkeypatch.setattr(engine, "BLOCK_ROWS", 300)
    assert engine._blocks(columns, fallback, rows, False).__len__() > 1
    blocked = aqi_columns(columns, so2_24h=fallback, with_iaqi=True)
    assert blocked.equals(whole)
    scalar = [
        hourly_aqi(**{k: columns[i][n].as_py() for k, i in HOURLY.items()},
                   so2_24h=fallback[n].as_py())
        for n in range(rows)
    ]  # fmt: skip
    assert whole["aqi"].to_pylist() == [s.aqi for s in scalar]
    assert whole["aqi_missing"].to_pylist() == [",".join(s.missing) or None for s in scalar]


# ------------------------------------------------------------ partial hours


@pytest.mark.parametrize(("key", "label"), [
    ("so2", "SO2"), ("no2", "NO2"), ("pm10", "PM10"), ("co", "CO"), ("o3", "O3"),
    ("pm2_5", "PM2.5"),
])  # fmt: skip
def test_a_missing_pollutant_leaves_the_aqi_to_the_others_and_is_named(
    key: str, label: str
) -> None:
    full = {"so2": 20, "no2": 150, "pm10": 160, "pm2_5": 80, "co": 1.2, "o3": 210}
    row = {**full, key: None}
    result = hourly_aqi(**row)
    others = [hourly_aqi(**{k: (v if k == name else None) for k, v in full.items()}).aqi
              for name in full if name != key]  # fmt: skip
    assert result.aqi == max(a for a in others if a is not None)
    assert result.missing == (label,) and result.partial
    strict = hourly_aqi(**row, require_all=True)
    assert strict.aqi is None and strict.missing == (label,) and not strict.partial
    table = hourly_aqi_table(pa.Table.from_pylist([row, full]))
    assert table["aqi"].to_pylist() == [result.aqi, hourly_aqi(**full).aqi]
    assert table["primary_pollutant"].to_pylist()[0] == result.primary_pollutant
    assert table["aqi_missing"].to_pylist() == [label, None]
    assert table["aqi_partial"].to_pylist() == [True, False]


def test_all_pollutants_missing_is_no_aqi_with_all_named() -> None:
    row = dict.fromkeys(HOURLY)
    result = hourly_aqi(**row)
    assert result.aqi is None and not result.partial
    assert result.missing == ("SO2", "NO2", "PM10", "CO", "O3", "PM2.5")
    table = hourly_aqi_table(pa.table({k: pa.array([None], pa.float64()) for k in HOURLY}))
    assert table["aqi"].to_pylist() == [None]
    assert table["aqi_missing"].to_pylist() == ["SO2,NO2,PM10,CO,O3,PM2.5"]
    assert table["aqi_partial"].to_pylist() == [False]


def test_so2_above_800_without_its_24_hour_mean_is_missing_so2() -> None:
    result = hourly_aqi(so2=900, no2=10, pm10=10, pm2_5=10, co=0.2, o3=10)
    assert result.missing == ("SO2",) and result.partial
    table = hourly_aqi_table(pa.table({k: [900 if k == "so2" else 10] for k in HOURLY}))
    assert table["aqi_missing"].to_pylist() == ["SO2"]


def test_labels_cover_every_combination() -> None:
    for size in range(len(HOURLY) + 1):
        for gone in itertools.combinations(HOURLY, size):
            row = {k: (None if k in gone else 10) for k in HOURLY}
            assert hourly_aqi(**row).missing == tuple(
                engine.MISSING_LABELS[engine._BIT[HOURLY[k]]]
                for k in sorted(gone, key=lambda k: engine._BIT[HOURLY[k]])
            )
