"""Batch exchange (批量交换): subscriptions that deliver a granted resource to a sink, as jobs.

A consumer department subscribes to a resource it holds a live grant on: full (the whole
granted part each time) or incremental (the net change between the last delivered lake
version and the newest, from the lake's Change Data Feed), on a schedule or on demand, to a
sink (`exchange.sinks`): a downloadable file, a folder, or a table in its own PostgreSQL or
MariaDB database.

Each delivery carries the versions (from, to] of one subscription, is one `exchange.batch`
job, and happens once: a delivery row is unique per subscription and range, its job is
keyed by it, and the sink writes it idempotently (a file renamed into place under the
delivery's name; a database table changed with its ledger row in one transaction). A run
that died anywhere is run again and finishes the same delivery, with nothing twice.

The rows are read with the subscriber's rights of the moment the job runs: its access plan
from `core.security.authorize` (the grant policy: fields, masks, row filter — exactly as an
online call), handed to the lake's reader. A revoked or expired grant refuses the delivery
(audited, nothing written). The read is audited before any row leaves; the manifest (rows,
checksum, versions, grant, fields) is signed with the node key.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts.models import ApiClient, User
from minyun.accounts.service import principal_for
from minyun.catalog import service as catalog
from minyun.core import audit, clock, jobs, policies
from minyun.core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    Unauthenticated,
)
from minyun.core.keys import NodeKey
from minyun.core.lake import Lake
from minyun.core.policies import AccessPlan
from minyun.core.reading import reader_secret
from minyun.core.security import Principal, authorize
from minyun.core.uow import unit_of_work
from minyun.exchange import sinks
from minyun.exchange.batch_models import (
    BatchDelivery,
    BatchSubscription,
    DeliveryMode,
    DeliveryState,
    SinkKind,
)
from minyun.exchange.sinks import Batch, DatabaseSink, FileSink, Receipt, SinkSpec

log = logging.getLogger(__name__)

KIND = "exchange.batch"
MANIFEST_TYPE = "minyun.batch-delivery/1"
MIN_EVERY = 5  # minutes
MAX_EVERY = 31 * 24 * 60
# A delivery not yet done: asking again runs it again (same range, same name in the sink).
PENDING = (
    DeliveryState.QUEUED, DeliveryState.RUNNING, DeliveryState.FAILED, DeliveryState.REFUSED,
)  # fmt: skip
_GRANT = re.compile(r"grant=(\d+)")


# --- who -------------------------------------------------------------------------------------


def owner_facts(actor: Principal) -> dict[str, Any]:
    """What a subscription keeps of its owner, to read later with the owner's rights."""
    return {
        "kind": actor.kind, "name": actor.name, "user_id": actor.user_id,
        "organization_id": actor.organization_id, "roles": sorted(actor.roles),
        "scopes": sorted(actor.scopes), "account_kind": actor.account_kind,
    }  # fmt: skip


def current_owner(session: Session, facts: dict[str, Any]) -> Principal | None:
    """The owner with its rights of now; None once its account is disabled or revoked."""
    snapshot = Principal(
        kind=str(facts["kind"]), name=str(facts["name"]), user_id=facts.get("user_id"),
        organization_id=facts.get("organization_id"), roles=frozenset(facts.get("roles") or ()),
        scopes=frozenset(facts.get("scopes") or ()), account_kind=facts.get("account_kind"),
    )  # fmt: skip
    if snapshot.kind == "user":
        user = session.get(User, snapshot.user_id) if snapshot.user_id is not None else None
        return principal_for(user) if user is not None and user.active else None
    if snapshot.kind == "client" and not snapshot.name.startswith("batch:"):
        client = session.scalars(select(ApiClient).where(ApiClient.client_id == snapshot.name))
        found = client.first()
        if found is None or not found.active:
            return None
        held = frozenset(found.scopes or ()) & snapshot.scopes
        return replace(snapshot, organization_id=found.organization_id, scopes=held)
    return snapshot


