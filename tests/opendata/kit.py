"""An open resource with lake data for the open-data tests: enterprises of three cities."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource
from minyun.core.lake import Lake
from minyun.core.security import Principal
from minyun.orgs.models import Organization
from tests import factories

SYSTEM = Principal.system()
CITIES = ["福州市", "厦门市", "泉州市"]


def schema() -> dict[str, Any]:
    return {
        "fields": [
            {"name": "uscc", "type": "string", "title": "统一社会信用代码", "sensitivity": "public"},
            {"name": "name", "type": "string", "title": "企业名称", "sensitivity": "public"},
            {"name": "city", "type": "string", "title": "城市", "sensitivity": "public"},
            {"name": "established", "type": "date", "title": "成立日期", "sensitivity": "public"},
            {"name": "capital", "type": "integer", "title": "注册资本", "sensitivity": "sensitive"},
            {"name": "rep_ric", "type": "string", "title": "法定代表人身份号码",
             "sensitivity": "secret"},
        ],
        "primaryKey": ["uscc"],
    }  # fmt: skip


def enterprises(n: int, *, start: int = 0) -> pa.Table:
    ids = range(start, start + n)
    return pa.table(
        {
            "uscc": [f"91350100MA{i:08d}" for i in ids],
            "name": [f"福建{CITIES[i % 3][:2]}企业登记测试{i}有限公司" for i in ids],
            "city": [CITIES[i % 3] for i in ids],
            "established": [date(2000, 1, 1) + timedelta(days=i) for i in ids],
            "capital": pa.array([100 * (i + 1) for i in ids], pa.int64()),
            "rep_ric": [f"35010019800101{i:04d}" for i in ids],
        }
    )


@dataclass
class Open:
    resource: Resource
    provider: Organization
    steward: Principal


def steward_of(org: Organization) -> Principal:
    return Principal(kind="user", name=f"steward{org.id}", organization_id=org.id,
                     roles=frozenset({"steward"}), account_kind="staff")  # fmt: skip


def open_resource(
    session: Session, lake: Lake, *, n: int = 30, open_type: str = "unconditional", **over: Any
) -> Open:
    """A published resource with one lake version of `n` enterprises."""
    org = factories.make_org(session)
    values: dict[str, Any] = {"schema": schema(), "open_type": open_type,
                              "name": "企业登记信息", "theme": "market-regulation"}  # fmt: skip
    if open_type != "unconditional":
        values["legal_basis"] = "《公共数据开放条例》"
    values.update(over)
    resource = factories.make_resource(session, provider=org, **values)
    catalog.publish_resource(session, SYSTEM, resource.code)
    write_deltalake(lake.table_uri(resource.code), enterprises(n), mode="overwrite")
    resource.lake_version = 0
    session.flush()
    return Open(resource, org, steward_of(org))


def new_version(session: Session, lake: Lake, resource: Resource, table: pa.Table) -> None:
    write_deltalake(lake.table_uri(resource.code), table, mode="overwrite")
    resource.lake_version = (resource.lake_version or 0) + 1
    session.flush()


@dataclass
class Portal:
    """Datasets of two publishers, one conditional, and a closed resource, for the API tests."""

    ents: str  # all 30 enterprises, public fields
    fuzhou: str  # the ten of 福州市
    sums: str  # capital summed by city (a sensitive field, aggregated)
    conditional: str
    closed_code: str  # a resource not open at all
    ents_key: str


def portal(session: Session, lake: Lake) -> Portal:
    from minyun.opendata import service

    a = open_resource(session, lake)
    b = open_resource(session, lake, theme="finance", name="注册资本统计")
    c = open_resource(session, lake, open_type="conditional", sharing_type="conditional")
    closed = open_resource(session, lake, open_type="none", sharing_type="conditional")
    public = ["uscc", "name", "city", "established"]
    ents = service.open_dataset(
        session, a.steward, a.resource.code, name="ents", title="企业登记信息",
        description="全省企业登记基本信息", tags=["企业", "登记"], fields=public,
        frequency="monthly", spatial=["350000"], temporal_start=date(2000, 1, 1),
    )  # fmt: skip
    service.open_dataset(
        session, a.steward, a.resource.code, name="ents-fz", title="福州市企业登记信息",
        tags=["企业", "福州"], fields=public, row_filter="city = '福州市'", spatial=["350100"],
    )  # fmt: skip
    service.open_dataset(
        session, b.steward, b.resource.code, name="capital-by-city", title="各市注册资本合计",
        tags=["统计"], fields=["city"], domain="finance", licence="cc0-1.0", min_group=5,
        aggregates=[{"fn": "sum", "field": "capital", "name": "capital"},
                    {"fn": "count", "name": "enterprises"}],
    )  # fmt: skip
    service.open_dataset(
        session, c.steward, c.resource.code, name="cond", title="有条件开放的企业名录",
        fields=public,
    )  # fmt: skip
    return Portal("ents", "ents-fz", "capital-by-city", "cond", closed.resource.code, ents.key)
