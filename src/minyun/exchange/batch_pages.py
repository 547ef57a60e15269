"""Batch exchange pages (批量交换): a department's subscriptions, their deliveries, downloads.

The same service as the API and the CLI (`minyun.exchange.batch`). A refused form is shown
again with what was typed and the error beside its field (the change ran in a savepoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from minyun.core.errors import Conflict, Invalid
from minyun.core.security import Principal, Role
from minyun.exchange import batch, service
from minyun.exchange.batch_api import MEDIA, folders
from minyun.exchange.sinks import SinkSpec
from minyun.web import wording
from minyun.web.deps import CsrfDep, IdPath, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import ACTIONS, LABELS, PageActorDep, render

router = APIRouter(include_in_schema=False)

LABELS.update(
    queued=N_("Queued"),
    delivered=N_("Delivered"),
    refused=N_("Refused"),
    full=N_("Full"),
    incremental=N_("Incremental"),
    changes=N_("Changes"),
)
LABELS.update(
    {"exchange.batch": N_("Batch delivery"), "batch_subscription": N_("Batch subscription")}
)
ACTIONS.update(
    {
        "exchange.subscribe": N_("Batch subscription made"),
        "exchange.unsubscribe": N_("Batch subscription stopped"),
        "exchange.deliver": N_("Batch delivered"),
    }
)
SINK_NAMES = {"file": N_("File to download"), "folder": N_("Folder"),
              "postgresql": N_("PostgreSQL table"), "mariadb": N_("MariaDB table")}  # fmt: skip
wording.sentence(r"unknown sink '(?P<kind>[^']*)'.*", N_("Unknown sink: %(kind)s"))
wording.sentence(r"a file sink needs a format.*", N_("Choose a file format."))
wording.sentence(r"a folder sink needs a folder", N_("Give the folder."))
wording.sentence(
    r"the folder is not under a folder this node delivers into.*",
    N_("This node does not deliver into that folder."),
)
wording.sentence(r"a (?P<kind>\w+) sink needs a \w+:// DSN", N_("Give the database's address."))
wording.sentence(
    r"the table must be a plain name.*", N_("The table name may hold letters, digits and _ only.")
)
wording.sentence(r"cannot connect to (?P<dsn>\S+): .*", N_("Cannot connect to %(dsn)s."))
wording.sentence(
    r"incremental delivery needs the resource's primary key among the granted fields",
    N_("Incremental delivery needs the primary key among the granted fields."),
)
wording.sentence(r"give the purpose.*", N_("Give the purpose."))
wording.sentence(r"deliver every \d+ minutes to 31 days", N_("Deliver every 5 minutes to 31 days."))
wording.sentence(
    r"(?P<code>\S+) is read through no grant of this department",
    N_("Your department holds no live grant on this resource."),
)
wording.sentence(
    r"subscription (?P<id>\d+) is (already )?stopped", N_("This subscription is stopped.")
)


def _errors(exc: Invalid | Conflict) -> dict[str, str]:
    return {str(exc.extra.get("field") or "form"): str(exc)}


@router.get("/sharing/subscriptions")
def subscriptions(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """My department's batch subscriptions, each with its deliveries and download links."""
    return _page(request, session, actor, {"mode": "incremental", "kind": "file",
                                           "format": "parquet"}, {})  # fmt: skip


def _page(
    request: Request,
    session: Session,
    actor: Principal,
    values: Mapping[str, Any],
    errors: Mapping[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    found = batch.list_subscriptions(session, actor)
    deliveries = {s.id: batch.list_deliveries(session, actor, s.id, limit=10) for s in found}
    held = [g for g in service.list_grants(session, actor, side="consumer") if g.status == "active"]
    return render(
        request, "exchange/subscriptions.html", status_code=status_code, subscriptions=found,
        deliveries=deliveries, held=held, values=values, errors=errors, sinks=SINK_NAMES,
        may_subscribe=actor.has_role(Role.CONSUMER) and actor.organization_id is not None,
        # Files are read by the consumer department under its grant; those who oversee
        # subscriptions (admins, auditors) see the deliveries and manifests, not the data.
        reader_org=actor.organization_id,
    )  # fmt: skip


@router.post("/sharing/subscriptions", dependencies=[CsrfDep])
def subscribe(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    node: PlatformDep,
    resource: Annotated[str, Form(max_length=100)] = "",
    mode: Annotated[str, Form(max_length=12)] = "incremental",
    kind: Annotated[str, Form(max_length=20)] = "file",
    format: Annotated[str, Form(max_length=10)] = "parquet",
    folder: Annotated[str, Form(max_length=1000)] = "",
    dsn: Annotated[str, Form(max_length=2000)] = "",
    table: Annotated[str, Form(max_length=63)] = "",
    every_minutes: Annotated[str, Form(max_length=10)] = "",
    purpose: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Subscribe to a resource the department holds a grant on."""
    typed = {"resource": resource, "mode": mode, "kind": kind, "format": format,
             "folder": folder, "table": table, "every_minutes": every_minutes,
             "purpose": purpose}  # fmt: skip
    try:
        every = int(every_minutes) if every_minutes.strip() else None
    except ValueError:
        every = -1
    try:
        with session.begin_nested():
            batch.subscribe(
                session, actor, resource=resource, mode=mode, purpose=purpose,
                every_minutes=every, node_key=node.node_key, folders=folders(node),
                sink=SinkSpec(kind, format or None, folder or None, dsn or None, table or None),
            )  # fmt: skip
    except (Invalid, Conflict) as exc:
        return _page(request, session, actor, typed, _errors(exc), status_code=422)
    return RedirectResponse("/sharing/subscriptions", 303)


@router.post("/sharing/subscriptions/{subscription_id}/deliver", dependencies=[CsrfDep])
def deliver(
    subscription_id: IdPath, session: SessionDep, actor: PageActorDep, node: PlatformDep
) -> Response:
    """Deliver now what is not yet delivered."""
    batch.request_delivery(
        session, actor, subscription_id, lake_uri=node.lake.uri, var_dir=node.settings.var_dir
    )
    return RedirectResponse(f"/sharing/subscriptions#subscription-{subscription_id}", 303)


@router.post("/sharing/subscriptions/{subscription_id}/stop", dependencies=[CsrfDep])
def stop(subscription_id: IdPath, session: SessionDep, actor: PageActorDep) -> Response:
    """No more deliveries."""
    batch.stop_subscription(session, actor, subscription_id)
    return RedirectResponse("/sharing/subscriptions", 303)


@router.get("/sharing/subscriptions/{subscription_id}/deliveries/{delivery_id}/file")
def download(
    subscription_id: IdPath,
    delivery_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    node: PlatformDep,
) -> FileResponse:
    """The delivered file (read with the grant of now, audited)."""
    path, found = batch.delivery_file(
        session, actor, subscription_id, delivery_id, var_dir=node.settings.var_dir
    )
    return FileResponse(
        path, media_type=MEDIA.get(path.suffix.lstrip(".")), filename=found.file_name
    )
