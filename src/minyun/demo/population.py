"""Deterministic synthetic persons and enterprises of a Fujian-like province, as Arrow batches.

Every attribute of row ``i`` is a pure function of ``(seed, i)``: a keyed counter-based hash
(splitmix64) of the row index, with the keys drawn once from ``numpy.random.default_rng(seed)``.
So a stream has the same bytes whatever the batch size, any row can be rebuilt on its own
(``persons_at``: an enterprise's legal representative is such a person), and a batch is
built with whole-array numpy / Arrow operations, never a Python loop per row.

Identity numbers are unique by construction: row ``i`` is sent through a keyed Feistel
permutation onto the key space of (county, birth year, day of year, sequence) and then
decoded, so distinct rows get distinct numbers with no dedup pass. The key space gives each
county and birth year a share of sequence numbers proportional to its population weight,
which makes the county mix and age pyramid come out right. Credit codes get their
organisation code body the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from minyun.core.identifiers import (
    ORG_WEIGHTS,
    RIC_WEIGHTS,
    USCC_ALPHABET,
    USCC_WEIGHTS,
)

__all__ = [
    "ENTERPRISE_SCHEMA",
    "PERSON_SCHEMA",
    "iter_enterprises",
    "iter_persons",
    "persons_at",
    "write_parquet",
]

PERSON_SCHEMA = pa.schema(
    [
        pa.field("person_id", pa.int64(), nullable=False),
        pa.field("ric", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("sex", pa.string(), nullable=False),
        pa.field("birth_date", pa.date32(), nullable=False),
        pa.field("county_code", pa.string(), nullable=False),
        pa.field("city_code", pa.string(), nullable=False),
        pa.field("phone", pa.string(), nullable=False),
        pa.field("address", pa.string(), nullable=False),
    ]
)

ENTERPRISE_SCHEMA = pa.schema(
    [
        pa.field("enterprise_id", pa.int64(), nullable=False),
        pa.field("uscc", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("legal_rep_ric", pa.string(), nullable=False),
        pa.field("registered_capital", pa.int64(), nullable=False),  # yuan
        pa.field("established", pa.date32(), nullable=False),
        pa.field("industry", pa.string(), nullable=False),  # GB/T 4754-2017 section
        pa.field("county_code", pa.string(), nullable=False),
        pa.field("city_code", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
    ]
)

_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]
_U8 = npt.NDArray[np.uint8]
_Weights: TypeAlias = "list[tuple[str, float]]"

# --------------------------------------------------------------------------- reference tables

# Resident population by prefecture-level city, 7th census (2020), in ten thousands.
_CITY_POPULATION = {
    "350100": 829,  # 福州
    "350200": 516,  # 厦门
    "350300": 321,  # 莆田
    "350400": 249,  # 三明
    "350500": 878,  # 泉州
    "350600": 505,  # 漳州
    "350700": 268,  # 南平
    "350800": 272,  # 龙岩
    "350900": 315,  # 宁德
}
# Enterprises cluster in the coastal economic centres more than people do.
_CITY_BUSINESS = {"350100": 1.4, "350200": 1.6, "350500": 1.3}

FIRST_BIRTH_YEAR, LAST_BIRTH_YEAR = 1935, 2024
# Relative births surviving to today, by birth year (anchor years, linearly interpolated):
# few elders, the 1960-61 famine dip, the 1962-75 boom, the late-1980s echo, a falling tail.
_AGE_PYRAMID = [
    (1935, 0.12), (1945, 0.30), (1950, 0.50), (1958, 0.62), (1960, 0.45), (1961, 0.42),
    (1963, 0.95), (1970, 1.00), (1975, 0.90), (1980, 0.78), (1987, 0.98), (1990, 0.95),
    (1995, 0.72), (2000, 0.60), (2005, 0.64), (2010, 0.70), (2016, 0.78), (2018, 0.62),
    (2020, 0.46), (2024, 0.36),
]  # fmt: skip

# Fujian's commonest surnames, weighted roughly by frequency in the province.
_SURNAMES: _Weights = [
    ("陈", 11.0), ("林", 9.0), ("黄", 6.0), ("张", 4.0), ("吴", 3.5), ("李", 3.5), ("王", 3.0),
    ("郑", 3.0), ("刘", 2.5), ("杨", 2.0), ("许", 1.6), ("蔡", 1.5), ("谢", 1.4), ("郭", 1.4),
    ("洪", 1.2), ("曾", 1.1), ("邱", 1.0), ("庄", 1.0), ("苏", 1.0), ("叶", 1.0), ("何", 0.9),
    ("周", 0.9), ("赖", 0.9), ("罗", 0.8), ("游", 0.7), ("卢", 0.7), ("江", 0.7), ("朱", 0.7),
    ("方", 0.6), ("徐", 0.6), ("詹", 0.5), ("余", 0.5), ("高", 0.5), ("胡", 0.5), ("施", 0.5),
    ("柯", 0.5), ("魏", 0.4), ("颜", 0.4), ("傅", 0.4), ("钟", 0.4), ("彭", 0.4), ("潘", 0.4),
    ("邓", 0.4), ("范", 0.3), ("康", 0.3), ("肖", 0.3), ("连", 0.3), ("温", 0.3), ("戴", 0.3),
    ("卓", 0.3), ("严", 0.2), ("宋", 0.2), ("姚", 0.2), ("孙", 0.2), ("马", 0.2), ("欧阳", 0.1),
    ("上官", 0.05), ("司马", 0.03),
]  # fmt: skip
_GIVEN_MALE = "伟强磊军勇杰涛斌超明辉华建国志平鹏俊文龙浩宇轩鑫彬峰锋坤荣昌振忠海波林东晨阳宏毅翔哲睿凯铭鸿泽宁"
_GIVEN_FEMALE = "芳娜敏静丽艳娟霞燕玲婷雪慧琳颖倩洁莉萍红梅兰秀英珍月凤琴晶欣怡雅蓉丹妍璐璇诗瑶涵萱"
_GIVEN_NEUTRAL = "子文思嘉一佳晓少春秋天心安清新明远欣雨"
_SINGLE_CHAR_NAME_SHARE = 0.15

_STREETS = [
    "人民路", "中山路", "解放路", "建设路", "和平路", "新华路", "胜利路", "光明路", "五一路",
    "八一七路", "滨江路", "湖滨路", "华林路", "东大路", "工业路", "学院路", "府前路", "南门路",
    "北环路", "东环路", "西环路", "环城路", "青年路", "文化路", "体育路", "健康路", "长乐路",
    "闽江路", "榕城路", "海滨路", "江滨路", "金山路", "银湖路", "丰泽街", "中华街", "县前街",
    "新街", "东街", "西街", "南街",
]  # fmt: skip
# China Mobile / Unicom / Telecom mobile prefixes in the 13x, 15x and 18x blocks.
_PHONE_PREFIXES = [*range(130, 140), *range(150, 154), *range(155, 160), *range(180, 190)]

_TRADE_FIRST = "恒鑫华兴永盛信达源隆泰宏丰瑞祥昌嘉天金福海闽榕新和联安顺凯博创致远耀明正德智宝益"
_TRADE_SECOND = "信源达兴泰发昌盛辉通宇鑫诚业丰晟阳峰辰翔利安恒茂汇邦航越程佳豪锐景润禾诺康美森川"
_SUFFIXES: _Weights = [("有限公司", 0.78), ("有限责任公司", 0.16), ("股份有限公司", 0.06)]

# GB/T 4754-2017 sections: rough share of registered enterprises, and words for their names.
_INDUSTRIES: list[tuple[str, float, str]] = [
    ("A", 0.030, "农业 林业 茶业 水产 生态农业 果蔬"),
    ("B", 0.003, "矿业 石材"),
    ("C", 0.120, "机械 电子 鞋业 纺织 食品 服装 新材料 陶瓷 工艺品 汽车配件"),
    ("D", 0.007, "电力 燃气 能源 水务"),
    ("E", 0.070, "建设工程 建筑 装饰工程 市政工程"),
    ("F", 0.300, "商贸 贸易 进出口贸易 百货 医药 建材"),
    ("G", 0.030, "物流 运输 供应链 仓储 货运代理"),
    ("H", 0.030, "餐饮管理 酒店管理 餐饮"),
    ("I", 0.080, "科技 信息技术 网络科技 软件 数据科技 智能科技"),
    ("J", 0.020, "投资 融资担保 资产管理"),
    ("K", 0.030, "房地产开发 物业管理 置业"),
    ("L", 0.130, "企业管理 商务咨询 广告 文化传媒 人力资源 会展服务"),
    ("M", 0.090, "检测技术 工程设计 生物科技 环保科技 技术服务"),
    ("N", 0.010, "环境工程 园林绿化 水利工程"),
    ("O", 0.030, "家政服务 汽车维修 保洁服务"),
    ("P", 0.010, "教育科技 培训 文化教育"),
    ("Q", 0.010, "健康管理 医疗科技 养老服务"),
    ("R", 0.025, "文化传播 体育发展 影视 文化旅游"),
    ("S", 0.0005, "社区服务"),
    ("T", 0.0, "国际合作"),
]
_STATUSES = ("存续", "注销", "吊销")

_ESTABLISHED_FROM = dt.date(1980, 1, 1)
_ESTABLISHED_TO = dt.date(2025, 6, 30)
_MA_CODES_FROM = dt.date(2015, 10, 1)  # after the reform, new bodies read "MA" + 6 characters
_ADULT_DAYS = 6575  # 18 years
_MAX_ENTERPRISES = 10**8  # organisation code bodies: 8 digits (old) / MA + 6 characters (new)
_EPOCH = dt.date(1970, 1, 1)


def _days(day: dt.date) -> int:
    return (day - _EPOCH).days


# --------------------------------------------------------------------------- geography


@dataclass(frozen=True)
class _Geography:
    county_codes: pa.StringArray
    county_names: pa.StringArray  # "福州市鼓楼区"
    city_codes: pa.StringArray  # parent city of each county
    city_short: pa.StringArray  # "福州"
    county_digits: _U8  # (counties, 6) ASCII
    person_weight: _F64
    business_weight: _F64


@functools.cache
def _geography() -> _Geography:
    text = resources.files("minyun.core").joinpath("data/divisions.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    cities = {r["code"]: r["name"] for r in rows if r["level"] == "city"}
    counties = sorted((r for r in rows if r["level"] == "county"), key=lambda r: r["code"])
    per_city = {c: sum(r["parent_code"] == c for r in counties) for c in cities}
    codes = [r["code"] for r in counties]
    parents = [r["parent_code"] for r in counties]
    person = np.array([_CITY_POPULATION[p] / per_city[p] for p in parents], dtype=np.float64)
    business = person * np.array([_CITY_BUSINESS.get(p, 1.0) for p in parents])
    return _Geography(
        county_codes=pa.array(codes, pa.string()),
        county_names=pa.array(
            [cities[p] + r["name"] for p, r in zip(parents, counties, strict=True)]
        ),
        city_codes=pa.array(parents, pa.string()),
        city_short=pa.array([cities[p].removesuffix("市") for p in parents]),
        county_digits=np.frombuffer("".join(codes).encode(), dtype=np.uint8).reshape(-1, 6),
        person_weight=person / person.sum(),
        business_weight=business / business.sum(),
    )


# --------------------------------------------------------------------------- keyed hashing


_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(x: _U64) -> _U64:
    """splitmix64's finaliser: a bijective avalanche of 64-bit words."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


