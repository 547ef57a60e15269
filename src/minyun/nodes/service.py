"""Nodes (省市互联): a city instance and the province instance, each trusting the other's key.

The registry holds the other nodes: id (the `keyid` of their signatures), name, division,
Ed25519 public key, base URL, relation (a city's parent is the province; the province's
children are the cities) and status. Every node-to-node request is signed (`signing`,
RFC 9421) and authenticated here: an unknown node, a revoked one, a bad, expired or replayed
signature is refused and the refusal audited.

- A city publishes its catalog to its parent (`publish_catalog`): the published, shared
  resources with their fields. The province keeps them as `NodeResource` rows: its
  catalog of the cities' resources, each marked with its node.
- A province consumer applies for a city resource (`apply_remote`): the province sends the
  application to the city, whose own sharing flow (`minyun.exchange`) decides it. The city
  holds the authoritative grant; the province keeps a `NodeApplication` with the last answer.
- A province consumer reads a city resource through the province (`read_remote`): the
  province authorises (a registered capability check: a reader of a department holding an
  approved application) and audits, then forwards a signed request on the consumer's
  behalf; the city authorises the node and the department through `core.security.authorize`
  (its grant), reads with the `core` reader and audits too (`serve_rows`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

import httpx
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource, ResourceStatus, SharingType
from minyun.core import audit, clock, context
from minyun.core.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthenticated
from minyun.core.keys import NodeKey
from minyun.core.lake import Lake
from minyun.core.reading import RowsPage
from minyun.core.security import GRANT_CHECKS, Principal, authorize
from minyun.exchange import service as exchange
from minyun.exchange.models import Application, ApplicationStatus, Grant
from minyun.nodes import signing
from minyun.nodes.models import (
    Node,
    NodeApplication,
    NodeNonce,
    NodeOrganization,
    NodeResource,
    NodeStatus,
    Relation,
)
from minyun.orgs import service as orgs
from minyun.orgs.models import Division, Organization
from minyun.query import service as query

NODE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
# What a node may do here on its department's behalf; the grant decides what it reads.
NODE_SCOPES = frozenset({"resource.read", "exchange.apply", "exchange.read"})
READ_ACTION = "nodes.rows"
TIMEOUT = 30.0


# --- this node and the registry --------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """This node as another node registers it."""

    node_id: str
    base_url: str
    public_key: str


def identity(node_id: str, base_url: str, key: NodeKey) -> Identity:
    """This node's id, address and public key, for `minyun nodes add` on the other node."""
    return Identity(node_id, base_url, signing.public_text(key.public))


def describe_self(
    session: Session, actor: Principal, node_id: str, base_url: str, key: NodeKey
) -> Identity:
    """This node's identity, for civil servants (the CLI prints it without asking)."""
    authorize(session, actor, "nodes.read")
    return identity(node_id, base_url, key)


def add_node(
    session: Session,
    actor: Principal,
    *,
    node_id: str,
    name: str,
    division_code: str,
    public_key: str,
    base_url: str,
    relation: str,
) -> Node:
    """Register another node (administrators): its key is how its requests are known."""
    authorize(session, actor, "nodes.manage", target=node_id, target_type="node")
    if not NODE_ID.match(node_id):
        raise Invalid("node id: 2–64 of a-z 0-9 -", field="node_id", code="node-id")
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise Invalid("name: 1–200 characters", field="name")
    if session.get(Division, division_code) is None:
        raise Invalid(f"unknown division {division_code}", field="division_code")
    try:
        key = signing.public_text(signing.parse_public(public_key))
    except ValueError as exc:
        raise Invalid(f"public key: {exc}", field="public_key", code="node-key") from None
    base_url = (base_url or "").strip().rstrip("/")
    if not base_url.startswith(("http://", "https://")) or len(base_url) > 300:
        raise Invalid("base URL must start with http:// or https://", field="base_url")
    if relation not in (Relation.PARENT, Relation.CHILD):
        raise Invalid("relation is parent or child", field="relation")
    if session.scalars(select(Node.id).where(Node.node_id == node_id)).first() is not None:
        raise Conflict(f"node {node_id} is registered", field="node_id", code="node-taken")
    node = Node(
        node_id=node_id, name=name, division_code=division_code, public_key=key,
        base_url=base_url, relation=relation, status=NodeStatus.ACTIVE, added_by=actor.label,
    )  # fmt: skip
    session.add(node)
    session.flush()
    audit.record(
        session, actor, "nodes.add", target=node_id, target_type="node",
        detail=_json(name=name, division=division_code, relation=relation, base_url=base_url,
                     public_key=key),
    )  # fmt: skip
    return node


