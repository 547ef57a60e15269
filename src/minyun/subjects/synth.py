"""A synthetic population spread over department sources, with planted hard noise and known truth.

The persons come from `minyun.demo.population` (valid, unique identity numbers). Each
source (one department's resource) holds some of them, each row with its own noise, drawn
from a seeded generator with whole-array operations:

- names: a homophone character (伟 → 玮) or a typo in the last character;
- identity numbers: a wrong check digit, two sequence digits transposed, or missing;
- birth dates: day and month swapped, or missing;
- phones and addresses: changed (the person moved or took a new number), or missing;
- duplicates within a source (the same person twice, each copy with its own noise);
- one source (civil affairs) carries no identity number at all.

`person_sources` returns the sources as Arrow tables (primary key `id`) and the truth: one
row per source row with the person it is about.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from minyun.core.identifiers import RIC_WEIGHTS
from minyun.demo.population import iter_enterprises, iter_persons

__all__ = [
    "ENTERPRISE_SOURCES",
    "HOMOPHONES",
    "SOURCES",
    "TRADE_HOMOPHONES",
    "EnterpriseNoise",
    "EnterpriseSource",
    "Noise",
    "Source",
    "enterprise_schema",
    "enterprise_sources",
    "person_schema",
    "person_sources",
]

# Given-name characters and a homophone of each (same toneless pinyin).
HOMOPHONES: dict[str, str] = {
    pair[0]: pair[1]
    for pair in (
        "伟玮",
        "强蔷",
        "磊垒",
        "军君",
        "勇永",
        "杰洁",
        "涛韬",
        "斌彬",
        "超潮",
        "明鸣",
        "辉晖",
        "华桦",
        "建健",
        "国帼",
        "志智",
        "平萍",
        "鹏朋",
        "俊峻",
        "文雯",
        "龙隆",
        "浩皓",
        "宇雨",
        "轩萱",
        "鑫欣",
        "峰锋",
        "坤昆",
        "荣蓉",
        "振震",
        "忠中",
        "林琳",
        "东冬",
        "晨辰",
        "阳洋",
        "宏鸿",
        "毅逸",
        "翔祥",
        "哲喆",
        "睿瑞",
        "凯恺",
        "铭明",
        "宁柠",
        "芳方",
        "娜纳",
        "敏闽",
        "静靖",
        "丽莉",
        "艳燕",
        "娟鹃",
        "霞夏",
        "玲铃",
        "婷亭",
        "慧惠",
        "琳林",
        "颖莹",
        "倩茜",
        "洁杰",
        "莉丽",
        "萍平",
        "红虹",
        "梅玫",
        "兰岚",
        "英瑛",
        "珍贞",
        "月悦",
        "琴勤",
        "晶菁",
        "欣鑫",
        "怡仪",
        "雅亚",
        "蓉荣",
        "璐露",
        "璇萱",
        "瑶遥",
        "涵寒",
        "萱轩",
        "佳嘉",
        "思斯",
    )
}
# A typo: the last character replaced by an unrelated one (different sound).
_TYPO_CHARS = "国民安福春秋德才玉金"
_RIC_CHECK = "10X98765432"


@dataclass(frozen=True)
class Noise:
    """Probabilities of each planted error in one source's rows."""

    homophone: float = 0.0
    typo: float = 0.0
    ric_check: float = 0.0
    ric_swap: float = 0.0
    ric_missing: float = 0.0
    date_swap: float = 0.0
    date_missing: float = 0.0
    phone_changed: float = 0.0
    phone_missing: float = 0.0
    moved: float = 0.0
    address_missing: float = 0.0
    duplicates: float = 0.0


@dataclass(frozen=True)
class Source:
    """One department's person resource: which persons it holds, which fields, what noise."""

    code: str
    title: str
    department: str  # the providing organisation's name
    coverage: float  # share of the population it holds
    fields: tuple[str, ...]  # of ric, name, sex, birth_date, phone, address
    noise: Noise