# Independent random streams, one per attribute, so adding one never shifts the others.
(
    _S_SURNAME,
    _S_GIVEN_LEN,
    _S_GIVEN1,
    _S_GIVEN2,
    _S_PHONE_PREFIX,
    _S_PHONE,
    _S_STREET,
    _S_HOUSE,
    _S_E_COUNTY,
    _S_E_TRADE1,
    _S_E_TRADE2,
    _S_E_WORD,
    _S_E_SUFFIX,
    _S_E_INDUSTRY,
    _S_E_CAPITAL1,
    _S_E_CAPITAL2,
    _S_E_ESTABLISHED,
    _S_E_STATUS,
    _S_E_REP,
) = range(19)
_N_STREAMS = 19 + 16  # the legal-representative stream takes one slot per redraw


@dataclass(frozen=True)
class _Keys:
    salts: _U64
    person_rounds: _U64
    org_rounds: _U64
    seq_of_slot: _I64  # sequence number for each slot: odd, even, odd, ... in shuffled order


@functools.lru_cache(maxsize=8)
def _keys(seed: int) -> _Keys:
    rng = np.random.default_rng(seed)
    odd = rng.permutation(np.arange(1, 1000, 2))
    even = rng.permutation(np.arange(2, 1000, 2))
    seq = np.empty(999, dtype=np.int64)
    seq[0::2], seq[1::2] = odd, even  # balanced sexes for any number of slots in use
    return _Keys(
        salts=rng.integers(0, 2**64, size=_N_STREAMS, dtype=np.uint64),
        person_rounds=rng.integers(0, 2**64, size=6, dtype=np.uint64),
        org_rounds=rng.integers(0, 2**64, size=6, dtype=np.uint64),
        seq_of_slot=seq,
    )


