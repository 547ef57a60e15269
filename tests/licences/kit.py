"""A business registration resource of a market regulator and its 营业执照 licence type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.ingest.models import LoadMode
from minyun.licences import service
from minyun.orgs.models import Organization
from tests.ingest import loadkit

SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "uscc", "type": "string", "format": "cn-uscc", "title": "统一社会信用代码",
         "constraints": {"required": True}},
        {"name": "name", "type": "string", "title": "名称", "constraints": {"required": True}},
        {"name": "legal_person", "type": "string", "title": "法定代表人", "sensitivity": "sensitive"},
        {"name": "reg_date", "type": "date", "title": "成立日期"},
        {"name": "status", "type": "string", "title": "登记状态",
         "constraints": {"enum": ["存续", "注销"]}},
    ],
    "primaryKey": ["uscc"],
}  # fmt: skip
COLUMNS = [f["name"] for f in SCHEMA["fields"]]
TYPE_SCHEMA: dict[str, Any] = {
    "fields": [f for f in SCHEMA["fields"] if f["name"] != "status"],
    "primaryKey": ["uscc"],
}


def row(n: int, **over: Any) -> dict[str, Any]:
    values = {"uscc": loadkit.uscc(n), "name": f"闽云测试{n}有限公司", "legal_person": f"法人{n}",
              "reg_date": f"2020-01-{1 + n % 28:02d}", "status": "存续"}  # fmt: skip
    values.update(over)
    return values


def registrations(node: Platform) -> tuple[str, Principal, Organization]:
    """The resource, a steward of its department, and the department."""
    code, steward = loadkit.make_resource(node, descriptor=SCHEMA)
    with unit_of_work(node.factory) as session:
        org = session.get(Organization, steward.organization_id)
        assert org is not None
        session.expunge(org)
    return code, steward, org


def load(node: Platform, steward: Principal, code: str, tmp: Path, rows: list[dict[str, Any]],
         mode: LoadMode = LoadMode.FULL) -> None:  # fmt: skip
    path = tmp / f"load-{mode}-{len(list(tmp.glob('load-*')))}.csv"
    loadkit.write_csv(path, rows, columns=COLUMNS)
    done = loadkit.load(node, steward, code, path, mode=mode)
    assert done.state == "succeeded", (done.state, done.error, done.result)


def define(node: Platform, steward: Principal, org: Organization, code: str,
           type_code: str = "business-licence", **over: Any) -> None:  # fmt: skip
    values: dict[str, Any] = dict(
        code=type_code, name="营业执照", issuer=org.code, holder_kind="enterprise",
        schema=TYPE_SCHEMA, source=code, holder_field="uscc", holder_name_field="name",
        validity={"valid_from": "reg_date", "revoke_when": {"status": ["注销"]}},
        template="<h3>{{ name }}</h3><p>{{ uscc }}</p>",
    )  # fmt: skip
    values.update(over)
    with unit_of_work(node.factory) as session:
        service.define_type(session, steward, service.TypeSpec(**values))


def issue(node: Platform, type_code: str = "business-licence") -> service.Tally:
    return service.issue(node.factory, node.lake, type_code)