SOURCES = (
    Source(
        "gat_hjrk", "户籍人口信息", "省公安厅", 1.0,
        ("ric", "name", "sex", "birth_date", "address"),
        Noise(homophone=0.01, ric_check=0.005, date_swap=0.005, address_missing=0.01),
    ),
    Source(
        "rst_sbcb", "社会保险参保信息", "省人力资源和社会保障厅", 0.5,
        ("ric", "name", "sex", "birth_date", "phone"),
        Noise(homophone=0.03, typo=0.01, ric_check=0.02, ric_swap=0.02, date_swap=0.02,
              phone_changed=0.1, duplicates=0.03),
    ),
    Source(
        "wjw_jmjk", "居民健康档案", "省卫生健康委员会", 0.35,
        ("ric", "name", "sex", "birth_date", "phone", "address"),
        Noise(homophone=0.03, typo=0.01, ric_missing=0.1, ric_swap=0.01, date_swap=0.03,
              date_missing=0.02, phone_changed=0.15, moved=0.1, duplicates=0.02),
    ),
    Source(
        "mzt_shjz", "社会救助对象信息", "省民政厅", 0.2,
        ("name", "sex", "birth_date", "phone", "address"),
        Noise(homophone=0.03, typo=0.01, date_swap=0.02, phone_changed=0.05, moved=0.05,
              phone_missing=0.05, duplicates=0.02),
    ),
    Source(
        "zjt_gjj", "住房公积金缴存信息", "省住房和城乡建设厅", 0.15,
        ("ric", "name", "birth_date", "phone", "address"),
        Noise(homophone=0.02, ric_check=0.02, ric_swap=0.01, phone_changed=0.1, moved=0.2,
              date_missing=0.05),
    ),
)  # fmt: skip

_TYPES = {
    "id": pa.string(),
    "ric": pa.string(),
    "name": pa.string(),
    "sex": pa.string(),
    "birth_date": pa.date32(),
    "phone": pa.string(),
    "address": pa.string(),
}
_LINKS = {
    "ric": "person.ric",
    "name": "person.name",
    "sex": "person.sex",
    "birth_date": "person.birth_date",
    "phone": "person.phone",
    "address": "person.address",
}
_SENSITIVE = {"ric": "keep(6,4)", "phone": "keep(3,4)", "address": "address(county)"}


def person_schema(source: Source) -> dict[str, object]:
    """The Table Schema descriptor of a source, its fields marked with the minyun key `link`."""
    fields: list[dict[str, object]] = [
        {"name": "id", "type": "string", "title": "记录号", "constraints": {"required": True}}
    ]
    for name in source.fields:
        f: dict[str, object] = {"name": name, "type": "date" if name == "birth_date" else "string"}
        f["link"] = _LINKS[name]
        if name in _SENSITIVE:
            f["sensitivity"] = "sensitive"
            f["mask"] = _SENSITIVE[name]
        fields.append(f)
    return {"fields": fields, "primaryKey": ["id"]}


def person_sources(
    n: int, *, seed: int = 7, sources: tuple[Source, ...] = SOURCES
) -> tuple[dict[str, pa.Table], pa.Table]:
    """The sources' tables by code, and the truth (resource, row_key, person_id)."""
    people = pa.Table.from_batches(list(iter_persons(n, seed=seed, batch_size=max(n, 1))))
    rng = np.random.default_rng(seed)
    tables: dict[str, pa.Table] = {}
    truth: list[pa.Table] = []
    for source in sources:
        table, who = _source_rows(people, source, rng)
        tables[source.code] = table
        truth.append(
            pa.table(
                {
                    "resource": pa.array([source.code] * table.num_rows, pa.string()),
                    "row_key": table["id"],
                    "person_id": pa.array(who, pa.int64()),
                }
            )
        )
    return tables, pa.concat_tables(truth)


