"""The demo province's catalog: 30+ resources of its departments, with data and planted faults.

Each `DemoResource` is a catalog entry (GB/T 21063 metadata and a Table Schema with the
minyun keys) plus how to make its data: columns drawn from the synthetic persons and
enterprises of `minyun.demo.population` (the first rows of the same streams, so they
agree with the population files) or from a seeded generator, built column by column with
numpy / Arrow. A few resources get planted bad rows — wrong check characters, missing
required values, out-of-range numbers, duplicate keys — so the lake's rejection and the
quality profile have something to show.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from minyun.catalog import service as catalog
from minyun.core import jobs
from minyun.core.config import load_settings
from minyun.core.security import Principal
from minyun.demo import population
from minyun.orgs import service as orgs

SYSTEM = Principal.system(on_behalf_of="demo")
PERSONS = 2_000  # the sample of the population the person-based resources draw from
ENTERPRISES = 600
BAD_SHARE = 0.02  # of the rows, per planted fault: below the 5 % at which a load is refused

Column = Callable[["Draw"], pa.Array]


@dataclass(frozen=True)
class Col:
    """One field of a demo resource: its Table Schema entry and how its values are drawn."""

    name: str
    type: str
    title: str
    draw: Column
    required: bool = False
    unique: bool = False
    minimum: float | int | None = None
    maximum: float | int | None = None
    enum: tuple[str, ...] | None = None
    format: str | None = None
    sensitivity: str = "internal"
    mask: str | None = None
    codelist: str | tuple[str, ...] | None = None  # a code table name or the codes
    link: str | None = None  # what the field holds for entity resolution (enterprise.uscc, ...)

    def descriptor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "title": self.title}
        if self.format:
            out["format"] = self.format
        constraints: dict[str, Any] = {}
        if self.required:
            constraints["required"] = True
        if self.unique:
            constraints["unique"] = True
        if self.minimum is not None:
            constraints["minimum"] = self.minimum
        if self.maximum is not None:
            constraints["maximum"] = self.maximum
        if self.enum is not None:
            constraints["enum"] = list(self.enum)
        if constraints:
            out["constraints"] = constraints
        out["sensitivity"] = self.sensitivity
        if self.mask:
            out["mask"] = self.mask
        if self.codelist:
            out["codelist"] = (
                self.codelist if isinstance(self.codelist, str) else list(self.codelist)
            )
        if self.link:
            out["link"] = self.link
        return out


@dataclass(frozen=True)
class DemoResource:
    """A demo catalog entry with the recipe for its data."""

    code: str
    name: str
    provider: str
    theme: str
    summary: str
    columns: tuple[Col, ...]
    primary_key: tuple[str, ...]
    rows: int = 300
    sharing: str = "conditional"
    open: str = "none"
    legal_basis: str | None = "《政务信息资源共享管理暂行办法》（国发〔2016〕51号）"
    base_library: str | None = None
    update_cycle: str = "monthly"
    faults: tuple[
        tuple[str, str], ...
    ] = ()  # (kind, field): check-digit, missing, range, duplicate

    def schema(self) -> dict[str, Any]:
        """The resource's Table Schema descriptor."""
        return {
            "fields": [c.descriptor() for c in self.columns],
            "primaryKey": list(self.primary_key),
        }


