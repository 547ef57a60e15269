"""Air quality index (AQI) per HJ 633-2012, with city means per HJ 663-2013.

Two paths give the same numbers: a scalar one (`iaqi`, `hourly_aqi`, `daily_aqi`) for tests
and explanations, and a vectorised one over Arrow (`iaqi_array`, `aqi_columns`,
`hourly_aqi_table`, `daily_aqi_table`, `city_hourly_aqi_table`) for whole tables.

Rules of this module, each stated once:

- Exact arithmetic. A concentration is first taken in millionths of its unit (µg/m³, or
  mg/m³ for CO), rounded half to even: far finer than any monitor reports, and the same
  integer on both paths. The IAQI formula then runs in integers, so a value that is exactly
  on a breakpoint gives exactly that breakpoint's IAQI and the ceiling never sees float error
  (with floats, CO 24h 2.2 mg/m³ comes out as 55.000000000000004 and would round up to 56).
- Missing values. Null, NaN, ±inf, empty text, "-" and "—" are missing; so is a negative
  concentration. By default the AQI is the maximum over the items present (None when none is
  present); with ``require_all=True`` the AQI is None as soon as one item is missing, which is
  how CNEMC publishes (see docs/ecocloud-cnemc-columns.md).
- Above the table. HJ 633 stops at IAQI 500; a higher concentration is reported as IAQI 500.
  Two rows stop earlier and are "not computed" above their top instead (HJ 633 table 1,
  notes 2 and 3): SO2 1-hour above 800 µg/m³ reports the SO2 24-hour IAQI, and O3 8-hour
  above 800 µg/m³ leaves ozone to the O3 1-hour IAQI.
- Primary pollutants: when AQI > 50, every item whose IAQI equals the AQI, listed in the
  order of HJ 633 table 1 and joined by commas, in CNEMC's notation
  (``颗粒物(PM10),细颗粒物(PM2.5)``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc


class Item(StrEnum):
    """A row of HJ 633-2012 table 1: a pollutant with the averaging time of its breakpoints."""

    SO2_24H = "so2_24h"
    SO2_1H = "so2_1h"
    NO2_24H = "no2_24h"
    NO2_1H = "no2_1h"
    PM10_24H = "pm10_24h"
    CO_24H = "co_24h"
    CO_1H = "co_1h"
    O3_1H = "o3_1h"
    O3_8H = "o3_8h"
    PM2_5_24H = "pm2_5_24h"


#: The IAQI value at each breakpoint (HJ 633-2012 table 1, first row).
IAQI_STEPS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)

#: Concentration breakpoints of HJ 633-2012 table 1; CO in mg/m³, all others in µg/m³.
BREAKPOINTS: Mapping[Item, tuple[int, ...]] = MappingProxyType(
    {
        Item.SO2_24H: (0, 50, 150, 475, 800, 1600, 2100, 2620),
        Item.SO2_1H: (0, 150, 500, 650, 800),
        Item.NO2_24H: (0, 40, 80, 180, 280, 565, 750, 940),
        Item.NO2_1H: (0, 100, 200, 700, 1200, 2340, 3090, 3840),
        Item.PM10_24H: (0, 50, 150, 250, 350, 420, 500, 600),
        Item.CO_24H: (0, 2, 4, 14, 24, 36, 48, 60),
        Item.CO_1H: (0, 5, 10, 35, 60, 90, 120, 150),
        Item.O3_1H: (0, 160, 200, 300, 400, 800, 1000, 1200),
        Item.O3_8H: (0, 100, 160, 215, 265, 800),
        Item.PM2_5_24H: (0, 35, 75, 115, 150, 250, 350, 500),
    }
)

#: Items whose table ends below IAQI 500: above the top they are not computed (notes 2, 3).
NOT_COMPUTED_ABOVE_TOP: frozenset[Item] = frozenset({Item.SO2_1H, Item.O3_8H})

UNITS: Mapping[Item, str] = MappingProxyType(
    {item: ("mg/m³" if item in (Item.CO_24H, Item.CO_1H) else "µg/m³") for item in Item}
)

#: Decimals of a reported concentration (HJ 663-2013): CO 0.1 mg/m³, the others 1 µg/m³.
DECIMALS: Mapping[Item, int] = MappingProxyType(
    {item: (1 if item in (Item.CO_24H, Item.CO_1H) else 0) for item in Item}
)

#: Primary pollutant names as CNEMC publishes them, in the order of HJ 633 table 1.
POLLUTANT_NAMES: tuple[str, ...] = (
    "二氧化硫",
    "二氧化氮",
    "颗粒物(PM10)",
    "一氧化碳",
    "臭氧1小时",
    "臭氧8小时",
    "细颗粒物(PM2.5)",
)

#: Short names of the pollutants, in the order of POLLUTANT_NAMES, for missing items.
MISSING_LABELS: tuple[str, ...] = ("SO2", "NO2", "PM10", "CO", "O3", "O3_8h", "PM2.5")

PRIMARY_NAMES: Mapping[Item, str] = MappingProxyType(
    {
        Item.SO2_24H: "二氧化硫",
        Item.SO2_1H: "二氧化硫",
        Item.NO2_24H: "二氧化氮",
        Item.NO2_1H: "二氧化氮",
        Item.PM10_24H: "颗粒物(PM10)",
        Item.CO_24H: "一氧化碳",
        Item.CO_1H: "一氧化碳",
        Item.O3_1H: "臭氧1小时",
        Item.O3_8H: "臭氧8小时",
        Item.PM2_5_24H: "细颗粒物(PM2.5)",
    }
)


@dataclass(frozen=True)
class Level:
    """An AQI level of HJ 633-2012 table 2 with its colour from appendix A."""

    grade: int
    name: str
    category: str
    colour_name: str
    colour: str
    low: int
    high: int | None
    health: str = ""  # 对健康影响情况, as table 2 words it
    advice: str = ""  # 建议采取的措施


LEVELS: tuple[Level, ...] = (
    Level(
        1, "一级", "优", "绿色", "#00e400", 0, 50,
        "空气质量令人满意，基本无空气污染",
        "各类人群可正常活动",
    ),
    Level(
        2, "二级", "良", "黄色", "#ffff00", 51, 100,
        "空气质量可接受，但某些污染物可能对极少数异常敏感人群健康有较弱影响",
        "极少数异常敏感人群应减少户外活动",
    ),
    Level(
        3, "三级", "轻度污染", "橙色", "#ff7e00", 101, 150,
        "易感人群症状有轻度加剧，健康人群出现刺激症状",
        "儿童、老年人及心脏病、呼吸系统疾病患者应减少长时间、高强度的户外锻炼",
    ),
    Level(
        4, "四级", "中度污染", "红色", "#ff0000", 151, 200,
        "进一步加剧易感人群症状，可能对健康人群心脏、呼吸系统有影响",
        "儿童、老年人及心脏病、呼吸系统疾病患者避免长时间、高强度的户外锻炼，"
        "一般人群适量减少户外运动",
    ),
    Level(
        5, "五级", "重度污染", "紫色", "#99004c", 201, 300,
        "心脏病和肺病患者症状显著加剧，运动耐受力降低，健康人群普遍出现症状",
        "儿童、老年人和心脏病、肺病患者应停留在室内，停止户外运动，一般人群减少户外运动",
    ),
    Level(
        6, "六级", "严重污染", "褐红色", "#7e0023", 301, None,
        "健康人群运动耐受力降低，有明显强烈症状，提前出现某些疾病",
        "儿童、老年人和病人应当留在室内，避免体力消耗，一般人群应避免户外活动",
    ),
)  # fmt: skip

#: Column names the table functions read by default, per item.
HOURLY_COLUMNS: Mapping[Item, str] = MappingProxyType(
    {
        Item.SO2_1H: "so2",
        Item.NO2_1H: "no2",
        Item.PM10_24H: "pm10",
        Item.CO_1H: "co",
        Item.O3_1H: "o3",
        Item.PM2_5_24H: "pm2_5",
    }
)
DAILY_COLUMNS: Mapping[Item, str] = MappingProxyType(
    {
        Item.SO2_24H: "so2",
        Item.NO2_24H: "no2",
        Item.PM10_24H: "pm10",
        Item.CO_24H: "co",
        Item.O3_1H: "o3_1h",
        Item.O3_8H: "o3_8h",
        Item.PM2_5_24H: "pm2_5",
    }
)

Concentration: TypeAlias = int | float | Decimal | Fraction | str
ArrayLike: TypeAlias = pa.Array | pa.ChunkedArray | np.ndarray | Sequence[Concentration | None]
Int64Array: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

MICRO = 1_000_000
MICRO_DIGITS = 6
# Anything above this is above every table; clipping keeps micro-units inside int64.
CAP_UNITS = 1_000_000_000
_ROUNDER = 1.5 * 2.0**52
MISSING_MARKS: tuple[str, ...] = ("", "-", "—", "--")

_LEVEL_TOPS = np.array([50, 100, 150, 200, 300], dtype=np.int64)
_BIT: Mapping[Item, int] = {item: POLLUTANT_NAMES.index(n) for item, n in PRIMARY_NAMES.items()}
_PRIMARY_COMBINATIONS: list[str] = [
    ",".join(n for i, n in enumerate(POLLUTANT_NAMES) if mask >> i & 1)
    for mask in range(1 << len(POLLUTANT_NAMES))
]
_MISSING_COMBINATIONS: list[str] = [
    ",".join(n for i, n in enumerate(MISSING_LABELS) if mask >> i & 1)
    for mask in range(1 << len(MISSING_LABELS))
]


# ---------------------------------------------------------------- scalar path


def to_micro(value: Concentration | None) -> int | None:
    """A concentration in millionths of its unit, half to even; None when missing or negative."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a concentration is a number, not a bool")
    if isinstance(value, str):
        text = value.strip()
        if text in MISSING_MARKS:
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite():
            # Text must be a number or a missing mark, as in the vectorised path.
            raise ValueError(f"not a concentration: {text!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # The same IEEE operations as the vectorised path (clip, ×10⁶, rint), so both agree.
        micro = round(max(min(value, float(CAP_UNITS)), -1.0) * MICRO)
    elif isinstance(value, int):
        micro = max(min(value, CAP_UNITS), -1) * MICRO
    elif isinstance(value, Decimal):
        if not value.is_finite():
            return None
        # Clip first so that quantising stays within the default 28-digit context.
        clipped = max(min(value, Decimal(CAP_UNITS)), Decimal(-1))
        quantised = clipped.quantize(Decimal(1).scaleb(-MICRO_DIGITS), rounding=ROUND_HALF_EVEN)
        micro = int(quantised * MICRO)
    elif isinstance(value, Fraction):
        micro = round(max(min(value, Fraction(CAP_UNITS)), Fraction(-1)) * MICRO)
    else:
        raise TypeError(f"not a concentration: {value!r}")
    return micro if micro >= 0 else None


def _iaqi_of_micro(item: Item, micro: int) -> int | None:
    """The HJ 633 IAQI of a valid concentration in micro-units; None above a not-computed top."""
    bps = BREAKPOINTS[item]
    c = Fraction(micro, MICRO)
    for k in range(1, len(bps)):
        if c <= bps[k]:
            slope = Fraction(IAQI_STEPS[k] - IAQI_STEPS[k - 1], bps[k] - bps[k - 1])
            return math.ceil(slope * (c - bps[k - 1]) + IAQI_STEPS[k - 1])
    return None if item in NOT_COMPUTED_ABOVE_TOP else IAQI_STEPS[-1]


def iaqi(item: Item, concentration: Concentration | None) -> int | None:
    """IAQI = ⌈(IAQI_hi − IAQI_lo)/(BP_hi − BP_lo) × (C − BP_lo) + IAQI_lo⌉ in exact arithmetic."""
    micro = to_micro(concentration)
    return None if micro is None else _iaqi_of_micro(item, micro)


def level_of(aqi: int) -> Level:
    """The HJ 633 level of an AQI: 0–50 一级 优 … above 300 六级 严重污染."""
    if aqi < 0:
        raise ValueError(f"an AQI is not negative: {aqi}")
    return LEVELS[int(np.searchsorted(_LEVEL_TOPS, aqi, side="left"))]


@dataclass(frozen=True)
class AqiResult:
    """An AQI with its individual indices and primary pollutants."""

    aqi: int | None
    iaqi: Mapping[Item, int | None]
    primary_pollutants: tuple[str, ...]
    #: Items without a valid value, by their MISSING_LABELS name, in HJ 633 table order.
    missing: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        """Whether the AQI was computed without some of its items (a partial hour)."""
        return self.aqi is not None and bool(self.missing)

    @property
    def primary_pollutant(self) -> str:
        """Primary pollutants in CNEMC notation, comma-joined; empty when there is none."""
        return ",".join(self.primary_pollutants)

    @property
    def level(self) -> Level | None:
        """The level of the AQI; None when there is no AQI."""
        return None if self.aqi is None else level_of(self.aqi)

    @property
    def exceeding(self) -> tuple[str, ...]:
        """Pollutants over their limit (超标污染物): IAQI above 100 (HJ 633 §3.6)."""
        names = {PRIMARY_NAMES[i] for i, v in self.iaqi.items() if v is not None and v > 100}
        return tuple(n for n in POLLUTANT_NAMES if n in names)


def aqi_of(
    concentrations: Mapping[Item, Concentration | None],
    *,
    so2_24h: Concentration | None = None,
    require_all: bool = False,
) -> AqiResult:
    """AQI = the maximum IAQI over the items (HJ 633 §4.2); primary pollutants at it when > 50."""
    values: dict[Item, int | None] = {}
    absent: set[str] = set()
    for item, concentration in concentrations.items():
        micro = to_micro(concentration)
        value = None if micro is None else _iaqi_of_micro(item, micro)
        if item is Item.SO2_1H and micro is not None and value is None:
            # Note 2: SO2 1h above 800 is not computed; SO2 reports its 24-hour IAQI.
            value = iaqi(Item.SO2_24H, so2_24h)
            gone = value is None
        elif item is Item.O3_8H and micro is not None and value is None:
            # Note 3: O3 8h above 800 is not computed; ozone is reported by its 1-hour IAQI.
            gone = Item.O3_1H not in concentrations
        else:
            gone = value is None
        if gone:
            absent.add(MISSING_LABELS[_BIT[item]])
        values[item] = value
    present = [v for v in values.values() if v is not None]
    aqi = max(present) if present and not (require_all and absent) else None
    primary: tuple[str, ...] = ()
    if aqi is not None and aqi > 50:
        names = {PRIMARY_NAMES[i] for i, v in values.items() if v == aqi}
        primary = tuple(n for n in POLLUTANT_NAMES if n in names)
    return AqiResult(
        aqi=aqi,
        iaqi=MappingProxyType(values),
        primary_pollutants=primary,
        missing=tuple(n for n in MISSING_LABELS if n in absent),
    )


def hourly_aqi(
    *,
    so2: Concentration | None,
    no2: Concentration | None,
    pm10: Concentration | None,
    pm2_5: Concentration | None,
    co: Concentration | None,
    o3: Concentration | None,
    so2_24h: Concentration | None = None,
    require_all: bool = False,
) -> AqiResult:
    """Real-time AQI from 1-hour concentrations; PM10 and PM2.5 use their 24-hour breakpoints."""
    concentrations = {
        Item.SO2_1H: so2,
        Item.NO2_1H: no2,
        Item.PM10_24H: pm10,
        Item.CO_1H: co,
        Item.O3_1H: o3,
        Item.PM2_5_24H: pm2_5,
    }
    return aqi_of(concentrations, so2_24h=so2_24h, require_all=require_all)


def daily_aqi(
    *,
    so2: Concentration | None,
    no2: Concentration | None,
    pm10: Concentration | None,
    pm2_5: Concentration | None,
    co: Concentration | None,
    o3_1h: Concentration | None,
    o3_8h: Concentration | None,
    require_all: bool = False,
) -> AqiResult:
    """Daily AQI from 24-hour means and the day's maximum O3 1-hour and 8-hour values."""
    concentrations = {
        Item.SO2_24H: so2,
        Item.NO2_24H: no2,
        Item.PM10_24H: pm10,
        Item.CO_24H: co,
        Item.O3_1H: o3_1h,
        Item.O3_8H: o3_8h,
        Item.PM2_5_24H: pm2_5,
    }
    return aqi_of(concentrations, require_all=require_all)


def _round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator, half to even (GB/T 8170 四舍六入五成双); denominator > 0."""
    q, r = divmod(numerator, denominator)
    if 2 * r > denominator or (2 * r == denominator and q % 2 == 1):
        q += 1
    return q


def mean_concentration(
    values: Iterable[Concentration | None], *, decimals: int | None = 0
) -> Decimal | None:
    """Arithmetic mean of the valid values, half to even at `decimals` (None: micro-units)."""
    micros = [m for m in map(to_micro, values) if m is not None]
    if not micros:
        return None
    digits = MICRO_DIGITS if decimals is None else decimals
    units = _round_half_even(sum(micros), len(micros) * (MICRO // 10**digits))
    return Decimal(units).scaleb(-digits)


# ------------------------------------------------------------ vectorised path


def _as_array(values: ArrayLike) -> pa.Array:
    """One contiguous Arrow array from any supported input."""
    if isinstance(values, pa.ChunkedArray):
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray):
        return pa.array(values, from_pandas=True)
    return pa.array(list(values), from_pandas=True)


def _decimal_micro(array: pa.Array) -> tuple[Int64Array, BoolArray]:
    """Micro-units of a decimal array: half-to-even rounding in decimal arithmetic, so exact."""
    rounded = pc.round(array, ndigits=MICRO_DIGITS, round_mode="half_to_even")
    scaled = rounded.cast(pa.decimal128(38, MICRO_DIGITS))
    cap, floor = (pa.scalar(Decimal(v), scaled.type) for v in (CAP_UNITS, -1))
    # skip_nulls=False: a missing value must stay null, not become the cap or the floor.
    clipped = pc.max_element_wise(
        pc.min_element_wise(scaled, cap, skip_nulls=False), floor, skip_nulls=False
    ).cast(pa.decimal128(16, MICRO_DIGITS))
    micro = pc.multiply(clipped, pa.scalar(Decimal(MICRO), pa.decimal128(7, 0))).cast(pa.int64())
    values = pc.fill_null(micro, -1).to_numpy()
    return values, values >= 0


def micro_array(values: ArrayLike) -> tuple[Int64Array, BoolArray]:
    """Micro-units and validity of a numeric, decimal or text column, by the rules of `to_micro`."""
    array = _as_array(values)
    kind = array.type
    if pa.types.is_null(kind):
        return np.full(len(array), -1, dtype=np.int64), np.zeros(len(array), dtype=np.bool_)
    if pa.types.is_integer(kind):
        ints = pc.fill_null(array.cast(pa.int64()), -1).to_numpy()
        micro = np.clip(ints, -1, CAP_UNITS) * MICRO
        return micro, micro >= 0
    if pa.types.is_floating(kind):
        floats = pc.fill_null(array.cast(pa.float64()), np.nan).to_numpy()
        finite = np.isfinite(floats)
        scaled = np.clip(floats, -1.0, float(CAP_UNITS))
        scaled *= MICRO
        # Round half to even as np.rint does, but vectorised: adding and taking away 1.5 × 2⁵²
        # leaves every |x| < 2⁵¹ (here at most 10¹⁵) at its nearest integer, ties to even.
        scaled += _ROUNDER
        scaled -= _ROUNDER
        np.putmask(scaled, ~finite, -1.0)
        micro = scaled.astype(np.int64)
        return micro, finite & (micro >= 0)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.utf8_trim_whitespace(array.cast(pa.string()))
        blank = pc.fill_null(pc.is_in(text, pa.array(MISSING_MARKS)), True)
        array = pc.if_else(blank, pa.scalar(None, pa.string()), text)
    elif not pa.types.is_decimal(kind):
        raise TypeError(f"not a concentration column: {kind}")
    try:
        # Text parses as decimals of up to 18 places, then rounds exactly like `to_micro`.
        if not pa.types.is_decimal(array.type):
            array = array.cast(pa.decimal128(38, 18))
        return _decimal_micro(array)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"not a concentration column: {exc}") from None


# Codes of the vectorised engine, an int16 per row and item: the IAQI (0…500), or one of these.
MISSING_CODE = -1  # no valid concentration
NOT_COMPUTED_CODE = -2  # above the top of SO2 1-hour or O3 8-hour (notes 2, 3)


@dataclass(frozen=True)
class _Lookup:
    """An item's IAQI on a grid of its reporting step, built by the exact scalar formula.

    The grid step is the reporting precision (1 µg/m³, CO 0.1 mg/m³: `step` micro-units).
    Index g (−1 … top + 1 in steps; −1 wraps to the last slot) stands for the concentration
    g × step exactly (`exact`) and for the open interval up to the next grid point (`base`,
    `slope`, `scale`): there the IAQI is ⌈(base[g] + slope[g] × r) / scale[g]⌉ with r the
    micro-units past the grid point, in integers. Breakpoints are whole units, so no interval
    straddles one.
    """

    step: int
    top: int
    exact: npt.NDArray[np.int16]
    base: Int64Array
    slope: Int64Array
    scale: Int64Array


def _lookup(item: Item) -> _Lookup:
    bps = BREAKPOINTS[item]
    per_unit = 10 ** DECIMALS[item]
    step = MICRO // per_unit
    top = bps[-1] * per_unit
    above = NOT_COMPUTED_CODE if item in NOT_COMPUTED_ABOVE_TOP else IAQI_STEPS[-1]
    exact = [_iaqi_of_micro(item, g * step) for g in range(top + 1)]
    codes = [above if v is None else v for v in exact] + [above, MISSING_CODE]
    # Between g and g + 1 for g in 0 … top − 1: the segment k with bps[k−1] ≤ g < bps[k].
    base, slope, scale = [], [], []
    for g in range(top):
        k = next(k for k in range(1, len(bps)) if g < bps[k] * per_unit)
        span, steps = bps[k] - bps[k - 1], IAQI_STEPS[k] - IAQI_STEPS[k - 1]
        base.append(IAQI_STEPS[k - 1] * span * MICRO + steps * (g * step - bps[k - 1] * MICRO))
        slope.append(steps)
        scale.append(span * MICRO)
    # Above the top (g = top, top + 1) and below zero (g = −1): a constant code.
    base += [above, above, MISSING_CODE]
    slope += [0, 0, 0]
    scale += [1, 1, 1]
    return _Lookup(
        step=step,
        top=top,
        exact=np.array(codes, dtype=np.int16),
        base=np.array(base, dtype=np.int64),
        slope=np.array(slope, dtype=np.int64),
        scale=np.array(scale, dtype=np.int64),
    )


_LOOKUPS: Mapping[Item, _Lookup] = MappingProxyType({item: _lookup(item) for item in Item})


def _codes_of_micro(lookup: _Lookup, micro: Int64Array) -> npt.NDArray[np.int16]:
    """IAQI codes of concentrations in micro-units (negative: missing)."""
    # Any negative value becomes grid point −1 (the missing code), whatever the step.
    # Far below zero is grid point −1 with nothing past it: the missing code from the table.
    micro = np.maximum(micro, -lookup.step)
    # floor_divide and a product: far faster than np.divmod on int64.
    grid = np.floor_divide(micro, lookup.step)
    rest = micro - grid * lookup.step
    np.minimum(grid, lookup.top + 1, out=grid)
    codes = lookup.exact.take(grid)
    if np.count_nonzero(rest):
        between = np.flatnonzero(rest)
        g, r = grid[between], rest[between]
        numerator = lookup.base.take(g) + lookup.slope.take(g) * r
        # Floor division of the negation is the exact ceiling of the quotient.
        codes[between] = -np.floor_divide(-numerator, lookup.scale.take(g))
    return codes


def iaqi_codes(item: Item, values: ArrayLike) -> npt.NDArray[np.int16]:
    """IAQI of every value as int16: 0…500, −1 missing, −2 above a not-computed top.

    Whole numbers (every integer column, and most values of any column) are read from a table
    the scalar formula built; only values between two whole units take the integer formula.
    """
    lookup = _LOOKUPS[item]
    array = _as_array(values)
    if pa.types.is_integer(array.type):
        ints = pc.fill_null(array.cast(pa.int64()), MISSING_CODE).to_numpy()
        if lookup.step != MICRO:
            return _codes_of_micro(lookup, np.clip(ints, -1, CAP_UNITS) * MICRO)
        # −1 (missing, or any negative after clipping) wraps to the table's last slot.
        codes: npt.NDArray[np.int16] = lookup.exact.take(np.clip(ints, -1, lookup.top + 1))
        return codes
    try:
        micro, _ = micro_array(array)
    except ValueError as exc:
        raise ValueError(f"{item}: {exc}") from None
    return _codes_of_micro(lookup, micro)


def iaqi_array(item: Item, values: ArrayLike) -> pa.Array:
    """IAQI of every value, as `iaqi` gives it one by one (int16, null where None)."""
    codes = iaqi_codes(item, values)
    return _numbers(codes, _validity(codes >= 0))


def _validity(valid: BoolArray) -> pa.Buffer | None:
    """An Arrow validity bitmap of a boolean mask; None when every value is valid."""
    return None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))


def _numbers(values: npt.NDArray[Any], validity: pa.Buffer | None) -> pa.Array:
    """A numeric column over a NumPy array without copying it, nulls where not valid."""
    kind = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(kind, len(values), [validity, pa.py_buffer(values)])


def _strings(
    codes: npt.NDArray[np.uint8], validity: pa.Buffer | None, dictionary: Sequence[str]
) -> pa.Array:
    """Small integer codes as a dictionary-encoded string column (few distinct values)."""
    indices = _numbers(codes.view(np.int8), validity)
    return pa.DictionaryArray.from_arrays(indices, pa.array(dictionary, pa.string()))


#: Per AQI code (−2 … 500, offset by 2): the level's index in LEVELS (0 where there is none).
_GRADE_OF = np.array(
    [0, 0] + [int(np.searchsorted(_LEVEL_TOPS, a, side="left")) for a in range(501)],
    dtype=np.uint8,
)


@dataclass(frozen=True)
class _Block:
    """The AQI of a run of rows as NumPy codes, before it becomes Arrow columns."""

    aqi: npt.NDArray[np.int16]  # −1 or −2 where there is no AQI
    absent: npt.NDArray[np.uint8]  # missing items, one bit per POLLUTANT_NAMES position
    primary: npt.NDArray[np.uint8]  # primary pollutants, likewise
    codes: Mapping[Item, npt.NDArray[np.int16]]


def _block(
    columns: Mapping[Item, pa.Array], fallback: pa.Array | None, require_all: bool
) -> _Block:
    """The AQI codes of rows whose columns are given, as `aqi_of` computes them per row."""
    codes = {item: iaqi_codes(item, column) for item, column in columns.items()}
    so2 = codes.get(Item.SO2_1H)
    if so2 is not None:
        swap = np.flatnonzero(so2 == NOT_COMPUTED_CODE)
        if len(swap):
            # Note 2: SO2 1h above 800 is not computed; SO2 reports its 24-hour IAQI.
            if fallback is None:
                so2[swap] = MISSING_CODE
            else:
                so2[swap] = iaqi_codes(Item.SO2_24H, fallback.take(pa.array(swap)))
    rows = len(next(iter(codes.values())))
    absent = np.zeros(rows, dtype=np.uint8)
    for item, values in codes.items():
        # Note 3: O3 8h above 800 is not computed; ozone is reported by its 1-hour IAQI.
        left_to_o3_1h = item is Item.O3_8H and Item.O3_1H in codes
        gone = values == MISSING_CODE if left_to_o3_1h else values < 0
        absent |= gone.view(np.uint8) << np.uint8(_BIT[item])
    items = list(codes.values())
    aqi = items[0].copy()
    for values in items[1:]:
        np.maximum(aqi, values, out=aqi)
    if require_all:
        aqi[absent != 0] = MISSING_CODE
    # Primary pollutants are the items at the AQI when it is above 50: compare with a code
    # no item has elsewhere.
    target = np.where(aqi > 50, aqi, np.int16(-9))
    primary = np.zeros(rows, dtype=np.uint8)
    for item, values in codes.items():
        primary |= (values == target).view(np.uint8) << np.uint8(_BIT[item])
    return _Block(aqi=aqi, absent=absent, primary=primary, codes=codes)


#: Rows per block of the vectorised engine; blocks run on threads (NumPy and Arrow release
#: the GIL), so a large table uses every core the process may run on.
BLOCK_ROWS = 1 << 17
_WORKERS = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
_pool: ThreadPoolExecutor | None = None


def _blocks(
    columns: Mapping[Item, pa.Array], fallback: pa.Array | None, rows: int, require_all: bool
) -> list[_Block]:
    """`_block` over runs of rows, on threads when the table is large and there are cores."""
    parts = min(_WORKERS * 2, rows // BLOCK_ROWS)
    if parts <= 1:
        return [_block(columns, fallback, require_all)]
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="aqi")
    bounds = [rows * k // parts for k in range(parts + 1)]

    def run(k: int) -> _Block:
        start, length = bounds[k], bounds[k + 1] - bounds[k]
        part = {item: column.slice(start, length) for item, column in columns.items()}
        return _block(
            part, None if fallback is None else fallback.slice(start, length), require_all
        )

    return list(_pool.map(run, range(parts)))


def aqi_columns(
    concentrations: Mapping[Item, ArrayLike],
    *,
    so2_24h: ArrayLike | None = None,
    require_all: bool = False,
    with_iaqi: bool = False,
) -> pa.Table:
    """Columns aqi, primary_pollutant, aqi_level, aqi_category, aqi_colour, aqi_missing,
    aqi_partial, as `aqi_of` gives them per row.

    `aqi_missing` names the items without a valid value (`MISSING_LABELS`, comma-joined, null
    when none is missing); `aqi_partial` is true where an AQI was computed without them. The
    text columns are dictionary-encoded: they hold a handful of distinct values.
    """
    if not concentrations:
        raise ValueError("an AQI needs at least one item")
    columns = {item: _as_array(column) for item, column in concentrations.items()}
    fallback = None if so2_24h is None else _as_array(so2_24h)
    rows = len(next(iter(columns.values())))
    for item, column in [*columns.items(), *([(Item.SO2_24H, fallback)] if fallback else [])]:
        if len(column) != rows:
            raise ValueError(f"{item}: {len(column)} values, expected {rows}")
    if Item.SO2_1H not in columns:
        fallback = None
    blocks = _blocks(columns, fallback, rows, require_all)

    def joined(arrays: Sequence[npt.NDArray[Any]]) -> npt.NDArray[Any]:
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    aqi = joined([b.aqi for b in blocks])
    absent = joined([b.absent for b in blocks])
    primary = joined([b.primary for b in blocks])
    no_aqi = aqi < 0
    grade = _GRADE_OF.take(aqi + 2)
    has_aqi = _validity(~no_aqi)
    result: dict[str, pa.Array] = {
        "aqi": _numbers(aqi, has_aqi),
        "primary_pollutant": _strings(primary, _validity(primary != 0), _PRIMARY_COMBINATIONS),
        "aqi_level": _numbers((grade + 1).view(np.int8), has_aqi),
        "aqi_category": _strings(grade, has_aqi, [lv.category for lv in LEVELS]),
        "aqi_colour": _strings(grade, has_aqi, [lv.colour for lv in LEVELS]),
        "aqi_missing": _strings(absent, _validity(absent != 0), _MISSING_COMBINATIONS),
        "aqi_partial": pa.array((absent != 0) & ~no_aqi),
    }
    if with_iaqi:
        for item in columns:
            values = joined([b.codes[item] for b in blocks])
            result[f"iaqi_{item}"] = _numbers(values, _validity(values >= 0))
    return pa.table(result)


def _with_columns(table: pa.Table, added: pa.Table) -> pa.Table:
    """`table` with the columns of `added` appended, replacing any of the same name."""
    for name in added.column_names:
        column = added[name]
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table


def _select(table: pa.Table, columns: Mapping[Item, str]) -> dict[Item, ArrayLike]:
    """The table's column for each item; a missing column is an error, not a missing value."""
    absent = [name for name in columns.values() if name not in table.column_names]
    if absent:
        raise KeyError(f"columns not in the table: {', '.join(absent)}")
    return {item: table[name] for item, name in columns.items()}


def hourly_aqi_table(
    table: pa.Table,
    *,
    columns: Mapping[Item, str] = HOURLY_COLUMNS,
    so2_24h_column: str | None = "so2_24h",
    require_all: bool = False,
    with_iaqi: bool = False,
) -> pa.Table:
    """`table` plus the real-time AQI columns; SO2 above 800 uses `so2_24h_column` if present."""
    fallback = None
    if so2_24h_column is not None and so2_24h_column in table.column_names:
        fallback = table[so2_24h_column]
    added = aqi_columns(
        _select(table, columns), so2_24h=fallback, require_all=require_all, with_iaqi=with_iaqi
    )
    return _with_columns(table, added)


def daily_aqi_table(
    table: pa.Table,
    *,
    columns: Mapping[Item, str] = DAILY_COLUMNS,
    require_all: bool = False,
    with_iaqi: bool = False,
) -> pa.Table:
    """`table` plus the daily AQI columns (24-hour means, O3 daily maximum 1-hour and 8-hour)."""
    added = aqi_columns(_select(table, columns), require_all=require_all, with_iaqi=with_iaqi)
    return _with_columns(table, added)


def city_mean_table(
    table: pa.Table, *, by: Sequence[str], decimals: Mapping[str, int | None]
) -> pa.Table:
    """Per group, each column's mean of valid values, half to even at its decimals (float64)."""
    keys = {name: table[name] for name in by}
    valid_micro = {}
    for name in decimals:
        micro, valid = micro_array(table[name])
        valid_micro[name] = pa.array(micro, mask=~valid)
    grouped = (
        pa.table({**keys, **valid_micro})
        .group_by(list(by), use_threads=False)
        .aggregate([(name, agg) for name in decimals for agg in ("sum", "count")])
        .sort_by([(name, "ascending") for name in by])
    )
    result: dict[str, pa.Array | pa.ChunkedArray] = {name: grouped[name] for name in by}
    for name, digits in decimals.items():
        places = MICRO_DIGITS if digits is None else digits
        total = pc.fill_null(grouped[f"{name}_sum"], 0).to_numpy()
        count = grouped[f"{name}_count"].to_numpy()
        denominator = np.maximum(count, 1) * (MICRO // 10**places)
        quotient, remainder = np.divmod(total, denominator)
        up = (2 * remainder > denominator) | ((2 * remainder == denominator) & (quotient % 2 == 1))
        # Multiples of 10^-places survive float64 exactly enough for micro_array to recover them.
        mean = (quotient + up) / 10**places
        result[name] = pa.array(mean, mask=count == 0)
    return pa.table(result)


def city_hourly_aqi_table(
    table: pa.Table,
    *,
    by: Sequence[str] = ("timepoint", "area"),
    columns: Mapping[Item, str] = HOURLY_COLUMNS,
    so2_24h_column: str | None = "so2_24h",
    rounded: bool = True,
    require_all: bool = False,
) -> pa.Table:
    """City real-time AQI (HJ 663-2013): AQI of the mean of its stations' concentrations."""
    decimals: dict[str, int | None] = {
        name: (DECIMALS[item] if rounded else None) for item, name in columns.items()
    }
    if so2_24h_column is not None and so2_24h_column in table.column_names:
        decimals[so2_24h_column] = DECIMALS[Item.SO2_24H] if rounded else None
    means = city_mean_table(table, by=by, decimals=decimals)
    return hourly_aqi_table(
        means, columns=columns, so2_24h_column=so2_24h_column, require_all=require_all
    )
