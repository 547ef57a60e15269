"""Nodes API: the registry and the cities' catalog for people and clients (`/api/v1/nodes`),
and the signed node-to-node routes (`/api/v1/node-link`), which only another node calls."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from minyun.core.errors import Invalid
from minyun.core.platform import Platform
from minyun.core.serving import json_value
from minyun.nodes import service, signing
from minyun.nodes.models import Node
from minyun.nodes.schemas import (
    IdentityRead,
    NodeCreate,
    NodeRead,
    NodeResourceRead,
    PublishRead,
    ReasonIn,
    RemoteApplicationCreate,
    RemoteApplicationRead,
    RemoteRowsRead,
)
from minyun.web.deps import ActorDep, IdPath, PlatformDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["nodes"])
NodeId = Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]
Code = Annotated[str, Path(max_length=64)]
MAX_LIMIT = 1000


def link_of(platform: Platform) -> service.Link:
    """This node's side of every call it makes to another node."""
    return service.Link(platform.settings.node_name, platform.node_key)


# --- people and clients ------------------------------------------------------------------------


@router.get("/nodes", response_model=list[NodeRead])
def nodes(session: SessionDep, actor: ActorDep) -> list[NodeRead]:
    """The nodes this node trusts (civil servants)."""
    return [NodeRead.model_validate(n) for n in service.list_nodes(session, actor)]


@router.post("/nodes", response_model=NodeRead, status_code=201)
def add(body: NodeCreate, session: SessionDep, actor: ActorDep) -> NodeRead:
    """Register another node with its public key (administrators)."""
    node = service.add_node(session, actor, **body.model_dump())
    return NodeRead.model_validate(node)


@router.get("/nodes/self", response_model=IdentityRead)
def whoami(session: SessionDep, actor: ActorDep, platform: PlatformDep) -> IdentityRead:
    """This node's id, address and public key, to register it on another node."""
    settings = platform.settings
    found = service.describe_self(session, actor, settings.node_name, settings.base_url,
                                  platform.node_key)  # fmt: skip
    return IdentityRead.model_validate(found)


@router.post("/nodes/publish", response_model=PublishRead)
def publish(session: SessionDep, actor: ActorDep, platform: PlatformDep) -> PublishRead:
    """Send this node's shared catalog to its parent node now (administrators)."""
    return PublishRead(sent=service.publish_catalog(session, actor, link_of(platform)))


@router.get("/nodes/catalog", response_model=list[NodeResourceRead])
def remote_catalog(
    session: SessionDep, actor: ActorDep, q: Annotated[str | None, Query(max_length=100)] = None
) -> list[NodeResourceRead]:
    """The resources the city nodes publish here, each marked with its node."""
    return [NodeResourceRead.model_validate(r) for r in service.remote_catalog(session, actor, q=q)]


@router.get("/nodes/applications", response_model=list[RemoteApplicationRead])
def applications(session: SessionDep, actor: ActorDep) -> list[RemoteApplicationRead]:
    """Your department's applications for other nodes' resources."""
    found = service.list_remote_applications(session, actor)
    return [RemoteApplicationRead.model_validate(a) for a in found]


@router.post("/nodes/applications", response_model=RemoteApplicationRead, status_code=201)
def apply(
    body: RemoteApplicationCreate, session: SessionDep, actor: ActorDep, platform: PlatformDep
) -> RemoteApplicationRead:
    """Apply for a city node's resource: the city's own sharing flow decides."""
    found = service.apply_remote(
        session, actor, link_of(platform), node_id=body.node, code=body.resource,
        purpose=body.purpose, legal_basis=body.legal_basis, fields=body.fields,
        expires_at=body.expires_at, row_filter=body.row_filter,
    )  # fmt: skip
    return RemoteApplicationRead.model_validate(found)


@router.post("/nodes/applications/{application_id}/refresh", response_model=RemoteApplicationRead)
def refresh(
    application_id: IdPath, session: SessionDep, actor: ActorDep, platform: PlatformDep
) -> RemoteApplicationRead:
    """Ask the providing node how the application stands."""
    found = service.refresh_application(session, actor, link_of(platform), application_id)
    return RemoteApplicationRead.model_validate(found)


@router.post("/nodes/{node_id}/revoke", response_model=NodeRead)
def revoke(node_id: NodeId, body: ReasonIn, session: SessionDep, actor: ActorDep) -> NodeRead:
    """Stop trusting a node: its next request is refused (administrators)."""
    return NodeRead.model_validate(service.revoke_node(session, actor, node_id, reason=body.reason))


