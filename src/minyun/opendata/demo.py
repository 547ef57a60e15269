"""The demo's open data: two open resources in each of the 21 domains, 12 datasets on each.

Each resource is registered, published and committed to the lake in one step (columns drawn
with numpy, a few hundred to a few thousand rows; one of them `big_rows`), then opened as
twelve datasets: all rows, one per city (a row filter), and two aggregates (by city and by
category, summing a sensitive amount over groups of at least five). 42 × 12 = 504 datasets,
in a few seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.accounts.models import User
from minyun.catalog import service as catalog
from minyun.catalog.models import LoadMode, LoadState, Version
from minyun.catalog.themes import THEMES
from minyun.core import clock
from minyun.core.lake import Lake, LoadRecord
from minyun.core.security import Principal
from minyun.opendata import applications, service
from minyun.opendata.models import OpenDataset
from minyun.orgs.models import Division

SYSTEM = Principal.system(on_behalf_of="demo")
# Resources opened on conditions (有条件开放): their legal basis and the condition.
CONDITIONAL = {
    "open-public-security-1": (
        "《福建省公共数据资源开放管理办法》第十五条",
        "仅用于交通安全研究与公益用途，须经公安厅审批",
    ),
}
CITIZEN_APPLIES_FOR = "open-public-security-1"
CITY_CODES = ("350100", "350200", "350300", "350400", "350500", "350600", "350700", "350800",
              "350900")  # fmt: skip

# domain → (provider, ((resource title, what a row is, categories), …two))
CONTENT: dict[str, tuple[str, tuple[tuple[str, str, tuple[str, ...]], ...]]] = {
    "credit": (
        "fj-drc",
        (
            ("守信激励对象名单", "主体", ("A级纳税人", "海关高级认证", "守信企业")),
            ("行政许可公示", "许可", ("普通", "特许", "认可", "核准")),
        ),
    ),
    "health": (
        "fj-health",
        (
            ("医疗机构名录", "医院", ("综合医院", "中医医院", "专科医院", "社区卫生服务中心")),
            ("药品零售企业", "药店", ("连锁", "单体")),
        ),
    ),
    "employment": (
        "fj-hrss",
        (
            ("人力资源服务机构", "机构", ("经营性", "公共")),
            ("职业技能培训机构", "机构", ("民办", "公办")),
        ),
    ),
    "public-security": (
        "fj-police",
        (
            ("交通违法高发路段", "路段", ("超速", "闯红灯", "违停")),
            ("户籍办理网点", "网点", ("派出所", "便民服务站")),
        ),
    ),
    "housing": (
        "fj-housing",
        (
            ("商品房预售许可", "项目", ("住宅", "商业", "办公")),
            ("保障性住房项目", "项目", ("公租房", "保障性租赁住房")),
        ),
    ),
    "transport": (
        "fj-transport",
        (
            ("公交线路刷卡记录", "记录", ("普通卡", "老年卡", "学生卡")),
            ("道路运输经营许可", "业户", ("客运", "货运", "危险品")),
        ),
    ),
    "education": (
        "fj-education",
        (
            ("中小学校名录", "学校", ("小学", "初中", "高中", "九年一贯制")),
            ("公共图书馆", "场馆", ("省级", "市级", "县级")),
        ),
    ),
    "science": (
        "fj-drc",
        (
            ("高新技术企业名单", "企业", ("电子信息", "生物医药", "新材料")),
            ("科技成果登记", "成果", ("应用技术", "基础理论", "软科学")),
        ),
    ),
    "energy": (
        "fj-nature",
        (
            ("矿产资源开采许可", "矿区", ("金属", "非金属", "能源矿产")),
            ("充电站分布", "站点", ("公共", "专用")),
        ),
    ),
    "environment": (
        "fj-eco",
        (
            ("排污许可信息", "单位", ("重点管理", "简化管理")),
            ("地表水水质月报", "断面", ("I类", "II类", "III类", "IV类")),
        ),
    ),
    "industry-agriculture": (
        "fj-agri",
        (
            ("农民专业合作社", "合作社", ("种植", "养殖", "林业")),
            ("规模以上工业企业", "企业", ("制造业", "采矿业", "电力")),
        ),
    ),
    "commerce": (
        "fj-commerce",
        (
            ("对外贸易经营者备案", "企业", ("一般贸易", "加工贸易")),
            ("商业网点", "网点", ("商场", "超市", "便利店")),
        ),
    ),
    "finance": (
        "fj-finance",
        (
            ("政府采购中标公告", "项目", ("货物", "工程", "服务")),
            ("财政专项资金", "项目", ("教育", "农业", "交通")),
        ),
    ),
    "work-safety": (
        "fj-amr",
        (
            ("安全生产许可", "企业", ("建筑施工", "危化品", "烟花爆竹")),
            ("特种设备登记", "设备", ("电梯", "锅炉", "起重机械")),
        ),
    ),
    "market-regulation": (
        "fj-amr",
        (
            ("企业登记信息", "企业", ("有限责任公司", "股份有限公司", "个人独资")),
            ("食品经营许可", "企业", ("餐饮服务", "食品销售")),
        ),
    ),
    "social-assistance": (
        "fj-civil",
        (
            ("养老机构名录", "机构", ("公办", "民办", "公建民营")),
            ("社会救助统计", "记录", ("低保", "特困", "临时救助")),
        ),
    ),
    "legal": (
        "fj-civil",
        (
            ("律师事务所名录", "律所", ("合伙", "个人", "国资")),
            ("公证机构", "机构", ("事业", "合作制")),
        ),
    ),
    "living": (
        "fj-gov-service",
        (
            ("政务服务事项", "事项", ("行政许可", "公共服务", "行政确认")),
            ("便民服务网点", "网点", ("社区", "乡镇")),
        ),
    ),
    "weather": (
        "fj-nature",
        (
            ("气象站逐日观测", "观测", ("国家站", "区域站")),
            ("台风影响记录", "记录", ("登陆", "影响")),
        ),
    ),
    "geospatial": (
        "fj-nature",
        (
            ("地名信息", "地名", ("自然地理", "居民点", "交通设施")),
            ("地质灾害隐患点", "隐患点", ("滑坡", "崩塌", "泥石流")),
        ),
    ),
    "organizations": (
        "fj-civil",
        (
            ("社会组织名录", "组织", ("社会团体", "民办非企业", "基金会")),
            ("事业单位名录", "单位", ("公益一类", "公益二类")),
        ),
    ),
}


def _schema() -> dict[str, Any]:
    def f(name: str, type_: str, title: str, sensitivity: str = "public") -> dict[str, Any]:
        return {"name": name, "type": type_, "title": title, "sensitivity": sensitivity}

    return {
        "fields": [
            f("id", "string", "编号"), f("name", "string", "名称"), f("city", "string", "城市"),
            f("county_code", "string", "行政区划代码"), f("category", "string", "类别"),
            f("date", "date", "日期"), f("value", "number", "数值"), f("count", "integer", "数量"),
            f("amount", "number", "金额", "sensitive"),
        ],
        "primaryKey": ["id"],
    }  # fmt: skip


def _table(code: str, noun: str, categories: tuple[str, ...], rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    cities = rng.integers(0, 9, rows)
    city_names = np.array(["福州市", "厦门市", "莆田市", "三明市", "泉州市", "漳州市", "南平市",
                           "龙岩市", "宁德市"])  # fmt: skip
    county = np.array([f"{c[:4]}{n:02d}" for c in CITY_CODES for n in range(2, 5)])
    cat = rng.integers(0, len(categories), rows)
    idx = np.arange(rows)
    ids = np.char.add(f"{code[:12]}-", idx.astype(str))
    names = np.char.add(np.char.add(city_names[cities], np.array(categories)[cat]), noun)
    return pa.table({
        "id": pa.array(ids), "name": pa.array(np.char.add(names, idx.astype(str))),
        "city": pa.array(city_names[cities]), "county_code": pa.array(county[cities * 3 + idx % 3]),
        "category": pa.array(np.array(categories)[cat]),
        "date": pa.array(np.datetime64("2020-01-01") + rng.integers(0, 2000, rows), pa.date32()),
        "value": pa.array(np.round(rng.gamma(2.0, 50.0, rows), 2)),
        "count": pa.array(rng.integers(1, 500, rows)),
        "amount": pa.array(np.round(rng.gamma(2.0, 5000.0, rows), 2)),
    })  # fmt: skip


def _commit(session: Session, lake: Lake, code: str, table: pa.Table) -> None:
    resource = catalog.get_resource(session, code)
    version = Version(resource_id=resource.id, mode=LoadMode.FULL, source="demo", source_kind="parquet",
                      loaded_by=SYSTEM.label, schema_version=resource.current_schema_version)  # fmt: skip
    session.add(version)
    session.flush()
    load = LoadRecord(load_id=version.id, rows_read=table.num_rows, rows_accepted=table.num_rows)
    number = lake.commit_rows(code, load, mode="full", data=pa.RecordBatchReader.from_batches(
        table.schema, table.to_batches(max_chunksize=200_000)))  # fmt: skip
    version.lake_version = number
    version.state = LoadState.COMMITTED
    version.rows_read = version.rows_accepted = table.num_rows
    version.committed_at = clock.now()
    resource.lake_version = number
    resource.row_count = table.num_rows


def load(session: Session, lake: Lake, *, seed: int = 2026, big_rows: int = 20_000) -> int:
    """Register, load and open the demo's open resources; the datasets made (idempotent)."""
    cities = {
        d.code: d.name
        for d in session.scalars(select(Division).where(Division.code.in_(CITY_CODES)))
    }
    existing = set(session.scalars(select(OpenDataset.name)))
    made = 0
    for t, theme in enumerate(THEMES):
        provider, items = CONTENT[theme.code]
        for i, (title, noun, categories) in enumerate(items):
            code = f"open-{theme.code}-{i + 1}"
            if catalog.find_resource(session, code) is None:
                terms = CONDITIONAL.get(code)
                catalog.create_resource(
                    session, SYSTEM, code=code, name=title, provider=provider, theme=theme.code,
                    summary=f"{theme.zh}领域开放数据：{title}", sharing_type="unconditional",
                    open_type="conditional" if terms else "unconditional",
                    legal_basis=terms[0] if terms else None,
                    open_condition=terms[1] if terms else None,
                    update_cycle="monthly", schema=_schema(),
                )  # fmt: skip
                catalog.publish_resource(session, SYSTEM, code)
                rows = (
                    big_rows
                    if (theme.code, i) == ("transport", 0)
                    else 200 + (t * 97 + i * 401) % 1800
                )
                _commit(session, lake, code, _table(code, noun, categories, rows, seed + t * 2 + i))
            made += _open_all(session, code, title, theme.code, categories, cities, existing)
    _citizen_applies(session)
    return made