def department_reader(organization_id: int, code: str) -> Principal:
    """A department's stand-in reader for a subscription made from the CLI: what its own
    API client with `resource.read` would read (the grants it holds)."""
    return Principal(
        kind="client", name=f"batch:{code}", organization_id=organization_id,
        scopes=frozenset({policies.READ}),
    )  # fmt: skip


def _oversees(actor: Principal) -> bool:
    return actor.kind == "system" or actor.has_role("admin", "auditor")


def access_subscription(
    session: Session, actor: Principal, subscription_id: int
) -> BatchSubscription:
    """The subscription if it is the actor's department's (or the actor oversees all)."""
    authorize(session, actor, "exchange.read")
    found = session.get(BatchSubscription, subscription_id)
    if found is None or not (_oversees(actor) or actor.organization_id == found.consumer_id):
        # Same error for missing and another department's.
        raise NotFound(f"no subscription {subscription_id}")
    return found


def access_delivery(
    session: Session, actor: Principal, subscription_id: int, delivery_id: int
) -> BatchDelivery:
    """One delivery of a subscription the actor may see."""
    subscription = access_subscription(session, actor, subscription_id)
    found = session.get(BatchDelivery, delivery_id)
    if found is None or found.subscription_id != subscription.id:
        raise NotFound(f"no delivery {delivery_id}")
    return found


def plan_for(
    session: Session, owner: Principal | None, subscription: BatchSubscription
) -> AccessPlan:
    """The owner's plan for the resource, which must come from a live grant: the same plan
    (fields, masks, row filter) an online call of the owner gets."""
    code = subscription.resource.code
    if owner is None:
        raise _refused(Principal.system(), code, subscription, "the subscriber's account is gone")
    plan = catalog.access_data(session, owner, code, policies.READ, purpose=subscription.purpose)
    if plan.policy != "grant":
        raise plan.refusal(
            Forbidden(f"{code} is read through no grant of this department", code="no-grant")
        )
    return plan


def _refused(
    actor: Principal, code: str, subscription: BatchSubscription | None, why: str
) -> Forbidden:
    error = Forbidden(why)
    error.audit = audit.Pending(
        actor=actor, action=policies.READ, target=code, target_type="resource",
        purpose=subscription.purpose if subscription is not None else None,
        outcome=audit.Outcome.DENIED, detail=why,
    )  # fmt: skip
    return error


# --- subscribing -----------------------------------------------------------------------------


def folder_roots(var_dir: Path, configured: str) -> list[Path]:
    """The folders a folder sink may write under (`MINYUN_EXCHANGE_FOLDERS`, else var/outbox)."""
    roots = [Path(p) for p in configured.split(":") if p.strip()] if configured else []
    return roots or [var_dir / "outbox"]


