"""Departments, people and a shared resource for the exchange tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource
from minyun.core import clock
from minyun.core.security import Principal
from tests import factories

SYSTEM = Principal.system()


@dataclass(frozen=True)
class Parties:
    resource: Resource
    provider_id: int
    consumer_id: int
    consumer: Principal  # a consumer user of the consumer department
    approver: Principal  # an approver of the provider


def person(org_id: int, *roles: str, name: str = "u") -> Principal:
    return Principal(
        kind="user", name=f"{name}{org_id}", organization_id=org_id, roles=frozenset(roles),
        account_kind="staff",
    )  # fmt: skip


def later(days: int = 30) -> datetime:
    return clock.now() + timedelta(days=days)


def parties(session: Session, *, sharing_type: str = "conditional") -> Parties:
    """A published resource (ric sensitive+masked, name sensitive, age internal) of a provider."""
    provider = factories.make_org(session)
    consumer = factories.make_org(session)
    over: dict[str, object] = {
        "sharing_type": sharing_type, "open_type": "none",
        "legal_basis": "《政务信息资源共享管理暂行办法》",
    }  # fmt: skip
    resource = factories.make_resource(session, provider=provider, **over)
    catalog.publish_resource(session, SYSTEM, resource.code)
    return Parties(
        resource, provider.id, consumer.id,
        person(consumer.id, "consumer", name="c"), person(provider.id, "approver", name="a"),
    )  # fmt: skip
