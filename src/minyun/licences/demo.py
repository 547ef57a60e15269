"""The demo province's licence types: 23 real-world kinds over its departments' resources.

Each kind is issued by the department that provides its source resource, with fields taken
from that resource's Table Schema. The demo citizen and enterprise get rows of their own in
a few resources (upsert loads), so their wallets are not empty.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from minyun.accounts.models import AccountKind, User
from minyun.core import identifiers
from minyun.core.lake import Lake
from minyun.core.security import Principal
from minyun.demo.resources import RESOURCES, DemoResource, build_table
from minyun.licences import service
from minyun.licences.models import LicenceType

SYSTEM = Principal.system(on_behalf_of="demo")
_BY_CODE = {r.code: r for r in RESOURCES}


@dataclass(frozen=True)
class DemoType:
    code: str
    name: str
    source: str
    holder_field: str
    fields: tuple[str, ...]
    holder_name_field: str | None = None
    number_field: str | None = None
    validity: dict[str, Any] = field(default_factory=dict)

    @property
    def resource(self) -> DemoResource:
        return _BY_CODE[self.source]

    @property
    def holder_kind(self) -> str:
        column = next(c for c in self.resource.columns if c.name == self.holder_field)
        return "person" if column.format == "cn-ric" else "enterprise"

    def schema(self) -> dict[str, Any]:
        descriptor = self.resource.schema()
        wanted = [f for f in descriptor["fields"] if f["name"] in self.fields]
        return {"fields": wanted, "primaryKey": list(self.resource.primary_key)}

    def template(self) -> str:
        rows = "".join(
            f"<tr><th>{f['title']}</th><td>{{{{ {f['name']} }}}}</td></tr>"
            for f in self.schema()["fields"]
        )
        return f'<table class="licence-fields">{rows}</table>'

    def spec(self) -> service.TypeSpec:
        return service.TypeSpec(
            code=self.code, name=self.name, issuer=self.resource.provider,
            holder_kind=self.holder_kind, schema=self.schema(), source=self.source,
            holder_field=self.holder_field, holder_name_field=self.holder_name_field,
            number_field=self.number_field, validity=self.validity, template=self.template(),
        )  # fmt: skip


def _t(code: str, name: str, source: str, holder: str, *fields: str, **kw: Any) -> DemoType:
    return DemoType(code, name, source, holder, (holder, *fields), **kw)


TYPES: tuple[DemoType, ...] = (
    _t("resident-id", "居民身份证（电子证照）", "police-population-basic", "ric", "name", "sex",
       "birth_date", "address", holder_name_field="name", validity={"years": 20}),
    _t("household-move", "户口迁移证明", "police-household-moves", "ric", "record_no", "move_date",
       "from_county", "to_county", number_field="record_no",
       validity={"valid_from": "move_date"}),
    _t("marriage", "结婚证", "civil-marriage-registration", "husband_ric", "cert_no", "wife_ric",
       "reg_date", number_field="cert_no",
       validity={"valid_from": "reg_date", "revoke_when": {"kind": ["离婚"]}}),
    _t("minimum-living", "最低生活保障证", "civil-minimum-living", "ric", "name",
       "monthly_allowance", "start_date", holder_name_field="name",
       validity={"valid_from": "start_date", "years": 1}),
    _t("social-organization", "社会团体法人登记证书", "civil-social-organizations", "uscc", "name",
       "kind", "reg_date", holder_name_field="name",
       validity={"valid_from": "reg_date", "years": 5}),
    _t("business-licence", "营业执照", "amr-enterprise-registration", "uscc", "name",
       "registered_capital", "established", "industry", holder_name_field="name",
       validity={"valid_from": "established", "revoke_when": {"status": ["注销", "吊销"]}}),
    _t("food-business", "食品经营许可证", "amr-food-business-licences", "uscc", "licence_no",
       "issue_date", "expiry_date", number_field="licence_no",
       validity={"valid_from": "issue_date", "valid_until": "expiry_date"}),
    _t("tax-credit-a", "纳税信用A级纳税人证明", "tax-credit-ratings", "uscc", "year", "grade",
       validity={"years": 1, "revoke_when": {"grade": ["B", "M", "C", "D"]}}),
    _t("social-insurance", "社会保险参保证明", "hrss-social-insurance", "ric", "insurance",
       "employer_uscc", "start_date", validity={"revoke_when": {"status": ["终止参保"]}}),
    _t("unemployment", "就业失业登记证", "hrss-unemployment-registration", "ric", "reg_date",
       "county_code", validity={"valid_from": "reg_date", "years": 1}),
    _t("real-estate", "不动产权证书", "nature-real-estate-registration", "owner_ric", "cert_no",
       "county_code", "area", "reg_date", number_field="cert_no",
       validity={"valid_from": "reg_date"}),
    _t("pollutant-discharge", "排污许可证", "eco-key-polluters", "uscc", "name", "pollutant",
       "county_code", holder_name_field="name", validity={"years": 5}),
    _t("construction-qualification", "建筑业企业资质证书", "housing-construction-qualifications",
       "uscc", "qualification", "grade", "expiry_date",
       validity={"valid_until": "expiry_date"}),
    _t("provident-fund", "住房公积金缴存证明", "housing-provident-fund", "ric", "employer_uscc",
       "monthly_amount", validity={"years": 1}),
    _t("road-transport", "道路运输经营许可证", "transport-road-operation-licences", "uscc",
       "licence_no", "scope", "expiry_date", number_field="licence_no",
       validity={"valid_until": "expiry_date"}),
    _t("medical-institution", "医疗机构执业许可证", "health-institution-licences", "uscc", "name",
       "level", "beds", holder_name_field="name", validity={"years": 5}),
    _t("birth-certificate", "出生医学证明", "health-birth-certificates", "mother_ric", "cert_no",
       "child_name", "birth_date", number_field="cert_no",
       validity={"valid_from": "birth_date"}),
    _t("diploma", "学历证书", "education-diplomas", "ric", "cert_no", "degree", "grad_year",
       number_field="cert_no"),
    _t("family-farm", "家庭农场认定证书", "agri-family-farms", "uscc", "name", "area_mu", "crop",
       holder_name_field="name", validity={"years": 3}),
    _t("foreign-trade", "对外贸易经营者备案登记表", "commerce-foreign-trade-operators", "uscc",
       "record_no", "record_date", number_field="record_no",
       validity={"valid_from": "record_date"}),
    _t("customs-aeo", "海关高级认证企业证书", "customs-enterprise-credit", "uscc",
       "customs_code", "credit",
       validity={"years": 3, "revoke_when": {"credit": ["一般信用企业", "失信企业"]}}),
    _t("credit-red-list", "守信激励对象证明", "drc-credit-lists", "uscc", "list", "reason",
       "listed_on", validity={"valid_from": "listed_on", "years": 3,
                              "revoke_when": {"list": ["黑名单"]}}),
    _t("procurement-award", "中标通知书", "finance-procurement-awards", "supplier_uscc",
       "project_no", "amount", "award_date", number_field="project_no",
       validity={"valid_from": "award_date"}),
)  # fmt: skip

# The demo accounts' own rows: (resource, holder column, the account kind they belong to).
HOLDER_ROWS = (
    ("police-population-basic", "ric", AccountKind.CITIZEN),
    ("nature-real-estate-registration", "owner_ric", AccountKind.CITIZEN),
    ("education-diplomas", "ric", AccountKind.CITIZEN),
    ("hrss-social-insurance", "ric", AccountKind.CITIZEN),
    ("amr-enterprise-registration", "uscc", AccountKind.ENTERPRISE),
    ("amr-food-business-licences", "uscc", AccountKind.ENTERPRISE),
    ("transport-road-operation-licences", "uscc", AccountKind.ENTERPRISE),
)


def define_types(session: Session) -> int:
    """Define every demo licence type whose source resource is in the catalog."""
    from minyun.catalog import service as catalog

    made = 0
    for kind in TYPES:
        if catalog.find_resource(session, kind.source) is None:
            continue
        service.define_type(session, SYSTEM, kind.spec())
        made += 1
    return made


def holder_rows(session: Session, *, seed: int = 2026) -> dict[str, pa.Table]:
    """One row per resource of `HOLDER_ROWS` for the demo citizen or enterprise."""
    accounts = {
        u.kind: u
        for u in session.scalars(select(User).where(User.username.in_(["citizen", "enterprise"])))
    }
    out: dict[str, pa.Table] = {}
    for code, column, kind in HOLDER_ROWS:
        user = accounts.get(kind)
        holder = (user.ric if kind == AccountKind.CITIZEN else user.uscc) if user else None
        if holder is None:
            continue
        resource = _BY_CODE[code]
        first = build_table(resource, seed=seed).slice(0, 1).to_pylist()[0]
        first[column] = holder
        for name in ("name",):
            if name in first and user is not None:
                first[name] = user.display_name
        if kind == AccountKind.CITIZEN and column == "ric":
            # Her own birth date and sex, as her identity number says (GB 11643), so her
            # file (一人一档) shows no conflict the sample's first row would bring.
            if "birth_date" in first:
                first["birth_date"] = identifiers.ric_birth_date(holder)
            if "sex" in first:
                first["sex"] = identifiers.ric_sex(holder)
        if column not in resource.primary_key:  # a row of its own, not the sample's first
            for key in resource.primary_key:
                if isinstance(first[key], str):
                    first[key] = f"{first[key][:-6]}999999"
        if "status" in first and code == "amr-enterprise-registration":
            first["status"] = "存续"
        if "expiry_date" in first:
            first["expiry_date"] = dt.date.today().replace(year=dt.date.today().year + 3)
        out[code] = pa.Table.from_pylist([first])
    return out


def load(
    factory: sessionmaker[Session], lake: Lake, folder: Path, settings: Any, *, seed: int = 2026
) -> dict[str, Any]:
    """Define the types, add the demo holders' rows, and issue every type's licences."""
    from minyun.catalog import service as catalog
    from minyun.core import jobs
    from minyun.ingest import service as ingest
    from minyun.ingest.models import LoadMode

    with factory.begin() as session:
        types = define_types(session)
        rows = {
            code: table
            for code, table in holder_rows(session, seed=seed).items()
            if catalog.find_resource(session, code) is not None
        }
    folder.mkdir(parents=True, exist_ok=True)
    for code, table in rows.items():
        path = folder / f"holder-{code}.csv"
        pacsv.write_csv(table, path)
        foreground = jobs.Dispatcher.foreground()
        with factory(info={"jobs": foreground}) as session, session.begin():
            job_id = ingest.submit_load(
                session, SYSTEM, code, str(path), mode=LoadMode.UPSERT, settings=settings
            ).id
        jobs.run(factory, job_id)
    issued = 0
    with factory() as session:
        codes = list(session.scalars(select(LicenceType.code).order_by(LicenceType.code)))
    for code in codes:
        issued += service.issue(factory, lake, code).issued
    return {"licence_types": types, "licences_issued": issued}