def subscribe(
    session: Session,
    actor: Principal,
    *,
    resource: str,
    mode: str,
    sink: SinkSpec,
    purpose: str,
    every_minutes: int | None,
    node_key: NodeKey,
    folders: Sequence[Path],
    owner: Principal | None = None,
) -> BatchSubscription:
    """A department's standing order for a resource it holds a live grant on (consumers)."""
    authorize(session, actor, "exchange.apply", target=resource, target_type="resource")
    owner = owner or actor
    purpose = (purpose or "").strip()
    if not purpose or len(purpose) > 2000:
        raise Invalid("give the purpose (at most 2000 characters)", field="purpose")
    if mode not in {str(m) for m in DeliveryMode}:
        raise Invalid("mode is full or incremental", field="mode")
    if every_minutes is not None and not MIN_EVERY <= every_minutes <= MAX_EVERY:
        raise Invalid(f"deliver every {MIN_EVERY} minutes to 31 days", field="every_minutes")
    try:
        checked = sinks.check_spec(sink, folder_roots=folders)
        if checked.dsn is not None:
            sinks.reach(checked.kind, checked.dsn)
    except sinks.SinkError as exc:
        exc.audit = audit.Pending(
            actor=actor, action="exchange.subscribe", target=resource, target_type="resource",
            outcome=audit.Outcome.DENIED, detail=str(exc),
        )  # fmt: skip
        raise
    found = catalog.access_resource(session, owner, resource)
    made = BatchSubscription(
        consumer_id=owner.organization_id or 0, resource_id=found.id, owner=owner_facts(owner),
        purpose=purpose, mode=mode, every_minutes=every_minutes, sink_kind=checked.kind,
        sink_format=checked.format, sink_target=checked.folder, sink_table=checked.table,
        created_by=actor.label,
        next_due_at=clock.now() if every_minutes is not None else None,
    )  # fmt: skip
    if checked.dsn is not None:
        made.sink_target = sinks.public_dsn(checked.dsn)
        made.sink_sealed = sinks.seal(checked.dsn, node_key)
    made.resource = found
    plan = plan_for(session, owner, made)  # a live grant, and a key for incremental
    if owner.organization_id is None:
        raise Invalid("the subscriber belongs to no department", field="owner")
    if mode == DeliveryMode.INCREMENTAL and (
        not plan.resource.primary_key
        or any(c not in plan.visible for c in plan.resource.primary_key)
    ):
        raise Invalid(
            "incremental delivery needs the resource's primary key among the granted fields",
            field="mode", code="no-key",
        )  # fmt: skip
    session.add(made)
    session.flush()
    audit.record(
        session, actor, "exchange.subscribe", target=str(made.id),
        target_type="batch_subscription", purpose=purpose,
        detail=_detail(resource=resource, mode=mode, sink=made.sink_kind, format=made.sink_format,
                       target=made.sink_target, table=made.sink_table, every=every_minutes),
    )  # fmt: skip
    return made


def stop_subscription(
    session: Session, actor: Principal, subscription_id: int
) -> BatchSubscription:
    """No more deliveries (the delivered files and the record stay)."""
    subscription = access_subscription(session, actor, subscription_id)
    authorize(session, actor, "exchange.apply", target=str(subscription_id))
    if not subscription.active:
        raise Conflict(f"subscription {subscription_id} is already stopped", code="stopped")
    subscription.active = False
    subscription.stopped_by = actor.label
    subscription.next_due_at = None
    audit.record(
        session, actor, "exchange.unsubscribe", target=str(subscription.id),
        target_type="batch_subscription",
    )  # fmt: skip
    return subscription


def list_subscriptions(session: Session, actor: Principal) -> list[BatchSubscription]:
    """The actor's department's subscriptions, newest first (all for admins and auditors)."""
    authorize(session, actor, "exchange.read")
    query = select(BatchSubscription).order_by(BatchSubscription.id.desc())
    if not _oversees(actor):
        if actor.organization_id is None:
            return []
        query = query.where(BatchSubscription.consumer_id == actor.organization_id)
    return list(session.scalars(query))


def list_deliveries(
    session: Session, actor: Principal, subscription_id: int, *, limit: int = 50
) -> list[BatchDelivery]:
    """A subscription's deliveries, newest first."""
    subscription = access_subscription(session, actor, subscription_id)
    return list(
        session.scalars(
            select(BatchDelivery)
            .where(BatchDelivery.subscription_id == subscription.id)
            .order_by(BatchDelivery.id.desc())
            .limit(limit)
        )
    )


# --- delivering ------------------------------------------------------------------------------


