"""The named access policies, one by one, and the plans they give (core.policies)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from minyun.core import policies
from minyun.core.errors import Forbidden, Invalid, Unauthenticated
from minyun.core.policies import (
    DataResource,
    FieldFacts,
    Treatment,
    Verdict,
    field_plans,
    manages,
)
from minyun.core.security import Principal, authorize

PROVIDER = 7
RESOURCE = DataResource(
    id=1,
    code="ppl",
    provider_id=PROVIDER,
    status="published",
    sharing_type="conditional",
    open_type="none",
    fields=(
        FieldFacts("id", "public"),
        FieldFacts("name", "internal", "name"),
        FieldFacts("ric", "sensitive", "keep(6,4)"),
        FieldFacts("phone", "secret", "keep(3,4)"),
        FieldFacts("note", "secret"),
    ),
    primary_key=("id",),
    schema_version="1.0",
    lake_version=0,
)


def user(*roles: str, org: int | None = PROVIDER, kind: str = "staff") -> Principal:
    return Principal(
        kind="user", name="u", organization_id=org, roles=frozenset(roles), account_kind=kind
    )


def client(*scopes: str, org: int = PROVIDER) -> Principal:
    return Principal(kind="client", name="mc_x", organization_id=org, scopes=frozenset(scopes))


def treatments(plan: policies.AccessPlan) -> dict[str, str]:
    return {f.name: str(f.treatment) for f in plan.fields}


def test_admin_reads_every_resource_in_clear_up_to_internal(session: Session) -> None:
    plan = authorize(session, user("admin", org=None), policies.READ, resource=RESOURCE)
    assert plan.policy == "admin"
    assert treatments(plan) == {
        "id": "clear", "name": "clear", "ric": "mask", "phone": "mask", "note": "drop",
    }  # fmt: skip
    assert plan.masked == {"ric": "keep(6,4)", "phone": "keep(3,4)"}


def test_the_providers_steward_reads_everything_in_clear(session: Session) -> None:
    plan = authorize(session, user("steward"), policies.READ, resource=RESOURCE)
    assert plan.policy == "provider-steward" and plan.clear == {f.name for f in RESOURCE.fields}


def test_a_member_without_a_data_role_reads_nothing(session: Session) -> None:
    for member in (user(), user("approver"), user("auditor"), user("consumer")):
        with pytest.raises(Forbidden) as refused:
            authorize(session, member, policies.READ, resource=RESOURCE, purpose="看看")
        assert refused.value.audit.action == policies.READ
        assert refused.value.audit.outcome == "denied" and refused.value.audit.purpose == "看看"


def test_a_steward_of_another_department_reads_nothing(session: Session) -> None:
    with pytest.raises(Forbidden):
        authorize(session, user("steward", org=PROVIDER + 1), policies.READ, resource=RESOURCE)


def test_the_providers_client_needs_the_read_scope(session: Session) -> None:
    plan = authorize(session, client("resource.read"), policies.READ, resource=RESOURCE)
    assert plan.policy == "provider-client"
    assert treatments(plan)["ric"] == "clear" and treatments(plan)["phone"] == "mask"
    for scopes in (("org.read",), ("resource.load",), ()):
        with pytest.raises(Forbidden):
            authorize(session, client(*scopes), policies.READ, resource=RESOURCE)
    with pytest.raises(Forbidden):  # rejects are for the client that loads
        authorize(session, client("resource.read"), policies.REJECTS, resource=RESOURCE)
    loader = authorize(session, client("resource.load"), policies.REJECTS, resource=RESOURCE)
    assert loader.policy == "provider-client"
    with pytest.raises(Forbidden):
        authorize(session, client("resource.load"), policies.READ, resource=RESOURCE)


def test_another_departments_client_with_the_scope_reads_nothing(session: Session) -> None:
    with pytest.raises(Forbidden):
        authorize(session, client("resource.read", org=99), policies.READ, resource=RESOURCE)


def test_anonymous_is_asked_to_sign_in(session: Session) -> None:
    with pytest.raises(Unauthenticated):
        authorize(session, Principal.anonymous(), policies.READ, resource=RESOURCE)


def test_a_data_read_is_never_decided_by_role_or_scope_alone(session: Session) -> None:
    for actor in (user("admin"), client("resource.read")):
        with pytest.raises(Forbidden):
            authorize(session, actor, policies.READ, target="ppl")


def test_grant_and_open_data_plug_points(session: Session) -> None:
    consumer = user("consumer", org=42)

    def grant(s: Session, actor: Principal, action: str, r: DataResource) -> Verdict | None:
        if actor.organization_id == 42 and action == policies.READ:
            return Verdict(
                "grant", "sensitive", fields=frozenset({"id", "ric"}), row_filter="id < 5"
            )
        return None

    policies.GRANTS.register(grant)
    try:
        plan = authorize(session, consumer, policies.READ, resource=RESOURCE, purpose="社保核验")
        assert plan.policy == "grant" and plan.visible == ["id", "ric"]
        assert plan.row_filter is not None and plan.purpose == "社保核验"
    finally:
        policies.GRANTS.checks.remove(grant)
    with pytest.raises(Forbidden):
        authorize(session, consumer, policies.READ, resource=RESOURCE)


def test_clearance_masks_above_and_drops_without_a_mask() -> None:
    plans = field_plans(RESOURCE, Verdict("x", "public"))
    assert [(p.name, p.treatment) for p in plans] == [
        ("id", Treatment.CLEAR), ("name", Treatment.MASK), ("ric", Treatment.MASK),
        ("phone", Treatment.MASK), ("note", Treatment.DROP),
    ]  # fmt: skip
    assert [p.mask for p in plans] == [None, "name", "keep(6,4)", "keep(3,4)", None]


def test_filters_and_sorts_only_on_fields_shown_in_clear(session: Session) -> None:
    plan = authorize(session, user("admin", org=None), policies.READ, resource=RESOURCE)
    plan.require_clear(["id", "name"], what="filter")
    with pytest.raises(Forbidden) as masked:
        plan.require_clear(["ric"], what="filter")
    assert masked.value.code == "field-not-clear"
    with pytest.raises(Invalid) as dropped:  # a dropped field is unknown: its name is not told
        plan.require_clear(["note"], what="sort")
    assert "unknown field 'note'" in str(dropped.value)
    with pytest.raises(Invalid):
        plan.fields_for(["id", "note"])


def test_manages_needs_a_role_or_the_providers_client() -> None:
    assert manages(user("admin", org=None), PROVIDER)
    assert manages(user("steward"), PROVIDER)
    assert not manages(user(), PROVIDER)
    assert not manages(user("steward", org=PROVIDER + 1), PROVIDER)
    assert manages(client(), PROVIDER) and not manages(client(org=1), PROVIDER)
    assert manages(Principal.system(), None)


def test_audience_of_metadata() -> None:
    assert policies.audience(user()) == "internal"
    assert policies.audience(client()) == "internal"
    assert policies.audience(user(kind="citizen", org=None)) == "open"
    assert policies.audience(user(kind="enterprise", org=None)) == "open"
    assert policies.audience(Principal.anonymous()) == "open"


def test_a_plan_that_shows_no_field_is_refused(session: Session) -> None:
    def nothing(s: Session, actor: Principal, action: str, r: DataResource) -> Verdict | None:
        return Verdict("grant", "public", fields=frozenset({"note"}))  # note: secret, no mask

    policies.GRANTS.register(nothing)
    try:
        with pytest.raises(Forbidden) as refused:
            authorize(session, user("consumer", org=42), policies.READ, resource=RESOURCE)
        assert "no field" in str(refused.value) and refused.value.audit.outcome == "denied"
    finally:
        policies.GRANTS.checks.remove(nothing)
