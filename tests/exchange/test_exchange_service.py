"""Applications and grants: the rules of sharing, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.core import audit, policies
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound
from minyun.exchange import service
from minyun.exchange.models import Grant
from tests.exchange.kit import SYSTEM, later, parties, person


def _apply(session: Session, p, **over):  # type: ignore[no-untyped-def]
    values = {
        "resource": p.resource.code, "purpose": "核验申请人身份", "legal_basis": "《条例》第十条",
        "fields": ["ric", "age"], "expires_at": later(),
    }  # fmt: skip
    values.update(over)
    return service.apply(session, p.consumer, **values)


def _actions(session: Session) -> list[str]:
    return list(session.scalars(select(audit.AuditRecord.action).order_by(audit.AuditRecord.seq)))


def test_unconditional_resource_is_granted_at_once(session: Session) -> None:
    p = parties(session, sharing_type="unconditional")
    before = policies.current_epoch(session)
    application = _apply(session, p)
    assert application.status == "approved" and application.decided_by == "user:c" + str(
        p.consumer_id
    )
    [grant] = service.list_grants(session, p.consumer, side="consumer")
    assert grant.fields == ["ric", "age"] and grant.status == "active"
    assert grant.clearance == "internal" and grant.application_id == application.id
    assert policies.current_epoch(session) == before + 1
    assert _actions(session)[-2:] == ["exchange.apply", "exchange.grant"]
    # The provider sees the same grant on its side.
    assert [g.id for g in service.list_grants(session, p.approver, side="provider")] == [grant.id]


def test_conditional_resource_waits_for_the_providers_approver(session: Session) -> None:
    p = parties(session)
    application = _apply(session, p, row_filter="age >= 18")
    assert application.status == "submitted"
    assert service.list_grants(session, p.consumer) == []
    assert service.inbox_count(session, p.approver) == 1
    assert service.inbox_count(session, p.consumer) == 0
    inbox = service.list_applications(session, p.approver, side="provider", status="submitted")
    assert [a.id for a in inbox] == [application.id]
    grant = service.approve_application(
        session, p.approver, application.id, fields=["age"], row_filter="age < 60",
        clearance="public",
    )  # fmt: skip
    assert grant.fields == ["age"] and grant.row_filter == "(age >= 18) and (age < 60)"
    assert application.status == "approved" and service.inbox_count(session, p.approver) == 0
    detail = json.loads(
        session.scalars(
            select(audit.AuditRecord.detail).where(audit.AuditRecord.action == "exchange.grant")
        ).one()
        or "{}"
    )
    assert detail["fields"] == ["age"] and detail["clearance"] == "public"


def test_approval_never_gives_more_than_asked(session: Session) -> None:
    p = parties(session)
    application = _apply(session, p, fields=["age"])
    with pytest.raises(Invalid) as exc:
        service.approve_application(session, p.approver, application.id, fields=["age", "name"])
    assert exc.value.extra["field"] == "fields"
    with pytest.raises(Invalid):
        service.approve_application(session, p.approver, application.id, clearance="top")


def test_reject_needs_a_reason_and_is_final(session: Session) -> None:
    p = parties(session)
    application = _apply(session, p)
    with pytest.raises(Invalid):
        service.reject_application(session, p.approver, application.id, reason="  ")
    service.reject_application(session, p.approver, application.id, reason="用途与职责不符")
    assert application.status == "rejected" and application.decision_reason == "用途与职责不符"
    with pytest.raises(Conflict):
        service.approve_application(session, p.approver, application.id)
    with pytest.raises(Conflict):
        service.withdraw_application(session, p.consumer, application.id)


def test_not_shared_resource_cannot_be_applied_for(session: Session) -> None:
    p = parties(session, sharing_type="none")
    with pytest.raises(Invalid) as exc:
        _apply(session, p)
    assert exc.value.code == "not-shared"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"fields": []}, "fields"),
        ({"fields": ["nope"]}, "fields"),
        ({"purpose": " "}, "purpose"),
        ({"legal_basis": ""}, "legal_basis"),
        ({"row_filter": "age >= 'x'"}, "row_filter"),
        ({"row_filter": "nope = 1"}, "row_filter"),
        ({"row_filter": "age = 1; drop table grants"}, "row_filter"),
        ({"expires_at": later(-1)}, "expires_at"),
        ({"expires_at": later(5000)}, "expires_at"),
    ],
)
def test_bad_applications_are_refused_by_field(
    session: Session, over: dict[str, object], field: str
) -> None:
    p = parties(session)
    with pytest.raises(Invalid) as exc:
        _apply(session, p, **over)
    assert exc.value.extra["field"] == field


def test_only_the_providers_approvers_decide(session: Session) -> None:
    p = parties(session)
    application = _apply(session, p)
    other_approver = person(p.consumer_id, "approver", name="x")  # approver elsewhere
    with pytest.raises(Forbidden) as exc:
        service.approve_application(session, other_approver, application.id)
    assert exc.value.audit is not None and exc.value.audit.action == "exchange.approve"
    steward = person(p.provider_id, "steward", name="s")
    with pytest.raises(Forbidden):
        service.reject_application(session, steward, application.id, reason="不行")
    stranger = person(p.provider_id + 10_000, "consumer", name="z")
    with pytest.raises(NotFound):
        service.access_application(session, stranger, application.id)
    with pytest.raises(Forbidden):  # a member without the consumer role cannot apply
        service.apply(
            session, person(p.consumer_id, name="m"), resource=p.resource.code,
            purpose="x", legal_basis="y", fields=["age"], expires_at=later(),
        )  # fmt: skip


def test_own_resource_and_drafts_cannot_be_applied_for(session: Session) -> None:
    p = parties(session)
    own = person(p.provider_id, "consumer", name="o")
    with pytest.raises(Invalid):
        service.apply(
            session, own, resource=p.resource.code, purpose="x", legal_basis="y",
            fields=["age"], expires_at=later(),
        )  # fmt: skip
    catalog.retire_resource(session, SYSTEM, p.resource.code)
    with pytest.raises(Conflict):
        _apply(session, p)


def test_revoke_ends_the_grant_and_moves_the_epoch(session: Session) -> None:
    p = parties(session, sharing_type="unconditional")
    _apply(session, p)
    [grant] = service.list_grants(session, p.consumer)
    data = catalog.data_resource(session, p.resource)
    assert service.grant_verdict(session, p.consumer, policies.READ, data) is not None
    with pytest.raises(Forbidden):
        service.revoke_grant(session, p.consumer, grant.id, reason="x")
    before = policies.current_epoch(session)
    service.revoke_grant(session, p.approver, grant.id, reason="项目结束")
    assert grant.status == "revoked" and policies.current_epoch(session) == before + 1
    assert service.grant_verdict(session, p.consumer, policies.READ, data) is None
    with pytest.raises(Conflict):
        service.revoke_grant(session, p.approver, grant.id, reason="again")


def test_a_new_grant_replaces_the_old_one(session: Session) -> None:
    p = parties(session, sharing_type="unconditional")
    first = _apply(session, p, fields=["age"])
    _apply(session, p, fields=["age", "name"])
    grants = session.scalars(select(Grant).order_by(Grant.id)).all()
    assert [g.status for g in grants] == ["revoked", "active"]
    assert grants[0].application_id == first.id and grants[0].revoke_reason == (
        f"replaced by grant {grants[1].id}"
    )


def test_grant_verdict_is_deny_by_default(session: Session) -> None:
    p = parties(session, sharing_type="unconditional")
    _apply(session, p, row_filter="age > 20")
    data = catalog.data_resource(session, p.resource)
    verdict = service.grant_verdict(session, p.consumer, policies.READ, data)
    assert verdict is not None and verdict.fields == {"ric", "age"}
    assert verdict.row_filter == "age > 20" and verdict.valid_until is not None
    # Another action, a member without a data role, a citizen, another department: nothing.
    assert service.grant_verdict(session, p.consumer, policies.REJECTS, data) is None
    assert (
        service.grant_verdict(session, person(p.consumer_id, name="m"), policies.READ, data) is None
    )
    citizen = person(p.consumer_id, "consumer", name="q")
    citizen = citizen.__class__(**{**citizen.__dict__, "account_kind": "citizen"})
    assert service.grant_verdict(session, citizen, policies.READ, data) is None
    assert (
        service.grant_verdict(
            session, person(p.provider_id + 9999, "consumer"), policies.READ, data
        )
        is None
    )
    # Expired: nothing.
    grant = session.scalars(select(Grant)).one()
    grant.expires_at = later(-1)
    session.flush()
    assert service.grant_verdict(session, p.consumer, policies.READ, data) is None


def test_marketplace_lists_shared_resources_of_other_departments(session: Session) -> None:
    shared = parties(session)
    hidden = parties(session, sharing_type="none")
    offers = {o.resource.code: o for o in service.marketplace(session, shared.consumer)}
    assert shared.resource.code in offers and hidden.resource.code not in offers
    assert offers[shared.resource.code].fields == ["ric", "name", "age"]
    _apply(session, shared)
    again = {o.resource.code: o for o in service.marketplace(session, shared.consumer)}
    assert again[shared.resource.code].pending == 1
    own = service.marketplace(session, shared.approver)
    assert shared.resource.code not in {o.resource.code for o in own}