def request_delivery(
    session: Session,
    actor: Principal,
    subscription_id: int,
    *,
    lake_uri: str,
    var_dir: Path,
) -> BatchDelivery | None:
    """Queue the delivery of everything not yet delivered; None when nothing is new.

    A delivery still pending (queued, running, or failed: run it again) is the one returned:
    deliveries of a subscription happen one after the other, each range once.
    """
    subscription = access_subscription(session, actor, subscription_id)
    if actor.kind != "system":
        authorize(session, actor, "exchange.apply", target=str(subscription_id))
    if not subscription.active:
        raise Conflict(f"subscription {subscription_id} is stopped", code="stopped")
    pending = session.scalars(
        select(BatchDelivery).where(
            BatchDelivery.subscription_id == subscription.id, BatchDelivery.state.in_(PENDING)
        )
    ).first()
    plan_for(session, current_owner(session, subscription.owner), subscription)
    if pending is None:
        newest = subscription.resource.lake_version
        if newest is None or newest == subscription.delivered_version:
            _schedule(subscription)
            return None
        since = subscription.delivered_version
        pending = BatchDelivery(
            subscription_id=subscription.id, from_version=since,
            from_key=-1 if since is None else since, to_version=newest, requested_by=actor.label,
        )  # fmt: skip
        session.add(pending)
        session.flush()
    if pending.state != DeliveryState.RUNNING:  # a running one keeps its job and state
        pending.state = DeliveryState.QUEUED
        pending.error = None
    job = jobs.submit(
        session, actor, KIND,
        {"delivery_id": pending.id, "lake_uri": lake_uri, "var_dir": str(var_dir)},
        key=f"{KIND}:{pending.id}", organization_id=subscription.consumer_id,
    )  # fmt: skip
    pending.job_id = job.id
    _schedule(subscription)
    return pending


def _schedule(subscription: BatchSubscription) -> None:
    if subscription.every_minutes is not None and subscription.active:
        subscription.next_due_at = clock.now() + timedelta(minutes=subscription.every_minutes)


def deliver_due(
    session: Session, actor: Principal, *, lake_uri: str, var_dir: Path, now: datetime | None = None
) -> list[BatchDelivery]:
    """Queue the deliveries of every active subscription whose time has come (a scheduler,
    cron or `minyun exchange deliver --due`, calls this); refusals are audited and skipped."""
    due = session.scalars(
        select(BatchSubscription.id).where(
            BatchSubscription.active.is_(True),
            BatchSubscription.next_due_at.is_not(None),
            BatchSubscription.next_due_at <= (now or clock.now()),
        )
    ).all()
    queued: list[BatchDelivery] = []
    for subscription_id in due:
        try:
            with session.begin_nested():
                made = request_delivery(
                    session, actor, subscription_id, lake_uri=lake_uri, var_dir=var_dir
                )
        except DomainError as exc:
            if exc.audit is not None:
                exc.audit.write(session)
            log.warning("subscription %s: not delivered: %s", subscription_id, exc)
            continue
        if made is not None:
            queued.append(made)
    return queued


def delivery_key(node_key: NodeKey, delivery: BatchDelivery, code: str) -> str:
    """The delivery's name in its sink: resource, node, subscription and versions."""
    since = "start" if delivery.from_version is None else f"v{delivery.from_version}"
    return f"{code}-{node_key.kid[:8]}-s{delivery.subscription_id}-{since}-v{delivery.to_version}"


def files_folder(var_dir: Path, subscription_id: int) -> Path:
    """Where the node keeps a file subscription's deliveries for download."""
    return var_dir / "exchange" / "files" / str(subscription_id)


def _sink(
    subscription: BatchSubscription, var_dir: Path, node_key: NodeKey
) -> FileSink | DatabaseSink:
    if subscription.sink_kind == SinkKind.FILE:
        return FileSink(files_folder(var_dir, subscription.id), subscription.sink_format or "")
    if subscription.sink_kind == SinkKind.FOLDER:
        return FileSink(Path(subscription.sink_target or ""), subscription.sink_format or "")
    dsn = sinks.unseal(subscription.sink_target or "", subscription.sink_sealed or "", node_key)
    return DatabaseSink(subscription.sink_kind, dsn, subscription.sink_table or "")


