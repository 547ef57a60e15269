"""The demo's sharing story: social security applies for the police's population register,
the police's approver approves one field fewer, the demo consumer can look people up
(`/sharing/lookup/police-population-basic`) with the masked fields masked, and its standing
order receives the register as a Parquet file (`/sharing/subscriptions`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts.models import User
from minyun.accounts.service import principal_for
from minyun.catalog import service as catalog
from minyun.core import clock
from minyun.core.keys import NodeKey
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


def demo_batch(session: Session, *, var_dir: Path, lake_uri: str) -> dict[str, Any]:
    """Social security's standing order for the register it holds a grant on: a Parquet
    file of the granted fields, delivered incrementally (the first delivery is the whole
    version), its first delivery queued as a job. Once; nothing without the grant."""
    from minyun.exchange import batch
    from minyun.exchange.batch_models import BatchSubscription
    from minyun.exchange.sinks import SinkSpec

    resource = catalog.find_resource(session, RESOURCE)
    consumer = session.scalars(select(User).where(User.username == "consumer")).first()
    node_key = session.info.get("node_key")
    if resource is None or consumer is None or not isinstance(node_key, NodeKey):
        return {"subscribed": 0}
    if session.scalars(
        select(BatchSubscription.id).where(
            BatchSubscription.resource_id == resource.id,
            BatchSubscription.consumer_id == consumer.organization_id,
        )
    ).first():
        return {"subscribed": 0}
    if not session.scalars(
        select(Application.id).where(
            Application.resource_id == resource.id,
            Application.consumer_id == consumer.organization_id,
        )
    ).first():
        return {"subscribed": 0}
    actor = principal_for(consumer)
    made = batch.subscribe(
        session, actor, resource=RESOURCE, mode="incremental",
        sink=SinkSpec("file", "parquet"), purpose="社会保险参保人员身份核验（每日批量）",
        every_minutes=24 * 60, node_key=node_key, folders=batch.folder_roots(var_dir, ""),
    )  # fmt: skip
    delivery = batch.request_delivery(session, actor, made.id, lake_uri=lake_uri, var_dir=var_dir)
    return {"subscribed": 1, "subscription": made.id, "delivery": delivery.id if delivery else None}