def list_nodes(session: Session, actor: Principal) -> list[Node]:
    """The registry, active first (civil servants)."""
    authorize(session, actor, "nodes.read")
    return list(session.scalars(select(Node).order_by(Node.status, Node.node_id)))


def get_node(session: Session, node_id: str) -> Node:
    """The registered node; NotFound otherwise."""
    found = session.scalars(select(Node).where(Node.node_id == node_id)).first()
    if found is None:
        raise NotFound(f"no node {node_id}")
    return found


def revoke_node(session: Session, actor: Principal, node_id: str, *, reason: str) -> Node:
    """Stop trusting a node now: its next request is refused (administrators)."""
    authorize(session, actor, "nodes.manage", target=node_id, target_type="node")
    node = get_node(session, node_id)
    if node.status == NodeStatus.REVOKED:
        raise Conflict(f"node {node_id} is already revoked", code="node-revoked")
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("reason is required", field="reason")
    node.status = NodeStatus.REVOKED
    node.revoked_by, node.revoked_at, node.revoke_reason = actor.label, clock.now(), reason
    audit.record(session, actor, "nodes.revoke", target=node_id, target_type="node",
                 purpose=reason)  # fmt: skip
    return node


# --- talking to another node -------------------------------------------------------------------


class PeerRefused(Exception):
    """The other node answered with an error (its problem+json in `problem`)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(str(problem.get("detail") or status))
        self.status, self.problem = status, dict(problem)


@dataclass
class Link:
    """This node's side of a conversation: its id and key sign every request it sends."""

    node_id: str
    key: NodeKey
    transport: httpx.BaseTransport | None = None
    timeout: float = TIMEOUT

    def call(
        self,
        node: Node,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send a signed request to `node`; its JSON answer, or PeerRefused / unreachable."""
        query_string = urlencode({k: v for k, v in (params or {}).items() if v is not None},
                                 quote_via=quote)  # fmt: skip
        url = f"{node.base_url}{path}" + (f"?{query_string}" if query_string else "")
        content = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        wanted = {k.lower(): v for k, v in (headers or {}).items()}
        if content is not None:
            wanted["content-type"] = "application/json"
        signed = signing.sign_request(self.key.private, self.node_id, method=method, url=url,
                                      headers=wanted, body=content)  # fmt: skip
        request_id = context.request_id.get()
        if request_id:
            signed["x-request-id"] = request_id  # one id for the call in both nodes' audit
        try:
            with httpx.Client(transport=self.transport, timeout=self.timeout) as client:
                answer = client.request(method, url, content=content, headers=signed)
        except httpx.HTTPError as exc:
            raise Conflict(f"node {node.node_id} did not answer: {type(exc).__name__}",
                           code="node-unreachable") from exc  # fmt: skip
        try:
            data = answer.json()
        except ValueError:
            data = {"detail": f"node {node.node_id} answered {answer.status_code} without JSON"}
        if answer.status_code >= 400:
            # A refusal carries no data: it is relayed as a refusal, signed or not.
            raise PeerRefused(answer.status_code, data if isinstance(data, dict) else {})
        try:
            signing.verify_response(
                signing.parse_public(node.public_key), node.node_id,
                status=answer.status_code, headers=dict(answer.headers), body=answer.content,
                request=(method, url, signed),
            )  # fmt: skip
        except signing.SignatureRefused as exc:
            raise Forbidden(f"node {node.node_id}'s answer is refused: {exc}",
                            code="node-answer-unsigned") from None  # fmt: skip
        return data if isinstance(data, dict) else {"items": data}


def _relayed(exc: PeerRefused, node: Node) -> DomainError:
    """The other node's refusal as this node's error: same kind, its words, its code."""
    detail = f"node {node.node_id}: {exc.problem.get('detail') or exc.status}"
    code = str(exc.problem.get("type", "")).rsplit("/", 1)[-1] or None
    if exc.status == 404:
        return NotFound(detail, code=code)
    if exc.status == 422:
        return Invalid(detail, field=exc.problem.get("field"), code=code)
    if exc.status == 409:
        return Conflict(detail, code=code)
    return Forbidden(detail, code=code or "node-refused")


# --- receiving: who is calling ------------------------------------------------------------------


def _refusal(error: DomainError, claimed: str | None, reason: str) -> DomainError:
    # The caller is not known yet: an anonymous principal named by the node it claims to be,
    # so a flood of forged requests is counted per address like other anonymous refusals.
    error.audit = audit.Pending(
        Principal(kind="anonymous", name=f"node:{claimed or '?'}"), "nodes.authenticate",
        target=claimed, target_type="node", outcome=audit.Outcome.DENIED, detail=reason,
    )  # fmt: skip
    return error


def authenticate(
    nodes: sessionmaker[Session],
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
) -> int:
    """The row id of the active node that signed this request; refused (and audited) otherwise.

    It runs in a short transaction of its own, before the request's: the nonce is kept even
    when the request is refused later for another reason (a replay is still a replay), and
    two copies racing each other cannot both pass (the second insert meets the first's key).
    """
    claimed = signing.claimed_key_id(headers)
    if claimed is None:
        raise _refusal(
            Unauthenticated(
                "sign the request as a node (RFC 9421, keyid = node id)",
                code="node-signature-missing",
            ),
            None,
            "no node signature",
        )
    with nodes() as own:
        node = own.scalars(select(Node).where(Node.node_id == claimed)).first()
        if node is None:
            raise _refusal(Unauthenticated(f"unknown node {claimed}", code="node-unknown"),
                           claimed, "unknown node")  # fmt: skip
        node_pk, status, public_key = node.id, node.status, node.public_key
    if status != NodeStatus.ACTIVE:
        raise _refusal(Forbidden(f"node {claimed} is revoked", code="node-revoked"),
                       claimed, "revoked node")  # fmt: skip
    try:
        verified = signing.verify_request(
            signing.parse_public(public_key), method=method, url=url, headers=headers, body=body
        )
    except signing.SignatureRefused as exc:
        why = str(exc) if str(exc) != "InvalidSignature" else "the signature does not verify"
        raise _refusal(Unauthenticated(f"signature refused: {why}", code="node-signature-invalid"),
                       claimed, why) from None  # fmt: skip
    if not _fresh_nonce(nodes, node_pk, verified):
        raise _refusal(
            Unauthenticated(
                "signature refused: replayed (nonce seen before)", code="node-signature-replayed"
            ),
            claimed,
            "replayed",
        )
    return node_pk


def _fresh_nonce(nodes: sessionmaker[Session], node_pk: int, verified: signing.Verified) -> bool:
    keep_until = max(verified.expires, verified.created + signing.MAX_AGE)
    try:
        with nodes.begin() as own:
            own.execute(delete(NodeNonce).where(NodeNonce.expires_at < clock.now()))
            own.add(NodeNonce(node_id=node_pk, nonce=verified.nonce, expires_at=keep_until))
    except IntegrityError:
        return False
    return True


def calling_node(session: Session, node_pk: int) -> Node:
    """The authenticated node in the request's transaction (still active: checked again)."""
    node = session.get(Node, node_pk)
    if node is None or node.status != NodeStatus.ACTIVE:
        raise Forbidden("node revoked meanwhile", code="node-revoked")
    return node


def node_principal(node: Node, organization: Organization | None = None, *,
                   on_behalf_of: str | None = None) -> Principal:  # fmt: skip
    """A node acting here: for its department (a client of it, with the node's scopes)."""
    return Principal(
        kind="client", name=f"node:{node.node_id}",
        organization_id=organization.id if organization is not None else None,
        scopes=NODE_SCOPES if organization is not None else frozenset(),
        on_behalf_of=f"{node.node_id}/{on_behalf_of}"[:100] if on_behalf_of else None,
    )  # fmt: skip


def delegate(session: Session, node: Node, *, consumer: str, on_behalf_of: str | None) -> Principal:
    """The calling node acting for one of its departments known here; refused otherwise."""
    link = session.scalars(
        select(NodeOrganization).where(
            NodeOrganization.node_id == node.id, NodeOrganization.remote_code == consumer
        )
    ).first()
    if link is None:
        error = Forbidden(f"department {consumer} of node {node.node_id} holds nothing here",
                          code="node-consumer-unknown")  # fmt: skip
        error.audit = audit.Pending(
            node_principal(node, on_behalf_of=on_behalf_of), "nodes.delegate", target=consumer,
            target_type="organization", outcome=audit.Outcome.DENIED, detail=str(error),
        )  # fmt: skip
        raise error
    return node_principal(node, link.organization, on_behalf_of=on_behalf_of)


# --- the catalog going up ---------------------------------------------------------------------


def catalog_entries(session: Session) -> list[dict[str, Any]]:
    """This node's published, shared resources as a parent's catalog takes them."""
    found = session.scalars(
        select(Resource)
        .where(Resource.status == ResourceStatus.PUBLISHED,
               Resource.sharing_type != SharingType.NONE)
        .order_by(Resource.code)
    ).unique()  # fmt: skip
    entries = []
    for resource in found:
        schema = catalog.current_schema(session, resource)
        fields = (schema.descriptor.get("fields") if schema is not None else None) or []
        entries.append({
            "code": resource.code, "name": resource.name, "summary": resource.summary or "",
            "provider": {"code": resource.provider.code, "name": resource.provider.name},
            "sharing_type": resource.sharing_type, "update_cycle": resource.update_cycle,
            "fields": [
                {"name": str(f["name"]), "title": str(f.get("title") or f["name"]),
                 "type": str(f.get("type") or "string"),
                 "sensitivity": str(f.get("sensitivity") or "internal")}
                for f in fields if isinstance(f, Mapping) and f.get("name")
            ],
        })  # fmt: skip
    return entries


def publish_catalog(session: Session, actor: Principal, link: Link) -> dict[str, int]:
    """Send this node's catalog to each active parent node; resources sent per node."""
    authorize(session, actor, "nodes.manage", target="catalog", target_type="node")
    entries = catalog_entries(session)
    parents = session.scalars(
        select(Node).where(Node.relation == Relation.PARENT, Node.status == NodeStatus.ACTIVE)
    ).all()
    sent: dict[str, int] = {}
    for node in parents:
        try:
            answer = link.call(node, "POST", "/api/v1/node-link/catalog",
                               body={"node": link.node_id, "resources": entries})  # fmt: skip
        except PeerRefused as exc:
            raise _relayed(exc, node) from None
        node.published_at = clock.now()
        sent[node.node_id] = int(answer.get("listed", len(entries)))
        audit.record(
            session, actor, "nodes.publish", target=node.node_id, target_type="node",
            count=len(entries), detail=_json(codes=[e["code"] for e in entries]),
        )  # fmt: skip
    return sent


def receive_catalog(session: Session, node: Node, entries: Sequence[Any]) -> int:
    """A child node's catalog replaces what it published before; resources listed."""
    if node.relation != Relation.CHILD:
        raise Forbidden(f"node {node.node_id} is not a child of this node", code="node-relation")
    kept = {r.code: r for r in session.scalars(
        select(NodeResource).where(NodeResource.node_id == node.id))}  # fmt: skip
    now, seen = clock.now(), set()
    for entry in entries:
        values = _entry(entry)
        seen.add(values["code"])
        row = kept.get(values["code"])
        if row is None:
            row = kept[values["code"]] = NodeResource(node_id=node.id, code=values["code"])
            session.add(row)
        for name, value in values.items():
            setattr(row, name, value)
        row.listed, row.synced_at = True, now
    for code, row in kept.items():
        if code not in seen:
            row.listed, row.synced_at = False, now
    audit.record(
        session, node_principal(node), "nodes.catalog", target=node.node_id, target_type="node",
        count=len(seen), detail=_json(codes=sorted(seen)),
    )  # fmt: skip
    return len(seen)


def _entry(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise Invalid("a catalog entry is an object", field="resources")
    try:
        provider = entry["provider"]
        values = {
            "code": str(entry["code"])[:64], "name": str(entry["name"])[:200],
            "summary": str(entry.get("summary") or "")[:4000],
            "provider_code": str(provider["code"])[:32],
            "provider_name": str(provider["name"])[:200],
            "sharing_type": str(entry["sharing_type"])[:16],
            "update_cycle": str(entry.get("update_cycle") or "")[:16] or None,
            "fields": [
                {k: str(f[k])[:200] for k in ("name", "title", "type", "sensitivity")}
                for f in entry["fields"]
            ],
        }  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise Invalid(f"catalog entry: missing {exc}", field="resources") from None
    if not values["code"] or not values["name"]:
        raise Invalid("a catalog entry needs a code and a name", field="resources")
    if values["sharing_type"] not in (SharingType.UNCONDITIONAL, SharingType.CONDITIONAL):
        raise Invalid(f"catalog entry {values['code']}: not shared", field="resources")
    return values


def remote_catalog(
    session: Session, actor: Principal, *, q: str | None = None, limit: int = 200
) -> list[NodeResource]:
    """The resources the child nodes publish here, each with its node (civil servants)."""
    authorize(session, actor, "nodes.read")
    query_ = (
        select(NodeResource)
        .join(Node, Node.id == NodeResource.node_id)
        .where(NodeResource.listed.is_(True), Node.status == NodeStatus.ACTIVE)
    )
    if q:
        query_ = query_.where(NodeResource.name.contains(q) | NodeResource.code.contains(q))
    return list(session.scalars(query_.order_by(Node.node_id, NodeResource.code).limit(limit)))


def remote_resource(session: Session, actor: Principal, node_id: str, code: str) -> NodeResource:
    """One listed resource of an active child node; the same NotFound for anything else."""
    authorize(session, actor, "nodes.read")
    found = session.scalars(
        select(NodeResource).join(Node, Node.id == NodeResource.node_id).where(
            Node.node_id == node_id, Node.status == NodeStatus.ACTIVE,
            NodeResource.code == code, NodeResource.listed.is_(True),
        )
    ).first()  # fmt: skip
    if found is None:
        raise NotFound(f"no resource {code} on node {node_id}")
    return found


# --- applications across nodes --------------------------------------------------------------


def apply_remote(
    session: Session,
    actor: Principal,
    link: Link,
    *,
    node_id: str,
    code: str,
    purpose: str,
    legal_basis: str,
    fields: Sequence[str],
    expires_at: datetime,
    row_filter: str | None = None,
) -> NodeApplication:
    """Send a consumer department's application to the node providing the resource.

    That node decides with its own sharing flow (unconditional resources at once); this node
    keeps what was sent and the answer.
    """
    resource = remote_resource(session, actor, node_id, code)
    authorize(session, actor, "exchange.apply", target=f"{node_id}/{code}",
              target_type="node-resource")  # fmt: skip
    consumer = session.get(Organization, actor.organization_id) if actor.organization_id else None
    if consumer is None:
        raise Forbidden("only a department can apply", code="not-a-department")
    known = {f["name"] for f in resource.fields}
    unknown = [f for f in fields if f not in known]
    if unknown or not fields:
        raise Invalid(f"unknown field {unknown[0]!r}" if unknown else "choose at least one field",
                      field="fields")  # fmt: skip
    body = {
        "consumer": {"code": consumer.code, "name": consumer.name, "uscc": consumer.uscc,
                     "division_code": consumer.division_code},
        "applicant": actor.label, "resource": code, "purpose": purpose,
        "legal_basis": legal_basis, "fields": list(fields), "row_filter": row_filter,
        "expires_at": expires_at.isoformat() if expires_at.tzinfo else "",
    }  # fmt: skip
    try:
        answer = link.call(resource.node, "POST", "/api/v1/node-link/applications", body=body,
                           headers=_behalf(consumer.code, actor.label))  # fmt: skip
    except PeerRefused as exc:
        raise _relayed(exc, resource.node) from None
    application = NodeApplication(
        node_id=resource.node_id, resource_code=code, consumer_id=consumer.id,
        applicant=actor.label, purpose=purpose, fields=list(fields),
        remote_id=int(answer["id"]), status=str(answer["status"]),
        decision_reason=answer.get("decision_reason"), granted_fields=answer.get("granted_fields"),
    )  # fmt: skip
    session.add(application)
    session.flush()
    audit.record(
        session, actor, "nodes.apply", target=f"{node_id}/{code}", target_type="node-resource",
        purpose=purpose,
        detail=_json(remote_id=application.remote_id, status=application.status,
                     fields=list(fields), row_filter=row_filter),
    )  # fmt: skip
    return application


def receive_application(
    session: Session, node: Node, payload: Mapping[str, Any], *, on_behalf_of: str | None
) -> Application:
    """A node's department applies here: known from then on as that node's department."""
    consumer = payload.get("consumer")
    if not isinstance(consumer, Mapping):
        raise Invalid("consumer is required", field="consumer")
    org = _adopt(session, node, consumer)
    actor = node_principal(node, org, on_behalf_of=on_behalf_of)
    try:
        expires_at = datetime.fromisoformat(str(payload.get("expires_at") or ""))
    except ValueError:
        raise Invalid("give the end with its time zone", field="expires_at") from None
    row_filter = payload.get("row_filter")
    if row_filter is not None and not isinstance(row_filter, str):
        raise Invalid("row_filter is a filter in the query language", field="row_filter")
    fields = payload.get("fields")
    if not isinstance(fields, list):
        raise Invalid("fields is a list of field names", field="fields")
    return exchange.apply(
        session, actor, resource=str(payload.get("resource") or ""),
        purpose=str(payload.get("purpose") or ""),
        legal_basis=str(payload.get("legal_basis") or ""),
        fields=[str(f) for f in fields], expires_at=expires_at, row_filter=row_filter or None,
    )  # fmt: skip


def _adopt(session: Session, node: Node, consumer: Mapping[str, Any]) -> Organization:
    """The local organisation standing for the node's department; made on its first application."""
    code = str(consumer.get("code") or "")
    link = session.scalars(
        select(NodeOrganization).where(
            NodeOrganization.node_id == node.id, NodeOrganization.remote_code == code
        )
    ).first()
    if link is not None:
        return link.organization
    uscc = str(consumer.get("uscc") or "")
    if session.scalars(select(Organization.id).where(
            (Organization.uscc == uscc) | (Organization.code == code))).first() is not None:  # fmt: skip
        # A department of this node (or of another) is never taken over by a node's word.
        raise Forbidden(f"department {code} is not node {node.node_id}'s here",
                        code="node-consumer-taken")  # fmt: skip
    org = orgs.create_organization(
        session, Principal.system(on_behalf_of=f"node:{node.node_id}"), code=code,
        name=str(consumer.get("name") or code), uscc=uscc,
        division_code=str(consumer.get("division_code") or ""),
    )  # fmt: skip
    session.add(NodeOrganization(organization_id=org.id, node_id=node.id, remote_code=code))
    session.flush()
    return org


def application_answer(session: Session, application: Application) -> dict[str, Any]:
    """What a node hears of its application: state, reason, and the grant's fields."""
    granted = None
    if application.status == ApplicationStatus.APPROVED:
        grant = session.scalars(select(Grant).where(Grant.application_id == application.id)).first()
        granted = list(grant.fields) if grant is not None else None
    return {"id": application.id, "status": application.status,
            "decision_reason": application.decision_reason, "granted_fields": granted}  # fmt: skip


def application_for_node(
    session: Session, node: Node, application_id: int, *, consumer: str, on_behalf_of: str | None
) -> Application:
    """One of the node's department's applications here (the same NotFound otherwise)."""
    actor = delegate(session, node, consumer=consumer, on_behalf_of=on_behalf_of)
    application = exchange.access_application(session, actor, application_id)
    if application.consumer_id != actor.organization_id:
        raise NotFound(f"no application {application_id}")
    return application


def list_remote_applications(session: Session, actor: Principal) -> list[NodeApplication]:
    """The department's applications to other nodes, newest first."""
    authorize(session, actor, "exchange.read")
    return list(session.scalars(
        select(NodeApplication).where(NodeApplication.consumer_id == actor.organization_id)
        .order_by(NodeApplication.id.desc()).limit(200)))  # fmt: skip


def refresh_application(
    session: Session, actor: Principal, link: Link, application_id: int
) -> NodeApplication:
    """Ask the providing node how the department's application stands."""
    authorize(session, actor, "exchange.read")
    found = session.get(NodeApplication, application_id)
    if found is None or found.consumer_id != actor.organization_id:
        raise NotFound(f"no application {application_id}")
    _refresh(found, link, actor)
    return found


def _refresh(application: NodeApplication, link: Link, actor: Principal) -> None:
    try:
        answer = link.call(application.node, "GET",
                           f"/api/v1/node-link/applications/{application.remote_id}",
                           headers=_behalf(application.consumer.code, actor.label))  # fmt: skip
    except PeerRefused as exc:
        raise _relayed(exc, application.node) from None
    application.status = str(answer["status"])
    application.decision_reason = answer.get("decision_reason")
    application.granted_fields = answer.get("granted_fields")
    application.checked_at = clock.now()


# --- reading through the province ------------------------------------------------------------


def _behalf(consumer: str, on_behalf_of: str) -> dict[str, str]:
    # Header values in a signature base are ASCII: the label is percent-encoded.
    return {"minyun-consumer": consumer, "minyun-on-behalf-of": quote(on_behalf_of, safe=":@")}


def behalf_of(headers: Mapping[str, str]) -> tuple[str, str | None]:
    """The department code and person a node's request names (signed headers)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    consumer = lowered.get("minyun-consumer", "")
    if not consumer:
        raise Invalid("minyun-consumer names the department", field="minyun-consumer")
    person = lowered.get("minyun-on-behalf-of")
    return consumer, unquote(person)[:100] if person else None


def _may_read_remote(session: Session, actor: Principal, action: str, target: str | None) -> bool:
    """The capability check of a read through this node: a reader of a department holding an
    approved application for the node's resource (the node's own grant decides the rest)."""
    if action != READ_ACTION or target is None or "/" not in target:
        return False
    if not exchange._reader(actor):
        return False
    node_id, code = target.split("/", 1)
    return session.scalars(
        select(NodeApplication.id).join(Node, Node.id == NodeApplication.node_id).where(
            Node.node_id == node_id, NodeApplication.resource_code == code,
            NodeApplication.consumer_id == actor.organization_id,
            NodeApplication.status == ApplicationStatus.APPROVED,
        )
    ).first() is not None  # fmt: skip


if _may_read_remote not in GRANT_CHECKS:
    GRANT_CHECKS.append(_may_read_remote)


@dataclass(frozen=True)
class RemoteRows:
    node: str
    resource: str
    rows: list[dict[str, Any]]
    fields: list[str]
    version: int | None
    keys: list[str] | None


def read_remote(
    session: Session,
    actor: Principal,
    link: Link,
    *,
    node_id: str,
    code: str,
    fields: str | None = None,
    filter: str | None = None,
    limit: int = 100,
    purpose: str | None = None,
) -> RemoteRows:
    """Rows of another node's resource, read on the consumer's behalf; audited on both nodes."""
    target = f"{node_id}/{code}"
    if not _may_read_remote(session, actor, READ_ACTION, target):
        # An application still waiting may have been decided since: ask once before refusing.
        waiting = session.scalars(
            select(NodeApplication).join(Node, Node.id == NodeApplication.node_id).where(
                Node.node_id == node_id, Node.status == NodeStatus.ACTIVE,
                NodeApplication.resource_code == code,
                NodeApplication.consumer_id == actor.organization_id,
                NodeApplication.status == ApplicationStatus.SUBMITTED,
            )
        ).all()  # fmt: skip
        for application in waiting:
            _refresh(application, link, actor)
        session.flush()
    # Refused (and audited) before anything about the resource is looked up or revealed.
    authorize(session, actor, READ_ACTION, target=target, target_type="node-resource",
              purpose=purpose)  # fmt: skip
    resource = remote_resource(session, actor, node_id, code)
    consumer = session.get(Organization, actor.organization_id)
    if consumer is None:  # a reader always has a department (exchange._reader)
        raise Forbidden("only a department reads", code="not-a-department")
    params = {"fields": fields, "filter": filter, "limit": limit, "purpose": purpose}
    try:
        answer = link.call(resource.node, "GET", f"/api/v1/node-link/resources/{code}/rows",
                           params=params, headers=_behalf(consumer.code, actor.label))  # fmt: skip
    except PeerRefused as exc:
        error = _relayed(exc, resource.node)
        error.audit = audit.Pending(actor, "nodes.read", target=target,
                                    target_type="node-resource", purpose=purpose,
                                    outcome=audit.Outcome.DENIED, detail=str(error))  # fmt: skip
        raise error from None
    rows = list(answer.get("rows") or [])
    keys = answer.get("keys")
    audit.record_read(
        session, actor, "nodes.read", target=target, target_type="node-resource",
        keys=keys, count=len(rows), purpose=purpose,
        detail=_json(node=node_id, fields=answer.get("fields"), filter=filter,
                     version=answer.get("version")),
    )  # fmt: skip
    return RemoteRows(node_id, code, rows, list(answer.get("fields") or []),
                      answer.get("version"), keys)  # fmt: skip


def serve_rows(
    session: Session,
    lake: Lake,
    node: Node,
    *,
    consumer: str,
    on_behalf_of: str | None,
    code: str,
    fields: str | None,
    filter: str | None,
    limit: int,
    purpose: str | None,
) -> RowsPage:
    """Rows for a node's department: its grant here plans them (authorize → AccessPlan → the
    core reader), and the read is audited with the node and the person behind it."""
    actor = delegate(session, node, consumer=consumer, on_behalf_of=on_behalf_of)
    return query.query_rows(session, lake, actor, code, fields=fields, filter=filter,
                            limit=limit, purpose=purpose)  # fmt: skip


def _json(**values: Any) -> str:
    shown = {k: v for k, v in values.items() if v not in (None, [], "")}
    return json.dumps(shown, ensure_ascii=False, sort_keys=True)