@jobs.handler(KIND)
def run_delivery(ctx: jobs.JobContext) -> dict[str, Any]:
    """Deliver one range once: already in the sink → only recorded; refused → nothing."""
    p = ctx.params
    var_dir = Path(p["var_dir"])
    delivery_id = int(p["delivery_id"])
    with ctx.factory.begin() as session:
        delivery = _delivery(session, delivery_id)
        if delivery.state == DeliveryState.DELIVERED:
            return _result(delivery)
        delivery.state = DeliveryState.RUNNING
        subscription = session.get(BatchSubscription, delivery.subscription_id)
        if subscription is None:  # pragma: no cover - deliveries go with their subscription
            raise NotFound(f"no subscription of delivery {delivery_id}")
        node_key = _node_key(session)
        key = delivery_key(node_key, delivery, subscription.resource.code)
        sink = _sink(subscription, var_dir, node_key)
    try:
        receipt = sink.delivered(key)
        signed = None
        if receipt is None:
            batch, plan = _read(ctx, delivery_id, Lake(p["lake_uri"]), key)
            receipt, signed = _write(ctx, delivery_id, sink, batch, plan, node_key)
        return _finish(ctx, delivery_id, receipt, signed)
    except jobs.JobStopped:
        raise  # cancelled, or another runner has it: that one records the outcome
    except Exception as exc:
        refused = isinstance(exc, Forbidden | Unauthenticated) or getattr(exc, "code", "") in (
            "no-key",
        )
        state = DeliveryState.REFUSED if refused else DeliveryState.FAILED
        _close(ctx, delivery_id, state, jobs.describe_error(exc))
        raise


def _write(
    ctx: jobs.JobContext,
    delivery_id: int,
    sink: FileSink | DatabaseSink,
    batch: Batch,
    plan: AccessPlan,
    node_key: NodeKey,
) -> tuple[Receipt, dict[str, Any]]:
    """Write the batch into its sink with progress; the signed manifest (beside a file)."""
    total = batch.table.num_rows
    ctx.progress(0, total, "writing")
    written = [0]

    def advance(rows: int) -> None:
        written[0] += rows
        ctx.progress(min(written[0], total))

    receipt = sink.write(batch, advance)
    manifest = _manifest(ctx, delivery_id, plan, batch, receipt, batch.key)
    signed = {
        "manifest": manifest, "kid": node_key.kid, "signature": node_key.sign(canonical(manifest)),
    }  # fmt: skip
    if isinstance(sink, FileSink):
        sink.seal(batch.key, signed)
    return receipt, signed


def _node_key(session: Session) -> NodeKey:
    found = session.info.get("node_key")
    if not isinstance(found, NodeKey):
        raise Invalid("no node key to sign the manifest with")
    return found


def _delivery(session: Session, delivery_id: int) -> BatchDelivery:
    found = session.get(BatchDelivery, delivery_id)
    if found is None:
        raise NotFound(f"no delivery {delivery_id}")
    return found


def _read(ctx: jobs.JobContext, delivery_id: int, lake: Lake, key: str) -> tuple[Batch, AccessPlan]:
    """The delivery's rows through the owner's plan of now; the read is audited (durably)
    before any of them leaves. Refused: audited by the unit of work, nothing read."""
    with unit_of_work(ctx.factory) as session:
        delivery = _delivery(session, delivery_id)
        subscription = session.get(BatchSubscription, delivery.subscription_id)
        if subscription is None:  # pragma: no cover
            raise NotFound(f"no subscription of delivery {delivery_id}")
        owner = current_owner(session, subscription.owner)
        plan = plan_for(session, owner, subscription)
        secret = reader_secret(session)
        table = None
        kind = "full"
        if (
            subscription.mode == DeliveryMode.INCREMENTAL
            and delivery.from_version is not None
            and _same_fields(session, subscription.id, plan)
        ):
            table = lake.read_changes(
                plan, secret=secret, since=delivery.from_version, until=delivery.to_version
            )
            kind = "changes" if table is not None else "full"
        if table is None:
            table = lake.read_table(plan, secret=secret, version=delivery.to_version, ordered=True)
        audit.record_read(
            session, plan.actor, policies.READ, target=plan.code, target_type="resource",
            count=table.num_rows, purpose=subscription.purpose,
            detail=f"batch delivery {delivery.id} of subscription {subscription.id}: {kind} "
            f"({delivery.from_version}, {delivery.to_version}]; {plan.reason}",
        )  # fmt: skip
        delivery.kind = kind
    return Batch(table, kind, tuple(plan.resource.primary_key), key), plan