def _draw(
    table: pa.Table, code: str, coverage: float, duplicates: float, rng: np.random.Generator
) -> tuple[pa.Table, npt.NDArray[np.int64], Callable[[float], npt.NDArray[np.bool_]], pa.Array]:
    """A source's rows of `table`: each held with `coverage`, some twice, shuffled; a draw of
    the rows' noise (`hit(p)`: which rows a fault of probability p strikes); the row ids."""
    held = np.flatnonzero(rng.random(table.num_rows) < coverage)
    dups = held[rng.random(held.size) < duplicates]
    rows = np.concatenate([held, dups])
    rng.shuffle(rows)
    m = rows.size

    def hit(p: float) -> npt.NDArray[np.bool_]:
        return rng.random(m) < p

    ids = pc.binary_join_element_wise(
        pa.array([code.upper()] * m, pa.string()),
        pc.cast(pa.array(np.arange(1, m + 1)), pa.string()),
        "-",
    )
    return table.take(pa.array(rows)), rows, hit, ids


def _source_rows(
    people: pa.Table, source: Source, rng: np.random.Generator
) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    picked, rows, hit, ids = _draw(
        people, source.code, source.coverage, source.noise.duplicates, rng
    )
    m = rows.size
    noise = source.noise
    columns: dict[str, pa.Array] = {"id": ids}
    if "ric" in source.fields:
        ric = picked["ric"].combine_chunks()
        ric = _wrong_check(ric, hit(noise.ric_check))
        ric = _transpose(ric, hit(noise.ric_swap))
        columns["ric"] = _null_where(ric, hit(noise.ric_missing))
    if "name" in source.fields:
        name = picked["name"].combine_chunks()
        name = _replace_last(name, hit(noise.homophone), HOMOPHONES)
        typo = {c: _TYPO_CHARS[i % len(_TYPO_CHARS)] for i, c in enumerate(sorted(HOMOPHONES))}
        columns["name"] = _replace_last(name, hit(noise.typo), typo)
    if "sex" in source.fields:
        columns["sex"] = picked["sex"].combine_chunks()
    if "birth_date" in source.fields:
        born = picked["birth_date"].combine_chunks()
        born = _swap_day_month(born, hit(noise.date_swap))
        columns["birth_date"] = _null_where(born, hit(noise.date_missing))
    if "phone" in source.fields:
        phone = picked["phone"].combine_chunks()
        fresh = pc.cast(pa.array(rng.integers(13_000_000_000, 13_999_999_999, m)), pa.string())
        phone = pc.if_else(pa.array(hit(noise.phone_changed)), fresh, phone)
        columns["phone"] = _null_where(phone, hit(noise.phone_missing))
    if "address" in source.fields:
        address = picked["address"].combine_chunks()
        elsewhere = (
            people["address"].take(pa.array(rng.integers(0, people.num_rows, m))).combine_chunks()
        )
        address = pc.if_else(pa.array(hit(noise.moved)), elsewhere, address)
        columns["address"] = _null_where(address, hit(noise.address_missing))
    schema = pa.schema([pa.field(k, _TYPES[k]) for k in columns])
    table = pa.table(columns, schema=schema)
    return table, picked["person_id"].to_numpy()


def _null_where(values: pa.Array, mask: npt.NDArray[np.bool_]) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.nulls(len(values), values.type), values)


def _replace_last(
    names: pa.Array, mask: npt.NDArray[np.bool_], mapping: dict[str, str]
) -> pa.Array:
    """The names with their last character mapped through `mapping` where `mask` (if mapped)."""
    head = pc.utf8_slice_codeunits(names, 0, -1)
    last = pc.utf8_slice_codeunits(names, -1)
    keys = pa.array(list(mapping), pa.string())
    swapped = pc.take(pa.array(list(mapping.values()), pa.string()), pc.index_in(last, keys))
    use = pc.and_(pa.array(mask), pc.is_valid(swapped))
    return pc.if_else(use, pc.binary_join_element_wise(head, swapped, ""), names)