def _bits(keys: _Keys, stream: int, idx: _U64) -> _U64:
    return _mix(idx * _GAMMA + keys.salts[stream])


def _unit(keys: _Keys, stream: int, idx: _U64) -> _F64:
    """Uniform floats in [0, 1) for each row index."""
    return (_bits(keys, stream, idx) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _below(keys: _Keys, stream: int, idx: _U64, n: int | _I64) -> _I64:
    """Uniform integers in [0, n) for each row index (n may vary per row)."""
    scaled: _I64 = (_unit(keys, stream, idx) * n).astype(np.int64)
    return np.minimum(scaled, np.asarray(n, dtype=np.int64) - 1)


def _pick(keys: _Keys, stream: int, idx: _U64, weights: _F64) -> _I64:
    """Index into weights for each row, drawn in proportion to the weights."""
    cum = np.cumsum(weights)
    found = np.searchsorted(cum, _unit(keys, stream, idx) * cum[-1], side="right")
    chosen: _I64 = np.minimum(found, len(weights) - 1).astype(np.int64)
    return chosen


def _feistel(x: _U64, half_bits: int, rounds: _U64) -> _U64:
    mask = np.uint64((1 << half_bits) - 1)
    left, right = x >> np.uint64(half_bits), x & mask
    for key in rounds:
        left, right = right, left ^ (_mix(right ^ key) & mask)
    return (left << np.uint64(half_bits)) | right


def _permute(x: _U64, size: int, rounds: _U64) -> _U64:
    """A keyed bijection of [0, size): Feistel on the next power of 4, cycle-walked into range."""
    half_bits = max(1, ((size - 1).bit_length() + 1) // 2)
    y = _feistel(x, half_bits, rounds)
    pending = np.flatnonzero(y >= size)
    while pending.size:  # expected under 4 rounds: the domain is less than 4x size
        y[pending] = _feistel(y[pending], half_bits, rounds)
        pending = pending[y[pending] >= size]
    return y


# --------------------------------------------------------------------------- identity numbers


@dataclass(frozen=True)
class _PersonSpace:
    """Key space of (county, birth year) cells; a cell holds days(year) x slots(cell) keys."""

    starts: _I64  # first key of each cell, cell = county * years + year offset
    days_in_year: _I64
    year_start: _I64  # days since 1970-01-01 of each 1 January
    size: int


@functools.cache
def _person_space() -> _PersonSpace:
    geo = _geography()
    years = np.arange(FIRST_BIRTH_YEAR, LAST_BIRTH_YEAR + 1)
    anchors = np.array(_AGE_PYRAMID, dtype=np.float64)
    by_year = np.interp(years, anchors[:, 0], anchors[:, 1])
    county = geo.person_weight / geo.person_weight.max()
    slots = np.maximum(1, np.floor(999 * np.outer(county, by_year / by_year.max()))).astype(
        np.int64
    )
    year_start = np.array([_days(dt.date(int(y), 1, 1)) for y in years], dtype=np.int64)
    days_in_year = np.diff(np.append(year_start, _days(dt.date(LAST_BIRTH_YEAR + 1, 1, 1))))
    sizes = (slots * days_in_year[None, :]).ravel()
    return _PersonSpace(
        starts=np.concatenate([[0], np.cumsum(sizes)[:-1]]),
        days_in_year=days_in_year,
        year_start=year_start,
        size=int(sizes.sum()),
    )


@dataclass(frozen=True)
class _Identity:
    county: _I64
    birth_days: _I64  # days since 1970-01-01
    seq: _I64
    ric: pa.StringArray


def _identities(keys: _Keys, idx: _U64) -> _Identity:
    """County, birth date, sequence and identity number of persons idx (unique per index)."""
    space = _person_space()
    if idx.size and int(idx.max()) >= space.size:
        raise ValueError(f"at most {space.size} distinct persons can be generated")
    key = _permute(idx, space.size, keys.person_rounds).astype(np.int64)
    cell = np.searchsorted(space.starts, key, side="right") - 1
    n_years = len(space.year_start)
    county, year = cell // n_years, cell % n_years
    offset = key - space.starts[cell]
    day, slot = offset % space.days_in_year[year], offset // space.days_in_year[year]
    birth_days = space.year_start[year] + day
    seq = keys.seq_of_slot[slot]
    matrix = np.empty((idx.size, 18), dtype=np.uint8)
    matrix[:, :6] = _geography().county_digits[county]
    matrix[:, 6:14] = _ascii_digits(_yyyymmdd(birth_days), 8)
    matrix[:, 14:17] = _ascii_digits(seq, 3)
    total = (matrix[:, :17].astype(np.int64) - 48) @ np.array(RIC_WEIGHTS, dtype=np.int64)
    matrix[:, 17] = np.frombuffer(b"10X98765432", dtype=np.uint8)[total % 11]
    return _Identity(county, birth_days, seq, _fixed_width_strings(matrix))


def _yyyymmdd(days: _I64) -> _I64:
    date = days.astype("datetime64[D]")
    year = date.astype("datetime64[Y]").astype(np.int64) + 1970
    month_start = date.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day = (date - month_start).astype(np.int64) + 1
    return np.asarray((year * 100 + month) * 100 + day, dtype=np.int64)


def _ascii_digits(values: _I64, width: int) -> _U8:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + 48).astype(np.uint8)


def _fixed_width_strings(matrix: _U8) -> pa.StringArray:
    rows, width = matrix.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix).tobytes()
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data))