def _same_fields(session: Session, subscription_id: int, plan: AccessPlan) -> bool:
    """Whether the plan shows the fields the last delivery carried (same names, same
    treatment). A grant changed since then makes the next delivery a full one: changes
    cannot be applied to rows of other columns."""
    last = session.scalars(
        select(BatchDelivery.manifest)
        .where(
            BatchDelivery.subscription_id == subscription_id,
            BatchDelivery.state == DeliveryState.DELIVERED,
        )
        .order_by(BatchDelivery.id.desc())
        .limit(1)
    ).first()
    if not last:
        return False
    return bool(last.get("fields") == plan.visible and last.get("masked") == sorted(plan.masked))


def _manifest(
    ctx: jobs.JobContext,
    delivery_id: int,
    plan: AccessPlan,
    batch: Batch,
    receipt: Receipt,
    key: str,
) -> dict[str, Any]:
    with ctx.factory() as session:
        delivery = _delivery(session, delivery_id)
        subscription = session.get(BatchSubscription, delivery.subscription_id)
        consumer = subscription.consumer.code if subscription is not None else None
    found = _GRANT.search(plan.reason)
    counts: dict[str, int] = {}
    if batch.kind == "changes":
        for kind in batch.table.column(sinks.CHANGE).to_pylist():
            counts[kind] = counts.get(kind, 0) + 1
    doc: dict[str, Any] = {
        "type": MANIFEST_TYPE,
        "delivery": key,
        "subscription": delivery.subscription_id,
        "resource": plan.code,
        "consumer": consumer,
        "grant": int(found.group(1)) if found else None,
        "purpose": plan.purpose,
        "kind": batch.kind,
        "from_version": delivery.from_version,
        "to_version": delivery.to_version,
        "rows": receipt.rows,
        "changes": counts or None,
        "fields": [n for n in plan.visible if n in batch.table.column_names],
        "masked": sorted(plan.masked),
        "row_filter": _filter_text(plan),
        "checksum": receipt.checksum,
        "checksum_of": "the rows as CSV (UTF-8, header first)",
        "created_at": clock.now().isoformat(),
    }
    if receipt.file_name is not None:
        doc["file"] = {"name": receipt.file_name, "sha256": receipt.file_sha256}
    return doc


def _filter_text(plan: AccessPlan) -> str | None:
    return repr(plan.row_filter) if plan.row_filter is not None else None