@dataclass
class Draw:
    """What a column is drawn from: the rows wanted, a seeded generator, the sample tables."""

    n: int
    rng: np.random.Generator
    seed: int
    offset: int = 0
    _cache: dict[str, pa.Table] = field(default_factory=dict)

    def _persons(self) -> pa.Table:
        if "persons" not in self._cache:
            batches = population.iter_persons(PERSONS, seed=self.seed, batch_size=PERSONS)
            self._cache["persons"] = pa.Table.from_batches(list(batches))
        return self._cache["persons"]

    def _enterprises(self) -> pa.Table:
        if "enterprises" not in self._cache:
            batches = population.iter_enterprises(
                ENTERPRISES, n_persons=PERSONS, seed=self.seed, batch_size=ENTERPRISES
            )
            self._cache["enterprises"] = pa.Table.from_batches(list(batches))
        return self._cache["enterprises"]

    def _rows(self, size: int, shift: int = 0) -> pa.Array:
        return pa.array((np.arange(self.n) + self.offset + shift) % size)

    def person(self, name: str, shift: int = 0) -> pa.Array:
        table = self._persons()
        return table.column(name).take(self._rows(table.num_rows, shift)).combine_chunks()

    def enterprise(self, name: str) -> pa.Array:
        table = self._enterprises()
        return table.column(name).take(self._rows(table.num_rows)).combine_chunks()

    def ints(self, low: int, high: int) -> pa.Array:
        return pa.array(self.rng.integers(low, high + 1, self.n), pa.int64())

    def numbers(self, low: float, high: float, digits: int = 1) -> pa.Array:
        return pa.array(np.round(self.rng.uniform(low, high, self.n), digits), pa.float64())

    def pick(self, values: Sequence[str], weights: Sequence[float] | None = None) -> pa.Array:
        p = None if weights is None else np.asarray(weights) / np.sum(weights)
        return pa.array(np.asarray(values, dtype=object)[self.rng.choice(len(values), self.n, p=p)])

    def dates(self, start: dt.date, end: dt.date) -> pa.Array:
        days = self.rng.integers(0, (end - start).days + 1, self.n)
        base = np.datetime64(start.isoformat(), "D")
        return pa.array(base + days.astype("timedelta64[D]"), pa.date32())

    def serial(self, prefix: str, width: int = 6) -> pa.Array:
        numbers = pa.array(np.arange(1, self.n + 1), pa.int64())
        padded = pc.utf8_lpad(pc.cast(numbers, pa.string()), width=width, padding="0")
        return pc.binary_join_element_wise(pa.scalar(prefix), padded, "")

    def counties(self) -> pa.Array:
        return self.person("county_code", shift=7)

    def hourly_station(self) -> pa.Array:
        """Station codes 1001A.. for rows that run through 24 hours per station."""
        numbers = pa.array(1001 + (np.arange(self.n) // 24) % 30, pa.int64())
        return pc.binary_join_element_wise(pc.cast(numbers, pa.string()), pa.scalar("A"), "")

    def division(self, name: str) -> pa.Array:
        return pa.array([row[name] or None for row in _divisions()][: self.n])


def _divisions() -> list[dict[str, str]]:
    shown = ("province", "city", "county")
    return [row for row in orgs.packaged_divisions() if row["level"] in shown]


def _c(name: str, type_: str, title: str, draw: Column, **kw: Any) -> Col:
    return Col(name, type_, title, draw, **kw)


# Frequent columns.
def _ric(title: str = "公民身份号码", name: str = "ric", shift: int = 0, **kw: Any) -> Col:
    kw.setdefault("required", True)
    return _c(
        name, "string", title, lambda d: d.person("ric", shift), format="cn-ric",
        sensitivity="sensitive", mask="keep(6,4)", **kw,
    )  # fmt: skip


def _uscc(title: str = "统一社会信用代码", name: str = "uscc", **kw: Any) -> Col:
    kw.setdefault("required", True)
    return _c(
        name, "string", title, lambda d: d.enterprise("uscc"), format="cn-uscc",
        sensitivity="public", **kw,
    )  # fmt: skip


def _ent_name(**kw: Any) -> Col:
    return _c(
        "name", "string", "企业名称", lambda d: d.enterprise("name"), sensitivity="public", **kw
    )


def _county(title: str = "行政区划代码") -> Col:
    return _c("county_code", "string", title, lambda d: d.counties(), codelist="GB/T 2260")


D = dt.date
INDUSTRY_SECTIONS = tuple("ABCDEFGHIJKLMNOPQRST")  # GB/T 4754-2017 sections (门类)
OPEN_BASIS = None  # unconditional sharing and opening need no legal basis
PRIVACY = "《中华人民共和国个人信息保护法》第三十四条；《政务信息资源共享管理暂行办法》第九条"

RESOURCES: tuple[DemoResource, ...] = (
    # --- population base library (人口基础库) -----------------------------------------------
    DemoResource(
        "police-population-basic",
        "人口基本信息",
        "fj-police",
        "public-security",
        "全省户籍人口的身份号码、姓名、性别、出生日期和户籍地址，人口基础库的核心资源。",
        (
            _ric(unique=True, link="person.ric"),
            _c(
                "name",
                "string",
                "姓名",
                lambda d: d.person("name"),
                required=True,
                link="person.name",
                sensitivity="sensitive",
                mask="name",
            ),
            _c(
                "sex",
                "string",
                "性别",
                lambda d: d.person("sex"),
                enum=("M", "F"),
                link="person.sex",
            ),
            _c(
                "birth_date",
                "date",
                "出生日期",
                lambda d: d.person("birth_date"),
                sensitivity="sensitive",
                mask="date(year)",
                link="person.birth_date",
            ),
            _county("户籍地行政区划"),
            _c(
                "address",
                "string",
                "户籍地址",
                lambda d: d.person("address"),
                sensitivity="sensitive",
                mask="address(city)",
                link="person.address",
            ),
        ),
        ("ric",),
        rows=1000,
        legal_basis=PRIVACY,
        base_library="population",
        update_cycle="daily",
        faults=(("check-digit", "ric"), ("missing", "name")),
    ),
    DemoResource(
        "police-household-moves",
        "户籍迁移登记信息",
        "fj-police",
        "public-security",
        "户口迁入、迁出登记记录。",
        (
            _c("record_no", "string", "登记编号", lambda d: d.serial("QY2024"), required=True),
            _ric(link="person.ric"),
            _c("move_date", "date", "迁移日期", lambda d: d.dates(D(2023, 1, 1), D(2025, 6, 30))),
            _c("from_county", "string", "迁出地", lambda d: d.person("county_code", 3)),
            _c("to_county", "string", "迁入地", lambda d: d.counties()),
        ),
        ("record_no",),
        legal_basis=PRIVACY,
        base_library="population",
    ),
    DemoResource(
        "civil-marriage-registration",
        "婚姻登记信息",
        "fj-civil",
        "living",
        "结婚、离婚登记信息，用于办事材料免提交。",
        (
            _c("cert_no", "string", "证件字号", lambda d: d.serial("J350000-2024-"), required=True),
            _ric("男方身份号码", "husband_ric"),
            _ric("女方身份号码", "wife_ric", shift=1000),
            _c(
                "kind",
                "string",
                "登记类型",
                lambda d: d.pick(["结婚", "离婚"], [0.8, 0.2]),
                enum=("结婚", "离婚"),
            ),
            _c("reg_date", "date", "登记日期", lambda d: d.dates(D(2015, 1, 1), D(2025, 6, 30))),
        ),
        ("cert_no",),
        legal_basis=PRIVACY,
        base_library="population",
    ),
    DemoResource(
        "civil-minimum-living",
        "最低生活保障对象信息",
        "fj-civil",
        "social-assistance",
        "城乡低保对象及月保障金额。",
        (
            _ric(unique=True, link="person.ric"),
            _c(
                "name",
                "string",
                "姓名",
                lambda d: d.person("name"),
                sensitivity="sensitive",
                mask="name",
                link="person.name",
            ),
            _county(),
            _c(
                "monthly_allowance",
                "number",
                "月保障金额（元）",
                lambda d: d.numbers(300, 1200, 0),
                minimum=0,
                maximum=2000,
            ),
            _c("start_date", "date", "纳入日期", lambda d: d.dates(D(2018, 1, 1), D(2025, 6, 1))),
        ),
        ("ric",),
        legal_basis=PRIVACY,
        faults=(("range", "monthly_allowance"),),
    ),
    DemoResource(
        "civil-social-organizations",
        "社会组织登记信息",
        "fj-civil",
        "organizations",
        "社会团体、民办非企业单位和基金会的登记信息。",
        (
            _uscc(),
            _c(
                "name",
                "string",
                "名称",
                lambda d: d.pick(
                    [
                        "福建省软件行业协会",
                        "福州市慈善总会",
                        "厦门市志愿者联合会",
                        "泉州市商会",
                        "福建省老年大学协会",
                    ]
                ),
                sensitivity="public",
            ),
            _c(
                "kind",
                "string",
                "类型",
                lambda d: d.pick(["社会团体", "民办非企业单位", "基金会"]),
                enum=("社会团体", "民办非企业单位", "基金会"),
            ),
            _c("reg_date", "date", "登记日期", lambda d: d.dates(D(2000, 1, 1), D(2025, 1, 1))),
        ),
        ("uscc",),
        rows=120,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        base_library="legal-person",
    ),
    # --- legal-person base library (法人基础库) ----------------------------------------------
    DemoResource(
        "amr-enterprise-registration",
        "企业登记信息",
        "fj-amr",
        "market-regulation",
        "市场主体登记的基本信息：统一社会信用代码、名称、法定代表人、注册资本、成立日期、行业和状态。",
        (
            _uscc(unique=True, link="enterprise.uscc"),
            _ent_name(link="enterprise.name"),
            _ric("法定代表人身份号码", "legal_rep_ric", link="enterprise.legal_person_ric"),
            _c(
                "registered_capital",
                "integer",
                "注册资本（元）",
                lambda d: d.enterprise("registered_capital"),
                minimum=0,
            ),
            _c("established", "date", "成立日期", lambda d: d.enterprise("established")),
            _c(
                "industry",
                "string",
                "行业门类",
                lambda d: d.enterprise("industry"),
                codelist=INDUSTRY_SECTIONS,
            ),
            _c("county_code", "string", "登记机关区划", lambda d: d.enterprise("county_code")),
            _c(
                "status",
                "string",
                "登记状态",
                lambda d: d.enterprise("status"),
                enum=("存续", "注销", "吊销"),
            ),
        ),
        ("uscc",),
        rows=600,
        legal_basis="《企业信息公示暂行条例》",
        open="conditional",
        base_library="legal-person",
        update_cycle="daily",
        faults=(("check-digit", "uscc"), ("duplicate", "uscc")),
    ),
    DemoResource(
        "amr-administrative-penalties",
        "市场监管行政处罚信息",
        "fj-amr",
        "credit",
        "市场监管部门作出的行政处罚决定，依法向社会公示。",
        (
            _c(
                "decision_no",
                "string",
                "处罚决定书文号",
                lambda d: d.serial("闽市监罚〔2024〕"),
                required=True,
            ),
            _uscc(),
            _c("penalty_date", "date", "处罚日期", lambda d: d.dates(D(2022, 1, 1), D(2025, 6, 1))),
            _c(
                "amount", "number", "罚没金额（元）", lambda d: d.numbers(500, 200000, 0), minimum=0
            ),
            _c(
                "reason",
                "string",
                "违法事实",
                lambda d: d.pick(
                    ["未按规定公示年度报告", "销售过期食品", "虚假宣传", "无照经营", "价格违法"]
                ),
            ),
        ),
        ("decision_no",),
        rows=200,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
    ),
    DemoResource(
        "amr-food-business-licences",
        "食品经营许可证信息",
        "fj-amr",
        "market-regulation",
        "食品经营许可证的发证、有效期信息。",
        (
            _c(
                "licence_no",
                "string",
                "许可证编号",
                lambda d: d.serial("JY13501", 9),
                required=True,
            ),
            _uscc(),
            _c("issue_date", "date", "发证日期", lambda d: d.dates(D(2020, 1, 1), D(2024, 12, 31))),
            _c(
                "expiry_date", "date", "有效期至", lambda d: d.dates(D(2025, 1, 1), D(2029, 12, 31))
            ),
        ),
        ("licence_no",),
        rows=250,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        base_library="licence",
    ),
    DemoResource(
        "tax-credit-ratings",
        "纳税信用等级信息",
        "fj-tax",
        "credit",
        "纳税人年度纳税信用等级（A、B、M、C、D）。",
        (
            _uscc(),
            _c("year", "year", "评价年度", lambda d: pa.array(np.full(d.n, 2024), pa.int32())),
            _c(
                "grade",
                "string",
                "信用等级",
                lambda d: d.pick(["A", "B", "M", "C", "D"], [0.3, 0.4, 0.2, 0.07, 0.03]),
                enum=("A", "B", "M", "C", "D"),
            ),
        ),
        ("uscc", "year"),
        rows=500,
        sharing="unconditional",
        open="conditional",
        legal_basis="《纳税信用管理办法》",
        base_library="legal-person",
    ),
    DemoResource(
        "tax-enterprise-payments",
        "企业纳税信息",
        "fj-tax",
        "finance",
        "企业年度入库税款，用于信用评价和融资服务。",
        (
            _uscc(),
            _c("year", "year", "所属年度", lambda d: pa.array(np.full(d.n, 2024), pa.int32())),
            _c(
                "tax_paid",
                "number",
                "入库税款（元）",
                lambda d: d.numbers(1e3, 5e6, 2),
                required=True,
                minimum=0,
                sensitivity="sensitive",
            ),
            _c(
                "vat",
                "number",
                "增值税（元）",
                lambda d: d.numbers(0, 2e6, 2),
                minimum=0,
                sensitivity="sensitive",
            ),
        ),
        ("uscc", "year"),
        rows=500,
        legal_basis="《中华人民共和国税收征收管理法》第八条",
        base_library="legal-person",
        update_cycle="yearly",
        faults=(("missing", "tax_paid"),),
    ),
    DemoResource(
        "hrss-social-insurance",
        "社会保险参保信息",
        "fj-hrss",
        "employment",
        "职工养老、医疗、失业保险参保状态。",
        (
            _ric(link="person.ric"),
            _c(
                "insurance",
                "string",
                "险种",
                lambda d: d.pick(["养老", "医疗", "失业", "工伤"]),
                enum=("养老", "医疗", "失业", "工伤"),
            ),
            _uscc("参保单位代码", "employer_uscc"),
            _c("start_date", "date", "参保日期", lambda d: d.dates(D(2005, 1, 1), D(2025, 6, 1))),
            _c(
                "status",
                "string",
                "参保状态",
                lambda d: d.pick(["参保缴费", "暂停缴费", "终止"], [0.85, 0.1, 0.05]),
            ),
        ),
        ("ric", "insurance"),
        rows=800,
        legal_basis=PRIVACY,
        base_library="population",
        faults=(("duplicate", "ric"),),
    ),
    DemoResource(
        "hrss-employer-contributions",
        "单位社保缴费信息",
        "fj-hrss",
        "employment",
        "参保单位月度参保人数和缴费金额。",
        (
            _uscc(),
            _c(
                "month",
                "string",
                "费款所属期",
                lambda d: d.pick(
                    ["2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06"]
                ),
            ),
            _c("insured", "integer", "参保人数", lambda d: d.ints(1, 800), minimum=0),
            _c("amount", "number", "缴费金额（元）", lambda d: d.numbers(1e3, 1e6, 2), minimum=0),
        ),
        ("uscc", "month"),
        rows=400,
        legal_basis="《中华人民共和国社会保险法》",
    ),
    DemoResource(
        "hrss-unemployment-registration",
        "失业登记信息",
        "fj-hrss",
        "employment",
        "城镇登记失业人员信息。",
        (
            _ric(unique=True, link="person.ric"),
            _c("reg_date", "date", "登记日期", lambda d: d.dates(D(2024, 1, 1), D(2025, 6, 30))),
            _county("登记地"),
        ),
        ("ric",),
        rows=200,
        legal_basis=PRIVACY,
    ),
    # --- e-licence base library (电子证照基础库) ---------------------------------------------
    DemoResource(
        "bigdata-licence-index",
        "电子证照目录索引",
        "fj-bigdata",
        "organizations",
        "全省电子证照的目录索引：证照类型、持证主体、发证机关、状态；证照文件在电子证照库。",
        (
            _c("licence_id", "string", "证照标识", lambda d: d.serial("DZZZ-", 8), required=True),
            _c(
                "licence_type",
                "string",
                "证照类型",
                lambda d: d.pick(
                    [
                        "居民身份证",
                        "营业执照",
                        "结婚证",
                        "不动产权证书",
                        "食品经营许可证",
                        "道路运输经营许可证",
                        "学位证书",
                    ]
                ),
            ),
            _ric("持证人身份号码", "holder_ric", required=False, link="person.ric"),
            _c(
                "issuer",
                "string",
                "发证机关",
                lambda d: d.pick(
                    ["福建省公安厅", "福建省市场监督管理局", "福建省民政厅", "福建省自然资源厅"]
                ),
            ),
            _c("issue_date", "date", "发证日期", lambda d: d.dates(D(2016, 1, 1), D(2025, 6, 30))),
            _c(
                "status",
                "string",
                "状态",
                lambda d: d.pick(["有效", "注销", "过期"], [0.9, 0.05, 0.05]),
                enum=("有效", "注销", "过期"),
            ),
        ),
        ("licence_id",),
        rows=800,
        legal_basis=PRIVACY,
        base_library="licence",
        update_cycle="realtime",
    ),
    # --- natural resources and geo-spatial (自然资源和空间地理基础库) ---------------------------
    DemoResource(
        "nature-administrative-divisions",
        "行政区划代码",
        "fj-nature",
        "geospatial",
        "福建省行政区划代码（GB/T 2260）：省、市、县三级。",
        (
            _c("code", "string", "区划代码", lambda d: d.division("code"), required=True),
            _c(
                "name",
                "string",
                "名称",
                lambda d: d.division("name"),
                required=True,
                sensitivity="public",
            ),
            _c(
                "level",
                "string",
                "级别",
                lambda d: d.division("level"),
                enum=("province", "city", "county", "township", "village"),
            ),
            _c("parent_code", "string", "上级区划", lambda d: d.division("parent_code")),
        ),
        ("code",),
        rows=0,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        base_library="geospatial",
        update_cycle="yearly",
    ),
    DemoResource(
        "nature-geohazard-sites",
        "地质灾害隐患点",
        "fj-nature",
        "geospatial",
        "地质灾害隐患点位置、类型和风险等级。",
        (
            _c("site_id", "string", "隐患点编号", lambda d: d.serial("DZ35", 6), required=True),
            _county(),
            _c(
                "longitude",
                "number",
                "经度",
                lambda d: d.numbers(115.8, 120.7, 5),
                minimum=115.8,
                maximum=120.7,
            ),
            _c(
                "latitude",
                "number",
                "纬度",
                lambda d: d.numbers(23.5, 28.3, 5),
                minimum=23.5,
                maximum=28.3,
            ),
            _c(
                "kind",
                "string",
                "灾害类型",
                lambda d: d.pick(["滑坡", "崩塌", "泥石流", "地面塌陷"]),
            ),
            _c(
                "risk",
                "string",
                "风险等级",
                lambda d: d.pick(["低", "中", "高"]),
                enum=("低", "中", "高"),
            ),
        ),
        ("site_id",),
        rows=150,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        base_library="geospatial",
        faults=(("range", "latitude"),),
    ),
    DemoResource(
        "nature-real-estate-registration",
        "不动产登记信息",
        "fj-nature",
        "housing",
        "不动产权利人、坐落区划、面积和登记日期。",
        (
            _c(
                "cert_no",
                "string",
                "不动产权证号",
                lambda d: d.serial("闽(2024)不动产权第", 7),
                required=True,
            ),
            _ric("权利人身份号码", "owner_ric", link="person.ric"),
            _county("坐落区划"),
            _c(
                "area",
                "number",
                "建筑面积（平方米）",
                lambda d: d.numbers(30, 300, 2),
                minimum=0,
                maximum=10000,
            ),
            _c("reg_date", "date", "登记日期", lambda d: d.dates(D(2016, 1, 1), D(2025, 6, 1))),
        ),
        ("cert_no",),
        rows=400,
        legal_basis=PRIVACY,
        base_library="licence",
    ),
    # --- the departments' thematic resources --------------------------------------------------
    DemoResource(
        "eco-air-quality-hourly",
        "空气质量小时数据",
        "fj-eco",
        "environment",
        "全省国控空气质量监测站点逐小时浓度和空气质量指数（HJ 633-2012）。",
        (
            _c(
                "station",
                "string",
                "站点编码",
                lambda d: d.hourly_station(),
                required=True,
            ),
            _c(
                "date",
                "date",
                "日期",
                lambda d: pa.array(np.full(d.n, np.datetime64("2022-01-04")), pa.date32()),
            ),
            _c(
                "hour",
                "integer",
                "小时",
                lambda d: pa.array(np.arange(d.n) % 24, pa.int64()),
                minimum=0,
                maximum=23,
            ),
            _c("pm25", "number", "PM2.5（μg/m³）", lambda d: d.numbers(5, 80), minimum=0),
            _c("pm10", "number", "PM10（μg/m³）", lambda d: d.numbers(10, 120), minimum=0),
            _c("o3", "number", "O3（μg/m³）", lambda d: d.numbers(10, 160), minimum=0),
            _c("aqi", "integer", "空气质量指数", lambda d: d.ints(15, 130), minimum=0, maximum=500),
        ),
        ("station", "date", "hour"),
        rows=720,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        update_cycle="hourly",
        faults=(("range", "aqi"), ("duplicate", "station")),
    ),
    DemoResource(
        "eco-key-polluters",
        "重点排污单位名录",
        "fj-eco",
        "environment",
        "重点排污单位及主要污染物类别。",
        (
            _uscc(link="enterprise.uscc"),
            _ent_name(link="enterprise.name"),
            _c(
                "pollutant",
                "string",
                "污染物类别",
                lambda d: d.pick(["水", "大气", "土壤", "噪声"]),
            ),
            _c("county_code", "string", "所在区划", lambda d: d.enterprise("county_code")),
        ),
        ("uscc",),
        rows=150,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
    ),
    DemoResource(
        "housing-construction-qualifications",
        "建筑业企业资质信息",
        "fj-housing",
        "housing",
        "建筑业企业资质类别、等级和有效期。",
        (
            _uscc(),
            _c(
                "qualification",
                "string",
                "资质类别",
                lambda d: d.pick(
                    ["建筑工程施工总承包", "市政公用工程施工总承包", "地基基础工程专业承包"]
                ),
            ),
            _c(
                "grade",
                "string",
                "资质等级",
                lambda d: d.pick(["特级", "一级", "二级", "三级"]),
                enum=("特级", "一级", "二级", "三级"),
            ),
            _c("expiry_date", "date", "有效期至", lambda d: d.dates(D(2025, 1, 1), D(2030, 1, 1))),
        ),
        ("uscc", "qualification"),
        rows=200,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        base_library="licence",
    ),
    DemoResource(
        "housing-provident-fund",
        "住房公积金缴存信息",
        "fj-housing",
        "housing",
        "个人住房公积金月缴存额和账户余额。",
        (
            _ric(unique=True, link="person.ric"),
            _uscc("缴存单位代码", "employer_uscc"),
            _c(
                "monthly_amount",
                "number",
                "月缴存额（元）",
                lambda d: d.numbers(200, 6000, 2),
                minimum=0,
                maximum=20000,
                sensitivity="sensitive",
            ),
            _c(
                "balance",
                "number",
                "账户余额（元）",
                lambda d: d.numbers(0, 300000, 2),
                minimum=0,
                sensitivity="secret",
                mask="null",
            ),
        ),
        ("ric",),
        rows=500,
        legal_basis=PRIVACY,
    ),
    DemoResource(
        "transport-road-operation-licences",
        "道路运输经营许可信息",
        "fj-transport",
        "transport",
        "道路旅客、货物运输经营许可。",
        (
            _c(
                "licence_no",
                "string",
                "许可证号",
                lambda d: d.serial("闽交运管许可字", 9),
                required=True,
            ),
            _uscc(),
            _c(
                "scope",
                "string",
                "经营范围",
                lambda d: d.pick(["普通货运", "危险货物运输", "班车客运"]),
            ),
            _c("expiry_date", "date", "有效期至", lambda d: d.dates(D(2025, 6, 1), D(2029, 6, 1))),
        ),
        ("licence_no",),
        rows=200,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        base_library="licence",
    ),
    DemoResource(
        "transport-bus-lines",
        "公交线路信息",
        "fj-transport",
        "transport",
        "城市公交线路、站点数和线路长度。",
        (
            _c("line", "string", "线路编号", lambda d: d.serial("L", 4), required=True),
            _c("city_code", "string", "城市", lambda d: d.person("city_code", 11)),
            _c("stops", "integer", "站点数", lambda d: d.ints(8, 45), minimum=2),
            _c("length_km", "number", "线路长度（公里）", lambda d: d.numbers(5, 40), minimum=0),
        ),
        ("line",),
        rows=180,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        update_cycle="quarterly",
    ),
    DemoResource(
        "health-institution-licences",
        "医疗机构执业许可信息",
        "fj-health",
        "health",
        "医疗机构名称、级别和核定床位。",
        (
            _uscc(),
            _c(
                "name",
                "string",
                "机构名称",
                lambda d: d.pick(
                    [
                        "福建医科大学附属协和医院",
                        "福建省立医院",
                        "厦门大学附属中山医院",
                        "泉州市第一医院",
                        "南平市第一医院",
                        "社区卫生服务中心",
                    ]
                ),
                sensitivity="public",
            ),
            _c(
                "level",
                "string",
                "医院等级",
                lambda d: d.pick(["三级甲等", "二级甲等", "一级", "未定级"]),
            ),
            _c("beds", "integer", "核定床位", lambda d: d.ints(0, 3000), minimum=0, maximum=10000),
        ),
        ("uscc",),
        rows=120,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        base_library="licence",
    ),
    DemoResource(
        "health-birth-certificates",
        "出生医学证明信息",
        "fj-health",
        "health",
        "新生儿出生医学证明，用于出生“一件事”联办。",
        (
            _c("cert_no", "string", "证明编号", lambda d: d.serial("Q35", 9), required=True),
            _c(
                "child_name",
                "string",
                "新生儿姓名",
                lambda d: d.person("name", 50),
                sensitivity="sensitive",
                mask="name",
            ),
            _c("birth_date", "date", "出生日期", lambda d: d.dates(D(2024, 1, 1), D(2025, 6, 30))),
            _ric("母亲身份号码", "mother_ric", shift=200, link="person.ric"),
        ),
        ("cert_no",),
        rows=300,
        legal_basis=PRIVACY,
        base_library="population",
        faults=(("check-digit", "mother_ric"),),
    ),
    DemoResource(
        "education-schools",
        "学校名录",
        "fj-education",
        "education",
        "各级各类学校名称、类型、所在区划和在校生数。",
        (
            _c("school_code", "string", "学校标识码", lambda d: d.serial("3135", 6), required=True),
            _c(
                "kind",
                "string",
                "学校类型",
                lambda d: d.pick(["小学", "初级中学", "高级中学", "高等学校"]),
            ),
            _county(),
            _c("students", "integer", "在校生数", lambda d: d.ints(100, 4000), minimum=0),
        ),
        ("school_code",),
        rows=250,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        update_cycle="yearly",
    ),
    DemoResource(
        "education-diplomas",
        "学历学位证书信息",
        "fj-education",
        "education",
        "高等教育学历证书和学位证书信息。",
        (
            _c("cert_no", "string", "证书编号", lambda d: d.serial("103862024", 9), required=True),
            _ric(link="person.ric"),
            _c(
                "degree",
                "string",
                "学历层次",
                lambda d: d.pick(["专科", "本科", "硕士研究生", "博士研究生"]),
            ),
            _c(
                "grad_year",
                "year",
                "毕业年份",
                lambda d: pa.array(d.rng.integers(2000, 2025, d.n), pa.int32()),
                minimum=1950,
                maximum=2030,
            ),
        ),
        ("cert_no",),
        rows=300,
        legal_basis=PRIVACY,
        base_library="licence",
    ),
    DemoResource(
        "agri-family-farms",
        "家庭农场名录",
        "fj-agri",
        "industry-agriculture",
        "县级以上示范家庭农场名录。",
        (
            _uscc(link="enterprise.uscc"),
            _ent_name(link="enterprise.name"),
            _c("county_code", "string", "所在区划", lambda d: d.enterprise("county_code")),
            _c("area_mu", "number", "经营面积（亩）", lambda d: d.numbers(20, 800), minimum=0),
            _c(
                "crop",
                "string",
                "主营品种",
                lambda d: d.pick(["茶叶", "水稻", "食用菌", "水果", "蔬菜"]),
            ),
        ),
        ("uscc",),
        rows=150,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        update_cycle="yearly",
    ),
    DemoResource(
        "commerce-foreign-trade-operators",
        "对外贸易经营者备案信息",
        "fj-commerce",
        "commerce",
        "对外贸易经营者备案登记。",
        (
            _uscc(),
            _c(
                "record_no",
                "string",
                "备案登记表编号",
                lambda d: d.serial("0352", 8),
                required=True,
            ),
            _c("record_date", "date", "备案日期", lambda d: d.dates(D(2010, 1, 1), D(2025, 6, 1))),
        ),
        ("uscc",),
        rows=200,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
    ),
    DemoResource(
        "customs-enterprise-credit",
        "海关企业信用等级",
        "fj-customs",
        "credit",
        "进出口货物收发货人的海关信用等级（高级认证、一般信用、失信）。",
        (
            _uscc(),
            _c("customs_code", "string", "海关编码", lambda d: d.serial("3501", 6), required=True),
            _c(
                "credit",
                "string",
                "信用等级",
                lambda d: d.pick(["高级认证企业", "一般信用企业", "失信企业"], [0.1, 0.85, 0.05]),
                enum=("高级认证企业", "一般信用企业", "失信企业"),
            ),
        ),
        ("uscc",),
        rows=200,
        sharing="unconditional",
        open="conditional",
        legal_basis="《中华人民共和国海关注册登记和备案企业信用管理办法》",
    ),
    DemoResource(
        "stats-regional-gdp",
        "地区生产总值",
        "fj-stats",
        "finance",
        "设区市年度地区生产总值及增速。",
        (
            _c(
                "year",
                "year",
                "年度",
                lambda d: pa.array(2016 + np.arange(d.n) // 9, pa.int32()),
                required=True,
            ),
            _c(
                "city_code",
                "string",
                "设区市",
                lambda d: pa.array(
                    np.asarray(
                        [
                            "350100",
                            "350200",
                            "350300",
                            "350400",
                            "350500",
                            "350600",
                            "350700",
                            "350800",
                            "350900",
                        ],
                        dtype=object,
                    )[np.arange(d.n) % 9]
                ),
                required=True,
            ),
            _c(
                "gdp",
                "number",
                "地区生产总值（亿元）",
                lambda d: d.numbers(1000, 13000, 2),
                minimum=0,
                sensitivity="public",
            ),
            _c(
                "growth",
                "number",
                "增速（%）",
                lambda d: d.numbers(-2, 9, 1),
                minimum=-50,
                maximum=50,
                sensitivity="public",
            ),
        ),
        ("year", "city_code"),
        rows=81,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        update_cycle="yearly",
    ),
    DemoResource(
        "pboc-enterprise-credit-loans",
        "企业信贷信息",
        "fj-pboc",
        "finance",
        "企业在金融机构的贷款笔数和余额，供金融服务云授信评估。",
        (
            _uscc(),
            _c("loans", "integer", "贷款笔数", lambda d: d.ints(0, 12), minimum=0),
            _c(
                "balance",
                "number",
                "贷款余额（万元）",
                lambda d: d.numbers(0, 5000, 2),
                minimum=0,
                sensitivity="secret",
                mask="null",
            ),
        ),
        ("uscc",),
        rows=300,
        sharing="conditional",
        open="none",
        legal_basis="《征信业管理条例》第十四条",
        base_library="legal-person",
    ),
    DemoResource(
        "rural-monitoring-households",
        "防止返贫监测对象信息",
        "fj-rural",
        "social-assistance",
        "防止返贫动态监测对象及家庭人均纯收入。",
        (
            _ric(unique=True, link="person.ric"),
            _county(),
            _c(
                "household_size",
                "integer",
                "家庭人口",
                lambda d: d.ints(1, 8),
                required=True,
                minimum=1,
                maximum=20,
            ),
            _c(
                "income",
                "number",
                "人均纯收入（元）",
                lambda d: d.numbers(3000, 15000, 0),
                minimum=0,
                sensitivity="sensitive",
            ),
        ),
        ("ric",),
        rows=250,
        legal_basis=PRIVACY,
        faults=(("missing", "household_size"),),
    ),
    DemoResource(
        "drc-credit-lists",
        "信用红黑名单",
        "fj-drc",
        "credit",
        "守信激励和失信惩戒对象名单。",
        (
            _uscc(),
            _c(
                "list",
                "string",
                "名单类型",
                lambda d: d.pick(["红名单", "黑名单"], [0.7, 0.3]),
                enum=("红名单", "黑名单"),
            ),
            _c(
                "reason",
                "string",
                "列入事由",
                lambda d: d.pick(
                    ["A级纳税人", "海关高级认证企业", "拖欠农民工工资", "严重违法失信"]
                ),
            ),
            _c("listed_on", "date", "列入日期", lambda d: d.dates(D(2021, 1, 1), D(2025, 6, 1))),
        ),
        ("uscc",),
        rows=150,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        update_cycle="weekly",
    ),
    DemoResource(
        "finance-procurement-awards",
        "政府采购中标信息",
        "fj-finance",
        "finance",
        "政府采购项目中标供应商和中标金额。",
        (
            _c(
                "project_no",
                "string",
                "项目编号",
                lambda d: d.serial("[350000]CG2024-", 5),
                required=True,
            ),
            _uscc("中标供应商代码", "supplier_uscc"),
            _c("amount", "number", "中标金额（元）", lambda d: d.numbers(5e4, 5e7, 2), minimum=0),
            _c("award_date", "date", "中标日期", lambda d: d.dates(D(2024, 1, 1), D(2025, 6, 1))),
        ),
        ("project_no",),
        rows=200,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
    ),
    DemoResource(
        "gov-service-items",
        "政务服务事项目录",
        "fj-gov-service",
        "living",
        "省市县乡村五级政务服务事项及承诺办结时限。",
        (
            _c(
                "item_code", "string", "事项编码", lambda d: d.serial("11350000", 10), required=True
            ),
            _c(
                "name",
                "string",
                "事项名称",
                lambda d: d.pick(
                    [
                        "企业设立登记",
                        "出生医学证明办理",
                        "不动产登记",
                        "社会保障卡申领",
                        "失业登记",
                        "食品经营许可",
                    ]
                ),
                sensitivity="public",
            ),
            _c(
                "level",
                "string",
                "行使层级",
                lambda d: d.pick(["省级", "市级", "县级", "乡级", "村级"]),
            ),
            _c(
                "time_limit",
                "integer",
                "承诺时限（工作日）",
                lambda d: d.ints(0, 20),
                minimum=0,
                maximum=60,
            ),
        ),
        ("item_code",),
        rows=200,
        sharing="unconditional",
        open="unconditional",
        legal_basis=OPEN_BASIS,
        update_cycle="irregular",
    ),
)


def _seed_for(code: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{code}".encode()).digest()[:8], "big")


def build_table(resource: DemoResource, *, seed: int = 2026) -> pa.Table:
    """The resource's rows, deterministic for the seed, with its planted faults."""
    n = resource.rows
    if n == 0:  # the divisions: as many rows as the code table has
        n = len(_divisions())
    draw = Draw(n, np.random.default_rng(_seed_for(resource.code, seed)), seed)
    table = pa.table({c.name: c.draw(draw) for c in resource.columns})
    return _plant(table, resource, np.random.default_rng(_seed_for(resource.code, seed + 1)))


def _plant(table: pa.Table, resource: DemoResource, rng: np.random.Generator) -> pa.Table:
    """Spoil BAD_SHARE of the rows per fault: the loads must reject exactly these."""
    n = table.num_rows
    k = max(1, int(n * BAD_SHARE))
    for kind, name in resource.faults:
        hit = np.zeros(n, dtype=bool)
        hit[rng.choice(n, k, replace=False)] = True
        mask = pa.array(hit)
        column = table.column(name).combine_chunks()
        if kind == "check-digit":
            body = pc.utf8_slice_codeunits(column, 0, 17)
            last = pc.utf8_slice_codeunits(column, 17, 18)
            wrong = pc.if_else(pc.equal(last, "0"), "1", "0")
            spoiled = pc.binary_join_element_wise(body, wrong, "")
        elif kind == "missing":
            spoiled = pa.nulls(n, column.type)
        elif kind == "range":
            spec = next(c for c in resource.columns if c.name == name)
            bound = spec.maximum if spec.maximum is not None else 0
            spoiled = pa.array(np.full(n, bound * 10 + 1), column.type)
        elif kind == "duplicate":
            extra = table.take(pa.array(np.flatnonzero(hit)))
            table = pa.concat_tables([table, extra])
            continue
        else:
            raise ValueError(f"unknown fault {kind}")
        table = table.set_column(
            table.schema.get_field_index(name), name, pc.if_else(mask, spoiled, column)
        )
    return table


def write_data(resource: DemoResource, folder: Path, *, seed: int = 2026) -> Path:
    """The resource's data as a UTF-8 CSV file under `folder` (written once, then reused)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{resource.code}.csv"
    if not path.exists():
        tmp = path.with_suffix(".csv.tmp")
        pacsv.write_csv(build_table(resource, seed=seed), tmp)
        tmp.replace(path)
    return path


def publish_resources(
    ctx: jobs.JobContext, state: dict[str, Any], *, folder: Path, seed: int
) -> dict[str, Any]:
    """Register, publish and load every demo resource; resumes after the last one finished."""
    done: list[str] = list(state.get("resources_done", []))
    settings = load_settings(var_dir=Path(ctx.params["var_dir"]), lake_uri=ctx.params["lake_uri"])
    loaded = rejected = 0
    for i, resource in enumerate(RESOURCES, start=1):
        if resource.code in done:
            continue
        with ctx.factory.begin() as session:
            if catalog.find_resource(session, resource.code) is None:
                catalog.create_resource(
                    session, SYSTEM, code=resource.code, name=resource.name,
                    provider=resource.provider, summary=resource.summary, theme=resource.theme,
                    base_library=resource.base_library, update_cycle=resource.update_cycle,
                    sharing_type=resource.sharing, open_type=resource.open,
                    legal_basis=resource.legal_basis, schema=resource.schema(),
                )  # fmt: skip
            catalog.publish_resource(session, SYSTEM, resource.code)
        version = _load(ctx, resource, write_data(resource, folder, seed=seed), settings)
        loaded += 1 if version else 0
        rejected += version or 0
        done.append(resource.code)
        state["resources_done"] = done
        ctx.save_point(state)
        ctx.progress(2, None, f"resources {i} / {len(RESOURCES)}: {resource.code}")
    state["resources"] = True
    ctx.save_point(state)
    return {"resources": len(RESOURCES), "loaded": loaded, "rows_rejected": rejected}


def _load(ctx: jobs.JobContext, resource: DemoResource, path: Path, settings: Any) -> int | None:
    """Load the file through the lake's own job; the rows it rejected, None if not committed."""
    from minyun.ingest import service as ingest
    from minyun.ingest.models import LoadMode

    # Queued for no runner: this job runs the load itself, in the foreground, and waits.
    foreground = jobs.Dispatcher.foreground()
    with ctx.factory(info={"jobs": foreground}) as session, session.begin():
        if catalog.get_resource(session, resource.code).lake_version is not None:
            return 0
        job = ingest.submit_load(
            session, SYSTEM, resource.code, str(path), mode=LoadMode.FULL, settings=settings
        )
        job_id = job.id
    finished = jobs.run(ctx.factory, job_id)
    if finished.state != jobs.JobState.SUCCEEDED:
        return None
    result = finished.result or {}
    return int(result.get("rows_rejected", 0))