def _citizen_applies(session: Session) -> None:
    """The demo citizen (when the accounts are loaded) waits for the police's approver (开放申请)."""
    user = session.scalars(select(User).where(User.username == "citizen")).first()
    if user is None:
        return
    actor = accounts.principal_for(user)
    if any(a.dataset.name == CITIZEN_APPLIES_FOR for a in applications.mine(session, actor)):
        return
    applications.apply(session, actor, CITIZEN_APPLIES_FOR,
                       purpose="研究全省交通违法高发路段的分布，改进导航软件的安全提示")  # fmt: skip


def _open_all(
    session: Session, code: str, title: str, domain: str, categories: tuple[str, ...],
    cities: dict[str, str], existing: set[str],
) -> int:  # fmt: skip
    base: dict[str, Any] = {"domain": domain, "frequency": "monthly", "licence": "cc-by-4.0",
            "temporal_start": dt.date(2020, 1, 1), "temporal_end": dt.date(2025, 6, 23)}  # fmt: skip
    shown = ["id", "name", "city", "county_code", "category", "date", "value", "count"]
    sums = [{"fn": "count", "name": "records"}, {"fn": "sum", "field": "value", "name": "value"},
            {"fn": "sum", "field": "amount", "name": "amount"}]  # fmt: skip
    wanted: list[tuple[str, dict[str, Any]]] = [
        (code, {"title": title, "fields": shown, "spatial": ["350000"],
                "tags": [title[:2], *categories[:2]], "description": f"全省{title}。"}),
        (f"{code}-by-city", {"title": f"{title}（按城市汇总）", "fields": ["city"], "aggregates": sums,
                             "min_group": 5, "spatial": ["350000"], "tags": [title[:2], "统计"],
                             "description": f"{title}按城市统计的记录数、数值与金额合计。"}),
        (f"{code}-by-category", {"title": f"{title}（按类别汇总）", "fields": ["category"],
                                 "aggregates": sums, "min_group": 5, "spatial": ["350000"],
                                 "tags": [title[:2], "统计"],
                                 "description": f"{title}按类别统计。"}),
    ]  # fmt: skip
    for city_code, city in sorted(cities.items()):
        wanted.append((f"{code}-{city_code}", {
            "title": f"{city}{title}", "fields": shown, "row_filter": f"city = '{city}'",
            "spatial": [city_code], "tags": [title[:2], city, *categories[:1]],
            "description": f"{city}的{title}。"}))  # fmt: skip
    made = 0
    for name, values in wanted:
        if name in existing:
            continue
        service.open_dataset(session, SYSTEM, code, name=name, **base, **values)
        made += 1
    return made