def canonical(manifest: dict[str, Any]) -> bytes:
    """The bytes a manifest's signature covers: its JSON, keys sorted, no spaces."""
    return json.dumps(manifest, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def verify_manifest(signed: dict[str, Any], node_key: NodeKey) -> bool:
    """Whether a signed manifest is the node's, unchanged."""
    manifest = signed.get("manifest")
    signature = signed.get("signature")
    if not isinstance(manifest, dict) or not isinstance(signature, str):
        return False
    return node_key.verify(canonical(manifest), signature)


def _close(ctx: jobs.JobContext, delivery_id: int, state: str, error: str) -> None:
    with ctx.factory.begin() as session:
        delivery = _delivery(session, delivery_id)
        delivery.state = state
        delivery.error = error[:2000]
        delivery.finished_at = clock.now()


def _finish(
    ctx: jobs.JobContext,
    delivery_id: int,
    receipt: Receipt,
    signed: dict[str, Any] | None,
) -> dict[str, Any]:
    """Record the delivery as done and move the subscription's version on, once."""
    with ctx.factory.begin() as session:
        delivery = _delivery(session, delivery_id)
        subscription = session.get(BatchSubscription, delivery.subscription_id)
        if subscription is None:  # pragma: no cover
            raise NotFound(f"no subscription of delivery {delivery_id}")
        if signed is None:  # already in the sink: its manifest (a file's) or the ledger's figures
            signed = _kept_manifest(subscription, delivery, Path(ctx.params["var_dir"]), session)
        delivery.state = DeliveryState.DELIVERED
        delivery.rows = receipt.rows
        delivery.checksum = receipt.checksum
        delivery.file_name = receipt.file_name
        delivery.error = None
        delivery.finished_at = clock.now()
        if signed is not None:
            delivery.manifest = signed["manifest"]
            delivery.signature = signed["signature"]
            delivery.kind = delivery.kind or signed["manifest"].get("kind")
        if subscription.delivered_version == delivery.from_version:
            subscription.delivered_version = delivery.to_version
        audit.record(
            session, Principal.system(on_behalf_of=subscription.created_by), "exchange.deliver",
            target=str(subscription.id), target_type="batch_subscription",
            purpose=subscription.purpose, count=receipt.rows,
            detail=_detail(delivery=delivery.id, resource=subscription.resource.code,
                           kind=delivery.kind, from_version=delivery.from_version,
                           to_version=delivery.to_version, checksum=receipt.checksum),
        )  # fmt: skip
        return _result(delivery)


def _kept_manifest(
    subscription: BatchSubscription, delivery: BatchDelivery, var_dir: Path, session: Session
) -> dict[str, Any] | None:
    key = delivery_key(_node_key(session), delivery, subscription.resource.code)
    sink = _sink(subscription, var_dir, _node_key(session))
    if isinstance(sink, FileSink):
        path = sink.folder / f"{sink.name(key)}.manifest.json"
        if path.exists():
            found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return found
    return None


def _result(delivery: BatchDelivery) -> dict[str, Any]:
    return {
        "delivery_id": delivery.id, "state": str(delivery.state), "rows": delivery.rows,
        "from_version": delivery.from_version, "to_version": delivery.to_version,
        "kind": delivery.kind, "checksum": delivery.checksum,
    }  # fmt: skip


def _detail(**values: Any) -> str:
    return json.dumps({k: v for k, v in values.items() if v is not None}, ensure_ascii=False)


# --- downloads -------------------------------------------------------------------------------


def delivery_file(
    session: Session, actor: Principal, subscription_id: int, delivery_id: int, *, var_dir: Path
) -> tuple[Path, BatchDelivery]:
    """A delivered file for download: the reader's department's, read with a live grant now
    (the download is a read of the data: planned and audited like any)."""
    delivery = access_delivery(session, actor, subscription_id, delivery_id)
    subscription = session.get(BatchSubscription, subscription_id)
    if subscription is None or subscription.sink_kind != SinkKind.FILE:
        raise NotFound(f"delivery {delivery_id} has no file here")
    if delivery.state != DeliveryState.DELIVERED or not delivery.file_name:
        raise NotFound(f"delivery {delivery_id} has no file yet")
    plan = plan_for(session, actor, subscription)
    path = files_folder(var_dir, subscription.id) / delivery.file_name
    if not path.is_file():
        raise NotFound(f"the file of delivery {delivery_id} is gone")
    audit.record_read(
        session, actor, policies.READ, target=plan.code, target_type="resource",
        count=delivery.rows, purpose=subscription.purpose,
        detail=f"download of batch delivery {delivery.id}; {plan.reason}",
    )  # fmt: skip
    return path, delivery
