"""Divisions and organisations."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.core.errors import Conflict, Forbidden, Invalid
from minyun.core.security import Principal
from minyun.orgs import service
from minyun.orgs.models import Division, Organization
from tests.factories import SYSTEM, ensure_divisions, make_org, make_uscc


def test_packaged_divisions_load_three_levels_of_fujian(session: Session) -> None:
    ensure_divisions(session)
    levels = dict(
        session.execute(select(Division.level, func.count()).group_by(Division.level)).all()
    )
    assert levels["province"] == 1 and levels["city"] == 9 and levels["county"] >= 80
    assert {d.name for d in service.child_divisions(session, None)} == {"福建省"}
    assert "厦门市" in {d.name for d in service.child_divisions(session, "350000")}
    assert service.load_divisions(session, service.packaged_divisions()) == 0  # idempotent


def test_division_with_an_unknown_parent_or_bad_code_is_refused(session: Session) -> None:
    ensure_divisions(session)
    with pytest.raises(Invalid, match="parent"):
        service.load_divisions(
            session,
            [{"code": "350199001", "name": "某街道", "level": "township", "parent_code": "359999"}],
        )
    with pytest.raises(Invalid, match="9 digits"):
        service.load_divisions(
            session,
            [{"code": "35010200", "name": "某街道", "level": "township", "parent_code": "350102"}],
        )


def test_townships_and_villages_hang_under_counties(session: Session) -> None:
    ensure_divisions(session)
    added = service.load_divisions(
        session,
        [
            {"code": "350102001", "name": "鼓东街道", "level": "township", "parent_code": "350102"},
            {
                "code": "350102001001",
                "name": "某社区",
                "level": "village",
                "parent_code": "350102001",
            },
        ],
    )
    assert added == 2
    assert [d.code for d in service.child_divisions(session, "350102001")] == ["350102001001"]


def test_division_prefix_follows_gbt2260() -> None:
    assert service.division_prefix("350000") == "35"
    assert service.division_prefix("350100") == "3501"
    assert service.division_prefix("350110") == "350110"


def test_organisation_needs_a_valid_credit_code_and_unique_codes(session: Session) -> None:
    org = make_org(session, name="福州市大数据管理局")
    assert org.division.name == "福州市" and org.level == "city"
    bad = org.uscc[:-1] + ("0" if org.uscc[-1] != "0" else "1")
    with pytest.raises(Invalid, match="uscc"):
        service.create_organization(
            session, SYSTEM, code="x-1", name="x", uscc=bad, division_code="350100"
        )
    with pytest.raises(Conflict):
        service.create_organization(
            session, SYSTEM, code=org.code, name="x", uscc=make_uscc(99), division_code="350100"
        )


def test_only_admins_register_organisations(session: Session) -> None:
    ensure_divisions(session)
    steward = Principal(kind="user", name="s", roles=frozenset({"steward"}))
    with pytest.raises(Forbidden):
        service.create_organization(
            session, steward, code="new-1", name="新单位", uscc=make_uscc(5), division_code="350100"
        )
    assert (
        session.scalar(
            select(func.count()).select_from(Organization).where(Organization.code == "new-1")
        )
        == 0
    )


def test_listing_by_division_includes_everything_under_it(session: Session) -> None:
    fz = make_org(session, division_code="350102")
    xm = make_org(session, division_code="350200")
    viewer = Principal(kind="user", name="v")
    under_fuzhou = {
        o.code for o in service.list_organizations(session, viewer, division_code="350100")
    }
    assert fz.code in under_fuzhou and xm.code not in under_fuzhou
