"""Batch exchange API: subscriptions, their deliveries, downloads and signed manifests."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from minyun.core.errors import NotFound
from minyun.core.platform import Platform
from minyun.exchange import batch
from minyun.exchange.batch_schemas import (
    BatchSubscriptionRead,
    DeliveryRead,
    SignedManifest,
    SubscriptionCreate,
)
from minyun.exchange.sinks import SinkSpec
from minyun.web.deps import ActorDep, IdPath, PlatformDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["exchange"])
MEDIA = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def folders(node: Platform) -> list[Path]:
    return batch.folder_roots(node.settings.var_dir, node.settings.exchange_folders)


@router.get("/subscriptions", response_model=list[BatchSubscriptionRead])
def subscriptions(session: SessionDep, actor: ActorDep) -> list[BatchSubscriptionRead]:
    """Your department's batch subscriptions (all of them for admins and auditors)."""
    return [BatchSubscriptionRead.of(s) for s in batch.list_subscriptions(session, actor)]


@router.post("/subscriptions", response_model=BatchSubscriptionRead, status_code=201)
def subscribe(
    body: SubscriptionCreate, session: SessionDep, actor: ActorDep, node: PlatformDep
) -> BatchSubscriptionRead:
    """Subscribe to a resource your department holds a live grant on (consumers)."""
    made = batch.subscribe(
        session, actor, resource=body.resource, mode=body.mode, purpose=body.purpose,
        every_minutes=body.every_minutes, node_key=node.node_key, folders=folders(node),
        sink=SinkSpec(body.sink.kind, body.sink.format, body.sink.folder, body.sink.dsn,
                      body.sink.table),
    )  # fmt: skip
    return BatchSubscriptionRead.of(made)


@router.get("/subscriptions/{subscription_id}", response_model=BatchSubscriptionRead)
def subscription(
    subscription_id: IdPath, session: SessionDep, actor: ActorDep
) -> BatchSubscriptionRead:
    """One subscription of your department."""
    return BatchSubscriptionRead.of(batch.access_subscription(session, actor, subscription_id))


@router.post("/subscriptions/{subscription_id}/stop", response_model=BatchSubscriptionRead)
def stop(subscription_id: IdPath, session: SessionDep, actor: ActorDep) -> BatchSubscriptionRead:
    """No more deliveries (what was delivered stays)."""
    return BatchSubscriptionRead.of(batch.stop_subscription(session, actor, subscription_id))


@router.get("/subscriptions/{subscription_id}/deliveries", response_model=list[DeliveryRead])
def deliveries(subscription_id: IdPath, session: SessionDep, actor: ActorDep) -> list[DeliveryRead]:
    """The subscription's deliveries, newest first."""
    return [DeliveryRead.of(d) for d in batch.list_deliveries(session, actor, subscription_id)]


@router.post(
    "/subscriptions/{subscription_id}/deliveries",
    response_model=DeliveryRead,
    status_code=202,
    responses={204: {"description": "nothing new to deliver"}},
)
def deliver(
    subscription_id: IdPath, session: SessionDep, actor: ActorDep, node: PlatformDep
) -> DeliveryRead | Response:
    """Deliver now what is not yet delivered (a job; follow it at /api/v1/jobs/{job_id})."""
    made = batch.request_delivery(
        session, actor, subscription_id, lake_uri=node.lake.uri, var_dir=node.settings.var_dir
    )
    if made is None:
        return Response(status_code=204)
    return DeliveryRead.of(made)


@router.get(
    "/subscriptions/{subscription_id}/deliveries/{delivery_id}", response_model=DeliveryRead
)
def delivery(
    subscription_id: IdPath, delivery_id: IdPath, session: SessionDep, actor: ActorDep
) -> DeliveryRead:
    """One delivery."""
    return DeliveryRead.of(batch.access_delivery(session, actor, subscription_id, delivery_id))


@router.get(
    "/subscriptions/{subscription_id}/deliveries/{delivery_id}/manifest",
    response_model=SignedManifest,
)
def manifest(
    subscription_id: IdPath, delivery_id: IdPath, session: SessionDep, actor: ActorDep
) -> SignedManifest:
    """The delivery's manifest (rows, checksum, versions, grant), signed with the node key."""
    found = batch.access_delivery(session, actor, subscription_id, delivery_id)
    if found.manifest is None or found.signature is None:
        raise NotFound(f"delivery {delivery_id} has no manifest yet")
    kid = session.info["node_key"].kid if "node_key" in session.info else None
    return SignedManifest(manifest=found.manifest, kid=kid, signature=found.signature)


@router.get(
    "/subscriptions/{subscription_id}/deliveries/{delivery_id}/file",
    response_class=FileResponse,
    responses={200: {"content": {v: {} for v in MEDIA.values()}}},
)
def download(
    subscription_id: IdPath,
    delivery_id: IdPath,
    session: SessionDep,
    actor: ActorDep,
    node: PlatformDep,
) -> FileResponse:
    """The delivered file, for a reader of your department with the grant still live."""
    path, found = batch.delivery_file(
        session, actor, subscription_id, delivery_id, var_dir=node.settings.var_dir
    )
    kind = path.suffix.lstrip(".")
    return FileResponse(path, media_type=MEDIA.get(kind), filename=found.file_name)
