"""Catalog rules: legal basis, provider-only changes, visibility, schema versions, search, audit."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.catalog import service
from minyun.catalog.models import ResourceStatus
from minyun.core.audit import AuditRecord
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from minyun.core.security import Principal
from tests import factories
from tests.factories import make_org, make_resource, make_user, person_schema


def actor_for(session: Session, *roles: str, org: Any = None) -> Principal:
    user = make_user(session, roles=list(roles), **({"organization": org} if org else {}))
    return accounts.principal_for(user)


def audit_actions(session: Session, code: str) -> list[str]:
    rows = session.scalars(
        select(AuditRecord.action).where(AuditRecord.object_id == code).order_by(AuditRecord.seq)
    )
    return list(rows)


# --- creating and the legal basis ---------------------------------------------------------


def test_steward_creates_a_draft_of_their_own_organisation_audited(session: Session) -> None:
    org = make_org(session)
    steward = actor_for(session, "steward", org=org)
    resource = service.create_resource(
        session, steward, code="amr-enterprise", name="企业登记信息", provider=org.code,
        theme="市场监管", sharing_type="unconditional", open_type="unconditional",
        schema=person_schema(),
    )  # fmt: skip
    assert resource.status == ResourceStatus.DRAFT
    assert resource.theme == "market-regulation"  # the Chinese name is accepted
    assert resource.current_schema_version == "1.0"
    assert audit_actions(session, "amr-enterprise") == ["resource.create", "resource.schema"]


@pytest.mark.parametrize(
    ("sharing", "open_"),
    [("conditional", "unconditional"), ("none", "none"), ("unconditional", "conditional")],
)
def test_a_restriction_needs_its_legal_basis(session: Session, sharing: str, open_: str) -> None:
    with pytest.raises(Invalid) as caught:
        make_resource(session, sharing_type=sharing, open_type=open_)
    assert caught.value.extra["field"] == "legal_basis"
    resource = make_resource(
        session,
        sharing_type=sharing,
        open_type=open_,
        legal_basis="《政务信息资源共享管理暂行办法》",
    )
    assert resource.legal_basis


def test_not_shared_but_open_is_refused(session: Session) -> None:
    with pytest.raises(Invalid) as caught:
        make_resource(session, sharing_type="none", open_type="unconditional", legal_basis="x")
    assert caught.value.extra["field"] == "open_type"


def test_bad_code_theme_and_duplicate_are_refused(session: Session) -> None:
    with pytest.raises(Invalid):
        make_resource(session, code="Bad Code/1")
    with pytest.raises(Invalid):
        make_resource(session, theme="astrology")
    make_resource(session, code="dup-code")
    with pytest.raises(Conflict):
        make_resource(session, code="dup-code")


def test_bad_schema_is_refused_at_creation(session: Session) -> None:
    bad = person_schema()
    bad["fields"][0]["sensitivity"] = "top"
    with pytest.raises(Invalid):
        make_resource(session, schema=bad)


def test_steward_cannot_create_for_another_organisation_and_consumer_not_at_all(
    session: Session,
) -> None:
    mine, other = make_org(session), make_org(session)
    steward = actor_for(session, "steward", org=mine)
    with pytest.raises(Forbidden) as caught:
        service.create_resource(
            session, steward, code="not-mine", name="别人的资源", provider=other.code,
            sharing_type="unconditional", open_type="unconditional",
        )  # fmt: skip
    assert caught.value.audit is not None  # the refusal is audited after rollback
    consumer = actor_for(session, "consumer", org=mine)
    with pytest.raises(Forbidden):
        service.create_resource(
            session, consumer, code="no-role", name="无权资源", provider=mine.code,
            sharing_type="unconditional", open_type="unconditional",
        )  # fmt: skip


# --- editing, publishing, retiring ----------------------------------------------------------


def test_only_the_provider_or_an_admin_edits(session: Session) -> None:
    org, other = make_org(session), make_org(session)
    resource = make_resource(session, provider=org)
    service.publish_resource(session, factories.SYSTEM, resource.code)
    outsider = actor_for(session, "steward", org=other)
    with pytest.raises(Forbidden):
        service.update_resource(session, outsider, resource.code, {"name": "改名"})
    owner = actor_for(session, "steward", org=org)
    service.update_resource(session, owner, resource.code, {"summary": "新的摘要"})
    admin = actor_for(session, "admin", org=other)
    service.update_resource(session, admin, resource.code, {"name": "管理员改名"})
    assert resource.name == "管理员改名"
    assert audit_actions(session, resource.code).count("resource.edit") == 2
    edit = session.scalars(
        select(AuditRecord).where(AuditRecord.action == "resource.edit").order_by(AuditRecord.seq)
    ).first()
    assert edit is not None and edit.detail == "changed: summary"


def test_edit_keeps_the_legal_basis_rule_and_identity(session: Session) -> None:
    resource = make_resource(session)
    with pytest.raises(Invalid):
        service.update_resource(session, factories.SYSTEM, resource.code, {"open_type": "none"})
    with pytest.raises(Invalid):
        service.update_resource(session, factories.SYSTEM, resource.code, {"code": "other"})
    service.update_resource(
        session, factories.SYSTEM, resource.code, {"open_type": "none", "legal_basis": "涉及隐私"}
    )
    assert resource.open_type == "none"


def test_publish_needs_a_schema_and_sets_the_date(session: Session) -> None:
    resource = make_resource(session, schema=None)
    with pytest.raises(Invalid) as caught:
        service.publish_resource(session, factories.SYSTEM, resource.code)
    assert caught.value.extra["field"] == "schema"
    service.set_schema(session, factories.SYSTEM, resource.code, person_schema())
    service.publish_resource(session, factories.SYSTEM, resource.code, reason="上线")
    assert resource.status == ResourceStatus.PUBLISHED and resource.publish_date is not None
    service.retire_resource(session, factories.SYSTEM, resource.code, reason="停用")
    assert resource.status == ResourceStatus.RETIRED and resource.retired_at is not None
    with pytest.raises(Conflict):
        service.update_resource(session, factories.SYSTEM, resource.code, {"name": "再改"})
    with pytest.raises(Conflict):
        service.publish_resource(session, factories.SYSTEM, resource.code)
    actions = audit_actions(session, resource.code)
    assert actions[-2:] == ["resource.publish", "resource.retire"]


# --- visibility ------------------------------------------------------------------------------


def test_drafts_are_hidden_from_other_organisations_with_the_same_error(session: Session) -> None:
    org, other = make_org(session), make_org(session)
    draft = make_resource(session, provider=org)
    outsider = actor_for(session, "consumer", org=other)
    with pytest.raises(NotFound) as hidden:
        service.access_resource(session, outsider, draft.code)
    with pytest.raises(NotFound) as missing:
        service.access_resource(session, outsider, "no-such-resource")
    assert str(hidden.value).replace(draft.code, "X") == str(missing.value).replace(
        "no-such-resource", "X"
    )
    steward = actor_for(session, "steward", org=org)
    assert service.access_resource(session, steward, draft.code) is draft
    # Membership alone shows nothing: a colleague without a data role does not see drafts.
    with pytest.raises(NotFound):
        service.access_resource(session, actor_for(session, "consumer", org=org), draft.code)
    codes = {r.code for r in service.list_resources(session, outsider)}
    assert draft.code not in codes
    with pytest.raises(Unauthenticated):  # a draft is not open data
        service.access_resource(session, Principal.anonymous(), draft.code)
    service.publish_resource(session, factories.SYSTEM, draft.code)
    assert service.access_resource(session, outsider, draft.code) is draft
    # Published and open (无条件开放): the public sees it too.
    assert service.access_resource(session, Principal.anonymous(), draft.code) is draft


# --- schema versions -------------------------------------------------------------------------


def test_schema_versions_compatible_minor_and_explicit_major(session: Session) -> None:
    resource = make_resource(session)
    code = resource.code
    same = service.set_schema(session, factories.SYSTEM, code, person_schema())
    assert same.version == "1.0"  # nothing changed: no new version
    added = copy.deepcopy(person_schema())
    added["fields"].append({"name": "phone", "type": "string"})
    assert service.set_schema(session, factories.SYSTEM, code, added).version == "1.1"
    dropped = copy.deepcopy(added)
    dropped["fields"] = [f for f in dropped["fields"] if f["name"] != "age"]
    with pytest.raises(Conflict) as caught:
        service.set_schema(session, factories.SYSTEM, code, dropped)
    assert caught.value.code == "schema-incompatible"
    assert "major" in str(caught.value) and resource.current_schema_version == "1.1"
    narrowed = copy.deepcopy(added)
    narrowed["fields"][2]["type"] = "year"
    with pytest.raises(Conflict):
        service.set_schema(session, factories.SYSTEM, code, narrowed)
    row = service.set_schema(session, factories.SYSTEM, code, dropped, major=True)
    assert (row.version, row.change) == ("2.0", "major")
    history = [s.version for s in service.schema_history(session, resource)]
    assert history == ["1.0", "1.1", "2.0"]
    assert service.access_schema(session, factories.SYSTEM, code, version="1.1").change == (
        "compatible"
    )
    assert audit_actions(session, code).count("resource.schema") == 3


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        ({"pattern": r"(a)\1"}, "RE2"),  # Python's re accepts it; DuckDB's engine does not
        ({"minimum": "abc"}, "minimum 'abc' is not a integer"),
    ],
)
def test_a_schema_every_load_would_fail_on_is_refused_when_set(
    session: Session, constraints: dict[str, Any], message: str
) -> None:
    resource = make_resource(session)
    bad = copy.deepcopy(person_schema())
    bad["fields"].append({"name": "extra", "type": "integer", "constraints": constraints})
    if "pattern" in constraints:
        bad["fields"][-1]["type"] = "string"
    with pytest.raises(Invalid, match=message) as caught:
        service.set_schema(session, factories.SYSTEM, resource.code, bad)
    assert caught.value.extra["field"] == "extra" and "'extra'" in str(caught.value)
    assert [s.version for s in service.schema_history(session, resource)] == ["1.0"]
    with pytest.raises(Invalid, match=message):
        make_resource(session, schema=bad)


# --- search ------------------------------------------------------------------------------------


def test_chinese_search_finds_substrings_on_both_backends(session: Session) -> None:
    org = make_org(session, name="福建省市场监督管理局测试")
    a = make_resource(session, provider=org, name="企业登记信息", summary="市场主体登记")
    b = make_resource(session, provider=org, name="个体工商户名录", summary="含企业字号")
    c = make_resource(session, provider=org, name="纳税信用等级", theme="finance")
    for r in (a, b, c):
        service.publish_resource(session, factories.SYSTEM, r.code)

    def found(q: str, **kw: Any) -> list[str]:
        filters = service.Filters(q=q, **kw)
        return [r.code for r in service.list_resources(session, factories.SYSTEM, filters)]

    assert found("企业登记") == [a.code]
    assert found("企业") == [a.code, b.code]  # the name match first
    assert found("企业 名录") == [b.code]  # every term must occur
    assert found("ＲＩＣ") == found("ric")  # full-width and case folded
    assert c.code in found("财税金融")  # the domain's name is searchable
    assert found("公民身份号码") != []  # and the field titles
    assert found("100%_") == []  # LIKE wildcards are literal
    assert found("企业", theme="finance") == []
    assert service.count_resources(session, factories.SYSTEM, service.Filters(q="企业")) == 2


def test_browse_counts_facets(session: Session) -> None:
    org = make_org(session)
    make_resource(session, provider=org, base_library="population")
    view = service.browse(session, factories.SYSTEM, service.Filters(provider=org.code))
    assert view.total == 1
    assert {f.code: f.count for f in view.libraries}["population"] >= 1
    assert org.code in {d.code for d in view.departments}
    assert len(view.themes) == 21
