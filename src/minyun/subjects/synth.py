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

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from minyun.core.identifiers import RIC_WEIGHTS
from minyun.demo.population import iter_persons

__all__ = ["HOMOPHONES", "SOURCES", "Noise", "Source", "person_schema", "person_sources"]

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


def _source_rows(
    people: pa.Table, source: Source, rng: np.random.Generator
) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    n = people.num_rows
    held = np.flatnonzero(rng.random(n) < source.coverage)
    dups = held[rng.random(held.size) < source.noise.duplicates]
    rows = np.concatenate([held, dups])
    rng.shuffle(rows)
    picked = people.take(pa.array(rows))
    m = rows.size
    noise = source.noise

    def hit(p: float) -> npt.NDArray[np.bool_]:
        return rng.random(m) < p

    columns: dict[str, pa.Array] = {
        "id": pc.binary_join_element_wise(
            pa.array([source.code.upper()] * m, pa.string()),
            pc.cast(pa.array(np.arange(1, m + 1)), pa.string()),
            "-",
        )
    }
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
        elsewhere = people["address"].take(pa.array(rng.integers(0, n, m))).combine_chunks()
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