def _wrong_check(ric: pa.Array, mask: npt.NDArray[np.bool_]) -> pa.Array:
    """A check character that is not the right one (the next one in the table)."""
    first17 = pc.utf8_slice_codeunits(ric, 0, 17)
    check = pc.utf8_slice_codeunits(ric, 17, 18)
    alphabet = pa.array(list(_RIC_CHECK), pa.string())
    shifted = pa.array(list(_RIC_CHECK[1:] + _RIC_CHECK[0]), pa.string())
    wrong = pc.take(shifted, pc.index_in(check, alphabet))
    return pc.if_else(pa.array(mask), pc.binary_join_element_wise(first17, wrong, ""), ric)


def _transpose(ric: pa.Array, mask: npt.NDArray[np.bool_]) -> pa.Array:
    """Sequence digits 15 and 16 swapped (a typist's transposition) where they differ."""
    a = pc.utf8_slice_codeunits(ric, 14, 15)
    b = pc.utf8_slice_codeunits(ric, 15, 16)
    swapped = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(ric, 0, 14), b, a, pc.utf8_slice_codeunits(ric, 16, 18), ""
    )
    use = pc.and_(pa.array(mask), pc.not_equal(a, b))
    return pc.if_else(use, swapped, ric)


def _swap_day_month(born: pa.Array, mask: npt.NDArray[np.bool_]) -> pa.Array:
    """Day and month exchanged where the day can be a month and differs from it."""
    days = born.to_numpy(zero_copy_only=False).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    months = (days.astype("datetime64[M]") - years).astype(np.int64) + 1
    day = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    ok = mask & (day <= 12) & (day != months)
    month_start = years + (day - 1).astype("timedelta64[M]")
    swapped = month_start.astype("datetime64[D]") + (months - 1).astype("timedelta64[D]")
    return pa.array(np.where(ok, swapped, days), pa.date32())


def check_digit_ok(ric: str) -> bool:
    """Whether an 18-character identity number's check character is right (for tests)."""
    total = sum(int(c) * w for c, w in zip(ric[:17], RIC_WEIGHTS, strict=True))
    return _RIC_CHECK[total % 11] == ric[17]


# --------------------------------------------------------------------------- enterprises

# Trade-name characters (the second of the two) and a homophone of each (same toneless pinyin).
TRADE_HOMOPHONES: dict[str, str] = {
    pair[0]: pair[1]
    for pair in (
        "信鑫", "源元", "达答", "兴星", "泰太", "发法", "昌常", "盛胜", "辉晖", "通同", "宇雨",
        "鑫欣", "诚成", "业叶", "丰峰", "晟诚", "阳洋", "峰锋", "辰晨", "翔祥", "利力", "安岸",
        "恒衡", "茂贸", "汇惠", "邦帮", "航杭", "越悦", "程成", "佳嘉", "豪浩", "锐瑞", "景井",
        "润闰", "禾和", "美梅", "川传",
    )
}  # fmt: skip
_TRADE_TYPOS = "甲乙丙丁戊己庚辛壬癸"  # unrelated characters (a different sound)
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# A name as city (two characters), trade name and industry, and company form.
_FORM_PATTERN = r"^(..)(.*?)((?:股份)?有限(?:责任)?公司|股份公司)$"
_ENTERPRISE_STREETS = (
    "工业路", "科技路", "创业路", "高新大道", "金山大道", "湖东路", "软件大道", "江滨大道",
    "海沧大道", "杏林湾路", "东海大街", "南环路", "经济开发区一路", "物流园路", "港口路",
)  # fmt: skip


@dataclass(frozen=True)
class EnterpriseNoise:
    """Probabilities of each planted error in one enterprise source's rows."""

    suffix: float = 0.0  # 有限责任公司 ↔ 有限公司, 股份有限公司 → 股份公司
    city: float = 0.0  # the city prefix dropped, or moved into brackets: 恒晟餐饮（福州）有限公司
    homophone: float = 0.0  # a trade-name character replaced by one that sounds the same
    typo: float = 0.0  # a trade-name character replaced by an unrelated one
    uscc_check: float = 0.0  # a wrong GB 32100 check character
    uscc_swap: float = 0.0  # two characters of the organisation code transposed
    uscc_missing: float = 0.0
    moved: float = 0.0  # registered at another address (another county)
    address_short: float = 0.0  # the address without its city (鼓楼区工业路8号)
    address_missing: float = 0.0
    legal_changed: float = 0.0  # a new legal representative
    legal_check: float = 0.0  # the representative's identity number with a wrong check digit
    legal_missing: float = 0.0
    duplicates: float = 0.0