@router.get("/nodes/{node_id}/resources/{code}/rows", response_model=RemoteRowsRead)
def remote_rows(
    node_id: NodeId,
    code: Code,
    session: SessionDep,
    actor: ActorDep,
    platform: PlatformDep,
    fields: Annotated[str | None, Query(max_length=2000)] = None,
    filter: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    purpose: Annotated[str | None, Query(max_length=200)] = None,
) -> RemoteRowsRead:
    """Rows of a city node's resource, read through this node on your department's grant
    there; audited here and on the city node."""
    found = service.read_remote(
        session, actor, link_of(platform), node_id=node_id, code=code, fields=fields,
        filter=filter, limit=limit, purpose=purpose,
    )  # fmt: skip
    return RemoteRowsRead(node=found.node, resource=found.resource, fields=found.fields,
                          rows=found.rows, version=found.version)  # fmt: skip


# --- node to node (signed) -------------------------------------------------------------------


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _own_url(request: Request, platform: Platform) -> str:
    """The request's URL as a node addresses it: this node's base URL, the raw path and query."""
    path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    url = platform.settings.base_url + path.decode("latin-1")
    return url + ("?" + query.decode("latin-1") if query else "")


def calling_node(
    request: Request,
    session: SessionDep,
    platform: PlatformDep,
    body: Annotated[bytes, Depends(_raw_body)],
) -> Node:
    """The node that signed this request, checked against the URL this node answers on."""
    url = _own_url(request, platform)
    node_pk = service.authenticate(platform.factory, method=request.method, url=url,
                                   headers=dict(request.headers), body=body)  # fmt: skip
    return service.calling_node(session, node_pk)


CallerDep = Annotated[Node, Depends(calling_node)]


def _payload(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise Invalid("the body is not JSON", field="body") from None
    if not isinstance(value, dict):
        raise Invalid("the body is a JSON object", field="body")
    return value


def _json(request: Request, platform: Platform, value: Any, status_code: int = 200) -> Response:
    """A JSON answer signed by this node for the signed request it answers."""
    content = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=json_value)
    body = content.encode()
    headers = signing.sign_response(
        platform.node_key.private, platform.settings.node_name, status=status_code,
        headers={"content-type": "application/json"}, body=body,
        request=(request.method, _own_url(request, platform), dict(request.headers)),
    )  # fmt: skip
    return Response(body, status_code, headers=headers)


@router.post("/node-link/catalog", include_in_schema=False)
def receive_catalog(
    request: Request,
    node: CallerDep,
    session: SessionDep,
    platform: PlatformDep,
    body: Annotated[bytes, Depends(_raw_body)],
) -> Response:
    """A child node's catalog (signed)."""
    resources = _payload(body).get("resources")
    if not isinstance(resources, list):
        raise Invalid("resources is a list", field="resources")
    return _json(request, platform, {"listed": service.receive_catalog(session, node, resources)})


@router.post("/node-link/applications", include_in_schema=False)
def receive_application(
    request: Request,
    node: CallerDep,
    session: SessionDep,
    platform: PlatformDep,
    body: Annotated[bytes, Depends(_raw_body)],
) -> Response:
    """A node's department applies for a resource here (signed)."""
    _, person = service.behalf_of(request.headers)
    application = service.receive_application(session, node, _payload(body), on_behalf_of=person)
    return _json(request, platform, service.application_answer(session, application), 201)


@router.get("/node-link/applications/{application_id}", include_in_schema=False)
def application_state(
    request: Request,
    application_id: IdPath,
    node: CallerDep,
    session: SessionDep,
    platform: PlatformDep,
) -> Response:
    """How a node's department's application stands here (signed)."""
    consumer, person = service.behalf_of(request.headers)
    found = service.application_for_node(session, node, application_id, consumer=consumer,
                                         on_behalf_of=person)  # fmt: skip
    return _json(request, platform, service.application_answer(session, found))


@router.get("/node-link/resources/{code}/rows", include_in_schema=False)
def serve_rows(
    request: Request,
    code: Code,
    node: CallerDep,
    session: SessionDep,
    platform: PlatformDep,
    fields: Annotated[str | None, Query(max_length=2000)] = None,
    filter: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    purpose: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Rows for a node's department on its grant here (signed); audited here."""
    consumer, person = service.behalf_of(request.headers)
    page = service.serve_rows(
        session, platform.lake, node, consumer=consumer, on_behalf_of=person, code=code,
        fields=fields, filter=filter, limit=limit, purpose=purpose,
    )  # fmt: skip
    return _json(request, platform, {"rows": page.table.to_pylist(), "fields": page.table.column_names,
                  "version": page.version, "keys": page.keys})  # fmt: skip