def _take(values: Iterable[str], indices: _I64) -> pa.StringArray:
    return pa.array(list(values), pa.string()).take(pa.array(indices))


def _join(*parts: pa.Array | str) -> pa.StringArray:
    return pc.binary_join_element_wise(*parts, "")


def _weights(table: _Weights) -> tuple[list[str], _F64]:
    return [k for k, _ in table], np.array([w for _, w in table], dtype=np.float64)


# --------------------------------------------------------------------------- persons


def _person_batch(keys: _Keys, idx: _U64) -> pa.RecordBatch:
    geo = _geography()
    who = _identities(keys, idx)
    male = who.seq % 2 == 1
    surnames, surname_w = _weights(_SURNAMES)
    male_chars, female_chars = _GIVEN_MALE + _GIVEN_NEUTRAL, _GIVEN_FEMALE + _GIVEN_NEUTRAL
    # One table: male first chars, female first chars, then "" for single-character names.
    first = list(male_chars) + list(female_chars)
    g1 = np.where(
        male,
        _below(keys, _S_GIVEN1, idx, len(male_chars)),
        len(male_chars) + _below(keys, _S_GIVEN1, idx, len(female_chars)),
    )
    second = list(_GIVEN_MALE) + list(_GIVEN_FEMALE) + [""]
    g2 = np.where(
        male,
        _below(keys, _S_GIVEN2, idx, len(_GIVEN_MALE)),
        len(_GIVEN_MALE) + _below(keys, _S_GIVEN2, idx, len(_GIVEN_FEMALE)),
    )
    g2[_unit(keys, _S_GIVEN_LEN, idx) < _SINGLE_CHAR_NAME_SHARE] = len(second) - 1
    name = _join(
        _take(surnames, _pick(keys, _S_SURNAME, idx, surname_w)),
        _take(first, g1),
        _take(second, g2),
    )
    prefix = np.array(_PHONE_PREFIXES, dtype=np.int64)[
        _below(keys, _S_PHONE_PREFIX, idx, len(_PHONE_PREFIXES))
    ]
    phone = pc.cast(pa.array(prefix * 10**8 + _below(keys, _S_PHONE, idx, 10**8)), pa.string())
    # House numbers: mostly small, a long tail up to 999.
    house = 1 + (998 * _unit(keys, _S_HOUSE, idx) ** 2.5).astype(np.int64)
    county = pa.array(who.county)
    address = _join(
        geo.county_names.take(county),
        _take(_STREETS, _below(keys, _S_STREET, idx, len(_STREETS))),
        pc.cast(pa.array(house), pa.string()),
        "号",
    )
    return pa.RecordBatch.from_arrays(
        [
            pa.array(idx.astype(np.int64) + 1),
            who.ric,
            name,
            pa.array(np.where(male, "M", "F"), pa.string()),
            pa.array(who.birth_days.astype("datetime64[D]")),
            geo.county_codes.take(county),
            geo.city_codes.take(county),
            phone,
            address,
        ],
        schema=PERSON_SCHEMA,
    )