@dataclass(frozen=True)
class EnterpriseSource:
    """One department's enterprise resource: which enterprises it holds, which fields, noise."""

    code: str
    title: str
    department: str
    coverage: float
    fields: tuple[str, ...]  # of uscc, name, address, legal_person_ric
    noise: EnterpriseNoise


ENTERPRISE_SOURCES = (
    EnterpriseSource(
        "scjg_qydj", "企业登记信息", "省市场监督管理局", 1.0,
        ("uscc", "name", "address", "legal_person_ric"),
        EnterpriseNoise(homophone=0.005, uscc_check=0.002, address_short=0.05),
    ),
    EnterpriseSource(
        "sw_nsrdj", "纳税人登记信息", "省税务局", 0.6,
        ("uscc", "name", "address", "legal_person_ric"),
        EnterpriseNoise(suffix=0.15, city=0.1, homophone=0.03, typo=0.01, uscc_check=0.02,
                        uscc_swap=0.02, moved=0.08, address_short=0.2, legal_changed=0.05,
                        legal_check=0.02, duplicates=0.03),
    ),
    EnterpriseSource(
        "rst_dwcb", "单位参保登记信息", "省人力资源和社会保障厅", 0.45,
        ("uscc", "name", "address"),
        EnterpriseNoise(suffix=0.2, city=0.2, homophone=0.03, typo=0.01, uscc_check=0.03,
                        uscc_swap=0.02, uscc_missing=0.05, moved=0.1, address_short=0.3,
                        address_missing=0.05, duplicates=0.02),
    ),
    EnterpriseSource(
        "hg_jckqy", "进出口货物收发货人备案信息", "福州海关", 0.15,
        ("uscc", "name", "address", "legal_person_ric"),
        EnterpriseNoise(suffix=0.1, city=0.3, homophone=0.02, uscc_check=0.01, uscc_swap=0.01,
                        moved=0.05, legal_changed=0.1, legal_missing=0.05),
    ),
    EnterpriseSource(
        "sthj_pwxk", "排污许可登记信息", "省生态环境厅", 0.2,
        ("name", "address", "legal_person_ric"),
        EnterpriseNoise(suffix=0.2, city=0.2, homophone=0.03, typo=0.01, moved=0.03,
                        address_short=0.3, legal_changed=0.03, legal_check=0.02,
                        legal_missing=0.03, duplicates=0.02),
    ),
)  # fmt: skip

_ENTERPRISE_LINKS = {
    "uscc": "enterprise.uscc",
    "name": "enterprise.name",
    "address": "enterprise.address",
    "legal_person_ric": "enterprise.legal_person_ric",
}


def enterprise_schema(source: EnterpriseSource) -> dict[str, object]:
    """The Table Schema descriptor of an enterprise source, its fields marked with `link`."""
    fields: list[dict[str, object]] = [
        {"name": "id", "type": "string", "title": "记录号", "constraints": {"required": True}}
    ]
    for name in source.fields:
        f: dict[str, object] = {"name": name, "type": "string", "link": _ENTERPRISE_LINKS[name]}
        if name == "legal_person_ric":
            f["sensitivity"] = "sensitive"
            f["mask"] = "keep(6,4)"
        fields.append(f)
    return {"fields": fields, "primaryKey": ["id"]}


