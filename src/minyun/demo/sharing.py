"""The demo's sharing story: social security applies for the police's population register,
the police's approver approves one field fewer, and the demo consumer can look people up
(`/sharing/lookup/police-population-basic`) with the masked fields masked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts.models import User
from minyun.accounts.service import principal_for
from minyun.catalog import service as catalog
from minyun.core import clock
from minyun.exchange import service as exchange
from minyun.exchange.models import Application

RESOURCE = "police-population-basic"
ASKED = ["ric", "name", "sex", "birth_date", "address"]
GIVEN = ["ric", "name", "sex", "birth_date"]  # the approver leaves out the address


def demo_sharing(session: Session) -> dict[str, Any]:
    """Apply and approve once (idempotent); nothing when the resource or accounts are missing."""
    resource = catalog.find_resource(session, RESOURCE)
    consumer = session.scalars(select(User).where(User.username == "consumer")).first()
    approver = session.scalars(select(User).where(User.username == "approver")).first()
    if resource is None or consumer is None or approver is None:
        return {"granted": 0}
    asked = session.scalars(
        select(Application.id).where(
            Application.resource_id == resource.id,
            Application.consumer_id == consumer.organization_id,
        )
    ).first()
    if asked is not None:
        return {"granted": 0}
    application = exchange.apply(
        session, principal_for(consumer), resource=RESOURCE,
        purpose="核验社会保险参保人员身份", legal_basis="《社会保险法》第五十八条",
        fields=ASKED, expires_at=clock.now() + timedelta(days=365),
    )  # fmt: skip
    grant = exchange.approve_application(
        session, principal_for(approver), application.id, fields=GIVEN, rate_limit=600,
        reason="户籍地址不在核验所需范围内",
    )  # fmt: skip
    return {"granted": 1, "grant": grant.id}