def _batches(n: int, batch_size: int, start: int, limit: int) -> Iterator[_U64]:
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n > limit:
        raise ValueError(f"at most {limit} distinct rows can be generated, asked for {n}")
    for first in range(start, n, batch_size):
        yield np.arange(first, min(n, first + batch_size), dtype=np.uint64)


def iter_persons(
    n: int, *, seed: int = 2026, batch_size: int = 100_000, start: int = 0
) -> Iterator[pa.RecordBatch]:
    """Persons start..n-1 in PERSON_SCHEMA batches: valid unique identity numbers, seed-determined.

    Row i is the same whatever n, start and batch_size are, so a resumed stream can skip
    straight to its first missing row.
    """
    keys = _keys(seed)
    for idx in _batches(n, batch_size, start, _person_space().size):
        yield _person_batch(keys, idx)


def persons_at(indices: npt.ArrayLike, *, seed: int = 2026) -> pa.RecordBatch:
    """The rows iter_persons(seed=seed) yields at the given 0-based indices, in that order."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and int(idx.min()) < 0:
        raise ValueError("person indices must be >= 0")
    return _person_batch(_keys(seed), idx.astype(np.uint64).reshape(-1))


# --------------------------------------------------------------------------- enterprises


def _legal_reps(keys: _Keys, idx: _U64, n_persons: int) -> _Identity:
    """A person for each enterprise, redrawn (up to 16 times) until they are 18 by the end date."""
    latest_birth = _days(_ESTABLISHED_TO) - _ADULT_DAYS - 30
    chosen = np.zeros(idx.size, dtype=np.int64)
    pending = np.arange(idx.size)
    for attempt in range(16):
        draw = _below(keys, _S_E_REP + attempt, idx[pending], n_persons)
        chosen[pending] = draw
        births = _identities(keys, draw.astype(np.uint64)).birth_days
        pending = pending[births > latest_birth]
        if not pending.size:
            break
    return _identities(keys, chosen.astype(np.uint64))


def _byte_values(chars: str) -> _I64:
    """Lookup table byte -> position in chars (-1 elsewhere)."""
    table = np.full(256, -1, dtype=np.int64)
    table[np.frombuffer(chars.encode(), dtype=np.uint8)] = np.arange(len(chars))
    return table


_USCC_BYTES = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
_USCC_VALUE = _byte_values(USCC_ALPHABET)
_ORG_VALUE = _byte_values("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # GB 11714: A..Z = 10..35


def _uscc_strings(county_digits: _U8, bodies: _U8) -> pa.StringArray:
    """Credit codes '9' '1' + region + body + GB 11714 check + GB 32100 check, built at once."""
    rows = bodies.shape[0]
    matrix = np.empty((rows, 18), dtype=np.uint8)
    matrix[:, 0], matrix[:, 1] = ord("9"), ord("1")
    matrix[:, 2:8] = county_digits
    matrix[:, 8:16] = bodies
    org_total = _ORG_VALUE[bodies] @ np.array(ORG_WEIGHTS, dtype=np.int64)
    matrix[:, 16] = np.frombuffer(b"0X987654321", dtype=np.uint8)[org_total % 11]
    total = _USCC_VALUE[matrix[:, :17]] @ np.array(USCC_WEIGHTS, dtype=np.int64)
    matrix[:, 17] = _USCC_BYTES[(31 - total % 31) % 31]
    return _fixed_width_strings(matrix)


def _org_bodies(keys: _Keys, idx: _U64, new_style: npt.NDArray[np.bool_]) -> _U8:
    """Unique 8-character organisation code bodies: digits before the reform, MA+6 after."""
    number = _permute(idx, _MAX_ENTERPRISES, keys.org_rounds).astype(np.int64)
    bodies = _ascii_digits(number, 8)
    powers = 31 ** np.arange(5, -1, -1, dtype=np.int64)
    ma = np.empty_like(bodies)
    ma[:, 0], ma[:, 1] = ord("M"), ord("A")
    ma[:, 2:] = _USCC_BYTES[(number[:, None] // powers) % 31]
    return np.where(new_style[:, None], ma, bodies)


def _enterprise_batch(keys: _Keys, idx: _U64, n_persons: int) -> pa.RecordBatch:
    geo = _geography()
    county = _pick(keys, _S_E_COUNTY, idx, geo.business_weight)
    rep = _legal_reps(keys, idx, n_persons)
    # Established after the representative turns 18, skewed to recent years as registrations grew.
    lo = np.maximum(_days(_ESTABLISHED_FROM), rep.birth_days + _ADULT_DAYS)
    hi = _days(_ESTABLISHED_TO)
    lo = np.minimum(lo, hi)
    age_share = _unit(keys, _S_E_ESTABLISHED, idx) ** 2
    established = hi - np.floor((hi - lo) * age_share).astype(np.int64)
    new_style = established >= _days(_MA_CODES_FROM)
    uscc = _uscc_strings(geo.county_digits[county], _org_bodies(keys, idx, new_style))

    letters = [s for s, _, _ in _INDUSTRIES]
    industry = _pick(keys, _S_E_INDUSTRY, idx, np.array([w for _, w, _ in _INDUSTRIES]))
    words_per = [w.split() for _, _, w in _INDUSTRIES]
    word_start = np.cumsum([0] + [len(w) for w in words_per[:-1]])
    word_count = np.array([len(w) for w in words_per], dtype=np.int64)
    word = word_start[industry] + _below(keys, _S_E_WORD, idx, word_count[industry])
    suffixes, suffix_w = _weights(_SUFFIXES)
    county_arr = pa.array(county)
    name = _join(
        geo.city_short.take(county_arr),
        _take(_TRADE_FIRST, _below(keys, _S_E_TRADE1, idx, len(_TRADE_FIRST))),
        _take(_TRADE_SECOND, _below(keys, _S_E_TRADE2, idx, len(_TRADE_SECOND))),
        _take([w for ws in words_per for w in ws], word),
        _take(suffixes, _pick(keys, _S_E_SUFFIX, idx, suffix_w)),
    )
    # Registered capital: log-normal around 1 million yuan, whole ten-thousands (万元).
    u1 = np.maximum(_unit(keys, _S_E_CAPITAL1, idx), 2.0**-53)
    z = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * _unit(keys, _S_E_CAPITAL2, idx))
    capital = np.maximum(1, np.round(np.exp(np.log(100) + 1.3 * z))).astype(np.int64) * 10_000
    # Older enterprises are more often deregistered (注销) or struck off (吊销).
    age = (hi - established) / (hi - _days(_ESTABLISHED_FROM))
    u = _unit(keys, _S_E_STATUS, idx)
    gone = u < 0.06 + 0.55 * age
    status = np.where(gone, np.where(u < (0.06 + 0.55 * age) * 0.25, 2, 1), 0)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(idx.astype(np.int64) + 1),
            uscc,
            name,
            rep.ric,
            pa.array(capital),
            pa.array(established.astype("datetime64[D]")),
            _take(letters, industry),
            geo.county_codes.take(county_arr),
            geo.city_codes.take(county_arr),
            _take(_STATUSES, status),
        ],
        schema=ENTERPRISE_SCHEMA,
    )


def iter_enterprises(
    n: int, *, n_persons: int, seed: int = 2026, batch_size: int = 100_000, start: int = 0
) -> Iterator[pa.RecordBatch]:
    """Enterprises start..n-1 in ENTERPRISE_SCHEMA batches; legal reps among the first n_persons.

    Each legal representative is a row of iter_persons(n_persons, seed=seed), redrawn up to
    16 times to be 18 when the enterprise was established; rows do not depend on start or
    batch_size.
    """
    if not 1 <= n_persons <= _person_space().size:
        raise ValueError(f"n_persons must be 1..{_person_space().size}, got {n_persons}")
    keys = _keys(seed)
    for idx in _batches(n, batch_size, start, _MAX_ENTERPRISES):
        yield _enterprise_batch(keys, idx, n_persons)


# --------------------------------------------------------------------------- output


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    path: str | Path,
    *,
    progress: Callable[[int], None] | None = None,
    schema: pa.Schema | None = None,
) -> int:
    """Stream batches into one zstd Parquet file; progress gets the running row count; rows back."""
    iterator = iter(batches)
    first = next(iterator, None)
    if schema is None:
        if first is None:
            raise ValueError("no batches to write and no schema given")
        schema = first.schema
    rows = iterator if first is None else itertools.chain([first], iterator)
    written = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
        for batch in rows:
            writer.write_batch(batch)
            written += batch.num_rows
            if progress is not None:
                progress(written)
    return written