def enterprise_sources(
    n: int, *, seed: int = 7, sources: tuple[EnterpriseSource, ...] = ENTERPRISE_SOURCES
) -> tuple[dict[str, pa.Table], pa.Table]:
    """The enterprise sources' tables by code, and the truth (resource, row_key, enterprise_id).

    The enterprises come from `minyun.demo.population.iter_enterprises` (valid, unique credit
    codes; legal representatives among 5n persons, so some represent several enterprises);
    each gets a registered address in its county.
    """
    firms = pa.Table.from_batches(
        list(iter_enterprises(n, n_persons=max(5 * n, 10), seed=seed, batch_size=max(n, 1)))
    )
    rng = np.random.default_rng(seed)
    firms = firms.append_column("address", _enterprise_addresses(firms["county_code"], rng))
    reps = pa.Table.from_batches(list(iter_persons(max(5 * n, 10), seed=seed + 1)))["ric"]
    tables: dict[str, pa.Table] = {}
    truth: list[pa.Table] = []
    for source in sources:
        table, who = _enterprise_rows(firms, reps.combine_chunks(), source, rng)
        tables[source.code] = table
        truth.append(
            pa.table(
                {
                    "resource": pa.array([source.code] * table.num_rows, pa.string()),
                    "row_key": table["id"],
                    "enterprise_id": pa.array(who, pa.int64()),
                }
            )
        )
    return tables, pa.concat_tables(truth)


