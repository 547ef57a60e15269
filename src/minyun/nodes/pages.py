"""Nodes pages: the registry for administrators (/admin/nodes) and the cities' catalog with
its applications for civil servants (/nodes). Both call `minyun.nodes.service`, as the API."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from minyun.core.security import authorize, decide
from minyun.nodes import service
from minyun.nodes.api import link_of
from minyun.web import wording
from minyun.web.deps import CsrfDep, PlatformDep, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import ACTIONS, CHINA_TIME, LABELS, PageActorDep, render

router = APIRouter(include_in_schema=False)

LABELS.update(parent=N_("Parent node (province)"), child=N_("Child node (city)"))
ACTIONS.update(
    {
        "nodes.add": N_("Node registered"),
        "nodes.revoke": N_("Node revoked"),
        "nodes.publish": N_("Catalog published to the province"),
        "nodes.catalog": N_("City catalog received"),
        "nodes.apply": N_("Application sent to a city node"),
        "nodes.read": N_("Rows read through a city node"),
        "nodes.authenticate": N_("Node request refused"),
        "nodes.delegate": N_("Node request refused"),
    }
)
SHARING = {"unconditional": N_("Unconditional"), "conditional": N_("Conditional")}
wording.sentence(r"node (?P<id>\S+) is already revoked", N_("This node is already revoked."))
wording.sentence(r"reason is required", N_("Give a reason."))


@router.get("/admin/nodes")
def registry(
    request: Request, session: SessionDep, actor: PageActorDep, platform: PlatformDep
) -> HTMLResponse:
    """The nodes this node trusts, and this node's own id and key to give the other one."""
    authorize(session, actor, "nodes.manage")
    settings = platform.settings
    me = service.describe_self(session, actor, settings.node_name, settings.base_url,
                               platform.node_key)  # fmt: skip
    return render(request, "nodes/registry.html", nodes=service.list_nodes(session, actor), me=me,
                  done=request.query_params.get("done"))  # fmt: skip


@router.post("/admin/nodes/{node_id}/revoke", dependencies=[CsrfDep])
def revoke(
    request: Request,
    node_id: str,
    session: SessionDep,
    actor: PageActorDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Revoke a node from the registry page (a reason is required)."""
    service.revoke_node(session, actor, node_id, reason=reason)
    return RedirectResponse("/admin/nodes?done=revoked", 303)


@router.get("/nodes")
def city_catalog(
    request: Request,
    session: SessionDep,
    actor: PageActorDep,
    q: str | None = None,
) -> HTMLResponse:
    """The resources the city nodes publish here, each marked with its node."""
    found = service.remote_catalog(session, actor, q=(q or "").strip()[:100] or None)
    mine = (
        service.list_remote_applications(session, actor)
        if decide(session, actor, "exchange.read").allowed and actor.organization_id
        else []
    )
    may_apply = decide(session, actor, "exchange.apply").allowed
    default_end = (datetime.now(CHINA_TIME) + timedelta(days=365)).date().isoformat()
    return render(request, "nodes/catalog.html", resources=found, mine=mine, q=q or "",
                  may_apply=may_apply, default_end=default_end, sharing=SHARING,
                  done=request.query_params.get("done"))  # fmt: skip


@router.post("/nodes/{node_id}/{code}/apply", dependencies=[CsrfDep])
def apply(
    request: Request,
    node_id: str,
    code: str,
    session: SessionDep,
    actor: PageActorDep,
    platform: PlatformDep,
    purpose: Annotated[str, Form(max_length=2000)] = "",
    legal_basis: Annotated[str, Form(max_length=2000)] = "",
    fields: Annotated[list[str] | None, Form()] = None,
    end: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Apply for a city's resource from the catalog page; the city decides."""
    try:
        until = datetime.combine(datetime.fromisoformat(end).date(), time(23, 59),
                                 tzinfo=CHINA_TIME)  # fmt: skip
    except ValueError:
        until = datetime.now(CHINA_TIME) - timedelta(days=1)  # refused by the city as past
    service.apply_remote(
        session, actor, link_of(platform), node_id=node_id, code=code, purpose=purpose,
        legal_basis=legal_basis, fields=fields or [], expires_at=until,
    )  # fmt: skip
    return RedirectResponse("/nodes?done=applied#applications", 303)
