"""Administering organisations: create with a parent, edit, pickers; every change audited."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.core.audit import AuditRecord
from minyun.core.errors import Conflict, Forbidden, Invalid
from minyun.core.security import Principal
from minyun.orgs import service
from tests.factories import SYSTEM, ensure_divisions, make_org, make_uscc


def _audit(session: Session, action: str) -> list[AuditRecord]:
    query = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
    return list(session.scalars(query))


def test_a_unit_under_a_parent_is_created_and_audited_with_its_facts(session: Session) -> None:
    dept = make_org(session, division_code="350000")
    unit = service.create_organization(
        session, SYSTEM, code="fz-unit-1", name="福州市某中心", uscc=make_uscc(4101),
        division_code="350102", parent=dept.code,
    )  # fmt: skip
    assert unit.kind == "unit" and unit.parent_id == dept.id and unit.division.name == "鼓楼区"
    record = _audit(session, "org.create")[-1]
    assert record.object_id == "fz-unit-1"
    assert json.loads(record.detail or "{}") == {
        "name": "福州市某中心", "uscc": unit.uscc, "division_code": "350102", "kind": "unit",
        "parent": dept.code,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("over", "field", "code"),
    [
        ({"division_code": "359999"}, "division_code", "unknown-division"),
        ({"division_code": "110000"}, "division_code", "unknown-division"),
        ({"uscc": "91350100M000100Y4X"}, "uscc", "invalid-uscc"),
        ({"code": "Bad Code"}, "code", "org-code"),
        ({"name": "   "}, "name", "org-name"),
        ({"parent": "no-such-org"}, "parent", "unknown-parent"),
    ],
)
def test_bad_input_names_its_field_and_writes_nothing(
    session: Session, over: dict[str, str], field: str, code: str
) -> None:
    ensure_divisions(session)
    before = len(_audit(session, "org.create"))
    values = {"code": "new-org", "name": "新单位", "uscc": make_uscc(4102),
              "division_code": "350100", **over}  # fmt: skip
    with pytest.raises(Invalid) as error:
        service.create_organization(session, SYSTEM, **values)
    assert error.value.extra["field"] == field and error.value.code == code
    assert session.scalars(select(service.Organization).where(
        service.Organization.code == values["code"])).first() is None  # fmt: skip
    assert len(_audit(session, "org.create")) == before


def test_code_and_credit_code_are_unique_each_with_its_field(session: Session) -> None:
    org = make_org(session)
    with pytest.raises(Conflict) as taken_code:
        service.create_organization(
            session, SYSTEM, code=org.code, name="x", uscc=make_uscc(4103), division_code="350100"
        )
    assert taken_code.value.extra["field"] == "code"
    with pytest.raises(Conflict) as taken_uscc:
        service.create_organization(
            session, SYSTEM, code="other-1", name="x", uscc=org.uscc, division_code="350100"
        )
    assert taken_uscc.value.extra["field"] == "uscc" and org.code in str(taken_uscc.value)


def test_edit_changes_fields_and_audits_before_and_after(session: Session) -> None:
    org = make_org(session, name="旧名称")
    parent = make_org(session)
    service.update_organization(
        session, SYSTEM, org.code, name="新名称", division_code="350200", parent=parent.code
    )
    assert org.name == "新名称" and org.division_code == "350200" and org.division.name == "厦门市"
    assert org.parent_id == parent.id
    detail = json.loads(_audit(session, "org.edit")[-1].detail or "{}")
    assert detail["fields"] == ["division_code", "name", "parent"]
    assert detail["before"] == {"division_code": "350100", "name": "旧名称", "parent": None}
    assert detail["after"] == {"division_code": "350200", "name": "新名称", "parent": parent.code}
    service.update_organization(session, SYSTEM, org.code, clear_parent=True)
    assert org.parent_id is None


def test_an_edit_that_changes_nothing_writes_no_record(session: Session) -> None:
    org = make_org(session)
    before = len(_audit(session, "org.edit"))
    service.update_organization(session, SYSTEM, org.code, name=org.name, uscc=org.uscc)
    assert len(_audit(session, "org.edit")) == before


def test_an_organisation_cannot_sit_under_itself_or_its_own_unit(session: Session) -> None:
    dept = make_org(session)
    unit = make_org(session, parent_id=dept.id)
    for parent in (dept.code, unit.code):
        with pytest.raises(Invalid) as error:
            service.update_organization(session, SYSTEM, dept.code, parent=parent)
        assert error.value.code == "parent-cycle"
    assert dept.parent_id is None


def test_edit_refuses_a_bad_credit_code_or_one_in_use(session: Session) -> None:
    org, other = make_org(session), make_org(session)
    with pytest.raises(Invalid, match="uscc"):
        service.update_organization(session, SYSTEM, org.code, uscc=org.uscc[:-1] + "#")
    with pytest.raises(Conflict):
        service.update_organization(session, SYSTEM, org.code, uscc=other.uscc)
    with pytest.raises(Invalid) as division:
        service.update_organization(session, SYSTEM, org.code, division_code="350999")
    assert division.value.extra["field"] == "division_code"


def test_only_admins_edit_organisations(session: Session) -> None:
    org = make_org(session)
    steward = Principal(kind="user", name="s", roles=frozenset({"steward"}))
    with pytest.raises(Forbidden):
        service.update_organization(session, steward, org.code, name="改名")
    admin = Principal(kind="user", name="a", roles=frozenset({"admin"}))
    service.update_organization(session, admin, org.code, name="改名")
    assert org.name == "改名"


def test_pickers_group_divisions_and_organisations_by_city(session: Session) -> None:
    fuzhou = make_org(session, division_code="350102", name="鼓楼区某局")
    province = make_org(session, division_code="350000", name="省某厅")
    divisions = service.division_groups(session, SYSTEM)
    assert [g.label for g in divisions][:2] == ["福建省", "福州市"]
    fz = divisions[1]
    assert fz.choices[0].value == "350100" and ("350102", "福州市鼓楼区") in {
        (c.value, c.label) for c in fz.choices
    }
    assert sum(len(g.choices) for g in divisions) == 94
    groups = {g.label: [c.value for c in g.choices] for g in service.organization_groups(
        session, SYSTEM)}  # fmt: skip
    assert fuzhou.code in groups["福州市"] and province.code in groups["福建省"]