@functools.cache
def _county_names() -> dict[str, str]:
    """County code → full name with its city (350102 → 福州市鼓楼区)."""
    text = resources.files("minyun.core").joinpath("data/divisions.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    names = {r["code"]: r["name"] for r in rows}
    return {
        r["code"]: names.get(r["parent_code"], "") + r["name"]
        for r in rows
        if r["level"] == "county"
    }


def _enterprise_addresses(county: pa.ChunkedArray, rng: np.random.Generator) -> pa.Array:
    m = len(county)
    names = _county_names()
    codes = pa.array(list(names), pa.string())
    full = pc.take(pa.array(list(names.values()), pa.string()), pc.index_in(county, codes))
    street = pa.array(np.asarray(_ENTERPRISE_STREETS, dtype=object)[
        rng.integers(0, len(_ENTERPRISE_STREETS), m)], pa.string())  # fmt: skip
    number = pc.cast(pa.array(1 + (400 * rng.random(m) ** 2).astype(np.int64)), pa.string())
    return pc.binary_join_element_wise(full, street, number, "号", "")


def _enterprise_rows(
    firms: pa.Table, reps: pa.Array, source: EnterpriseSource, rng: np.random.Generator
) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    picked, rows, hit, ids = _draw(
        firms, source.code, source.coverage, source.noise.duplicates, rng
    )
    m = rows.size
    noise = source.noise
    columns: dict[str, pa.Array] = {"id": ids}
    if "uscc" in source.fields:
        uscc = picked["uscc"].combine_chunks()
        uscc = _wrong_uscc_check(uscc, hit(noise.uscc_check))
        uscc = _swap_at(uscc, hit(noise.uscc_swap), 10)
        columns["uscc"] = _null_where(uscc, hit(noise.uscc_missing))
    if "name" in source.fields:
        name = picked["name"].combine_chunks()
        name = _suffix_variant(name, hit(noise.suffix))
        name = _replace_at(name, hit(noise.homophone), 3, TRADE_HOMOPHONES)
        typo = {c: _TRADE_TYPOS[i % len(_TRADE_TYPOS)] for i, c in enumerate(TRADE_HOMOPHONES)}
        name = _replace_at(name, hit(noise.typo), 3, typo)
        columns["name"] = _city_variant(name, hit(noise.city), rng)
    if "address" in source.fields:
        address = picked["address"].combine_chunks()
        elsewhere = (
            firms["address"].take(pa.array(rng.integers(0, firms.num_rows, m))).combine_chunks()
        )
        address = pc.if_else(pa.array(hit(noise.moved)), elsewhere, address)
        short = pc.replace_substring_regex(address, r"^[^市]+市", "", max_replacements=1)
        address = pc.if_else(pa.array(hit(noise.address_short)), short, address)
        columns["address"] = _null_where(address, hit(noise.address_missing))
    if "legal_person_ric" in source.fields:
        legal = picked["legal_rep_ric"].combine_chunks()
        other = reps.take(pa.array(rng.integers(0, len(reps), m)))
        legal = pc.if_else(pa.array(hit(noise.legal_changed)), other, legal)
        legal = _wrong_check(legal, hit(noise.legal_check))
        columns["legal_person_ric"] = _null_where(legal, hit(noise.legal_missing))
    table = pa.table(columns, schema=pa.schema([pa.field(k, pa.string()) for k in columns]))
    return table, picked["enterprise_id"].to_numpy()


def _suffix_variant(names: pa.Array, mask: npt.NDArray[np.bool_]) -> pa.Array:
    """有限责任公司 ↔ 有限公司 and 股份有限公司 → 股份公司, where `mask`."""
    limited = pc.ends_with(names, "有限公司")
    joint = pc.ends_with(names, "股份有限公司")
    llc = pc.ends_with(names, "有限责任公司")
    variant = pc.if_else(
        joint,
        pc.replace_substring(names, "股份有限公司", "股份公司"),
        pc.if_else(
            llc,
            pc.replace_substring(names, "有限责任公司", "有限公司"),
            pc.if_else(limited, pc.replace_substring(names, "有限公司", "有限责任公司"), names),
        ),
    )
    return pc.if_else(pa.array(mask), variant, names)


def _city_variant(
    names: pa.Array, mask: npt.NDArray[np.bool_], rng: np.random.Generator
) -> pa.Array:
    """The two-character city prefix dropped, or moved into brackets before the company form."""
    dropped = pc.utf8_slice_codeunits(names, 2)
    bracketed = pc.replace_substring_regex(names, _FORM_PATTERN, r"\2（\1）\3")
    choice = rng.random(len(names)) < 0.5
    variant = pc.if_else(pa.array(choice), dropped, bracketed)
    return pc.if_else(pa.array(mask), variant, names)


def _replace_at(
    names: pa.Array, mask: npt.NDArray[np.bool_], at: int, mapping: dict[str, str]
) -> pa.Array:
    """The names with character `at` mapped through `mapping` where `mask` (if mapped)."""
    head = pc.utf8_slice_codeunits(names, 0, at)
    char = pc.utf8_slice_codeunits(names, at, at + 1)
    tail = pc.utf8_slice_codeunits(names, at + 1)
    keys = pa.array(list(mapping), pa.string())
    swapped = pc.take(pa.array(list(mapping.values()), pa.string()), pc.index_in(char, keys))
    use = pc.and_(pa.array(mask), pc.is_valid(swapped))
    return pc.if_else(use, pc.binary_join_element_wise(head, swapped, tail, ""), names)


def _wrong_uscc_check(uscc: pa.Array, mask: npt.NDArray[np.bool_]) -> pa.Array:
    """A GB 32100 check character that is not the right one (the next one in the alphabet)."""
    first17 = pc.utf8_slice_codeunits(uscc, 0, 17)
    check = pc.utf8_slice_codeunits(uscc, 17, 18)
    alphabet = pa.array(list(_USCC_ALPHABET), pa.string())
    shifted = pa.array(list(_USCC_ALPHABET[1:] + _USCC_ALPHABET[0]), pa.string())
    wrong = pc.take(shifted, pc.index_in(check, alphabet))
    return pc.if_else(pa.array(mask), pc.binary_join_element_wise(first17, wrong, ""), uscc)


def _swap_at(values: pa.Array, mask: npt.NDArray[np.bool_], at: int) -> pa.Array:
    """Characters `at` and `at + 1` transposed where `mask` and they differ."""
    a = pc.utf8_slice_codeunits(values, at, at + 1)
    b = pc.utf8_slice_codeunits(values, at + 1, at + 2)
    swapped = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(values, 0, at), b, a, pc.utf8_slice_codeunits(values, at + 2), ""
    )
    use = pc.and_(pa.array(mask), pc.not_equal(a, b))
    return pc.if_else(use, swapped, values)
