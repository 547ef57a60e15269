"""The proxy service (代理服务): a consumer's call forwarded to the provider's own endpoint.

Some providers answer from their own systems (a live status, a computation) rather than from
a resource's rows. The provider registers its endpoint for a resource; a consumer holding a
grant on the resource (or the provider's own readers) calls
`/api/v1/resources/{code}/proxy/{path}`, and minyun:

1. plans the read like any other (`catalog.access_data`: no grant, no call) and counts it on
   the grant's rate limit;
2. forwards the call, without the consumer's credentials, adding who is calling, why and under
   which grant (`minyun-consumer`, `minyun-purpose`, `minyun-grant`), signed with the node's
   Ed25519 key as an HTTP Message Signature (RFC 9421, `http-message-signatures`) covering
   method, target, those fields and the body's Content-Digest, with a fresh nonce and the tag
   `minyun-proxy`;
3. records the call in its audit chain (purpose, grant, path, status, nonce).

The provider's side verifies with `ProxyVerifier` (minyun's public key from
`/api/v1/proxy/key`; age, tag, nonce seen once, body digest) and logs the same call with the
same nonce: one call, logged on both sides, tied together.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote as urlquote
from urllib.parse import unquote

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.core import audit, policies, quotas
from minyun.core.errors import Invalid, NotFound
from minyun.core.keys import NodeKey
from minyun.core.security import Principal
from minyun.exchange.models import ProxyService
from minyun.orgs.models import Organization
from minyun.push.service import check_url

TAG = "minyun-proxy"
COVERED = ("@method", "@authority", "@target-uri", "minyun-consumer", "minyun-purpose",
           "minyun-grant")  # fmt: skip
METHODS = frozenset({"GET", "POST"})
TIMEOUT = 10.0
MAX_BODY = 10 * 1024 * 1024
MAX_AGE = timedelta(minutes=5)
# Headers of the provider's answer passed back to the consumer.
PASSED_BACK = ("content-type", "content-language", "cache-control")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    nonce: str


class _NodeKeys(HTTPSignatureKeyResolver):
    def __init__(self, key: NodeKey) -> None:
        self.key = key

    def resolve_private_key(self, key_id: str) -> Any:
        return self.key.private

    def resolve_public_key(self, key_id: str) -> Any:
        return self.key.public


def register(session: Session, actor: Principal, code: str, *, endpoint: str,
             allow_private: bool) -> ProxyService:  # fmt: skip
    """Register (or move) the provider's endpoint of a resource; its managers only."""
    resource = catalog.access_resource(session, actor, code)
    if not policies.manages(actor, resource.provider_id):
        error = catalog_forbidden(actor, code)
        raise error
    url = check_url(endpoint.strip(), allow_private=allow_private).rstrip("/")
    found = session.scalars(select(ProxyService).where(ProxyService.resource_id == resource.id))
    service = found.first()
    if service is None:
        service = ProxyService(resource=resource, endpoint=url, created_by=actor.label)
        session.add(service)
    service.endpoint, service.active = url, True
    session.flush()
    audit.record(session, actor, "exchange.proxy-register", target=code, target_type="resource",
                 detail=url)  # fmt: skip
    return service


def catalog_forbidden(actor: Principal, code: str) -> Exception:
    from minyun.core.errors import Forbidden

    error = Forbidden("only the providing department registers its endpoint")
    error.audit = audit.Pending(
        actor=actor, action="exchange.proxy-register", target=code, target_type="resource",
        outcome=audit.Outcome.DENIED, detail=str(error),
    )  # fmt: skip
    return error


def call(
    session: Session,
    key: NodeKey,
    actor: Principal,
    code: str,
    *,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    content_type: str | None = None,
    purpose: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Answer:
    """Forward one call to the provider's endpoint, signed; audited on minyun's side."""
    if method not in METHODS:
        raise Invalid(f"the proxy forwards {', '.join(sorted(METHODS))}", field="method")
    if ".." in unquote(path).split("/") or len(body) > MAX_BODY:
        raise Invalid("not a path or body the proxy forwards", field="path")
    plan = catalog.access_data(session, actor, code, policies.READ, purpose=purpose)
    quotas.admit(session, plan)
    service = session.scalars(
        select(ProxyService).where(
            ProxyService.resource_id == plan.resource.id, ProxyService.active.is_(True)
        )
    ).first()
    if service is None:
        raise NotFound(f"resource {code} has no proxy service")
    org = session.get(Organization, actor.organization_id) if actor.organization_id else None
    nonce = secrets.token_urlsafe(16)
    target = f"{service.endpoint}/{path.lstrip('/')}" + (f"?{query}" if query else "")
    headers = {
        "minyun-consumer": org.code if org else actor.label,
        "minyun-purpose": urlquote(plan.purpose or "", safe=""),
        "minyun-grant": plan.reason if plan.policy == "grant" else plan.policy,
    }
    if content_type:
        headers["content-type"] = content_type
    request = httpx.Request(method, target, headers=headers, content=body)
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_NodeKeys(key))
    signer.sign(request, key_id=key.kid, nonce=nonce, tag=TAG, covered_component_ids=COVERED,
                body=body)  # fmt: skip
    detail = f"{method} /{path.lstrip('/')}; {headers['minyun-grant']}; nonce={nonce}"
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False, transport=transport) as client:
            answer = client.send(request)
            content = answer.read()[:MAX_BODY]
    except httpx.HTTPError as exc:
        audit.record_read(session, actor, "exchange.proxy", target=code, target_type="resource",
                          purpose=plan.purpose, outcome=audit.Outcome.FAILED,
                          detail=f"{detail}; error={type(exc).__name__}")  # fmt: skip
        raise ProxyUnreachable(f"the provider's endpoint did not answer: {type(exc).__name__}") \
            from None  # fmt: skip
    ok = 200 <= answer.status_code < 300
    audit.record_read(
        session, actor, "exchange.proxy", target=code, target_type="resource",
        purpose=plan.purpose, outcome=audit.Outcome.SUCCESS if ok else audit.Outcome.FAILED,
        detail=f"{detail}; status={answer.status_code}; bytes={len(content)}",
    )  # fmt: skip
    passed = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_BACK}
    return Answer(answer.status_code, content, passed, nonce)


class ProxyUnreachable(NotFound):
    code = "proxy-unreachable"
    title = "The provider's endpoint did not answer"


def public_key(key: NodeKey) -> dict[str, str]:
    """The key providers verify proxied calls with."""
    pem = key.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {"keyid": key.kid, "alg": "ed25519", "tag": TAG, "public_key_pem": pem.decode()}


# --- the provider's side ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProxiedCall:
    """A verified call as the provider logs it."""

    consumer: str
    purpose: str
    grant: str
    nonce: str
    key_id: str


class ProxyRejected(Exception):
    """A call the provider must not answer: unsigned, altered, too old, replayed."""


class ProxyVerifier:
    """What a provider's endpoint runs on each call from minyun (RFC 9421 signatures)."""

    def __init__(self, public_key_pem: str, key_id: str, *, remember: int = 100_000) -> None:
        loaded = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("minyun's proxy key is an Ed25519 key")
        self._key_id = key_id
        self._verifier = HTTPMessageVerifier(
            signature_algorithm=algorithms.ED25519, key_resolver=_Public(key_id, loaded)
        )
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def verify(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> ProxiedCall:
        request = httpx.Request(method, url, headers=dict(headers), content=body)
        try:
            results = self._verifier.verify(request, max_age=MAX_AGE, expect_tag=TAG,
                                            require_components=COVERED, body=body)  # fmt: skip
        except (InvalidSignature, HTTPMessageSignaturesException, KeyError) as exc:
            raise ProxyRejected(f"bad signature: {exc}") from exc
        params = results[0].parameters
        nonce = str(params.get("nonce") or "")
        if not nonce or params.get("keyid") != self._key_id:
            raise ProxyRejected("the signature names no nonce or another key")
        with self._lock:
            if nonce in self._seen:
                raise ProxyRejected(f"call {nonce} was already received (a replay)")
            self._seen[nonce] = None
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        lower = {k.lower(): v for k, v in headers.items()}
        return ProxiedCall(lower["minyun-consumer"], unquote(lower["minyun-purpose"]),
                           lower["minyun-grant"], nonce, self._key_id)  # fmt: skip


class _Public(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: Ed25519PublicKey) -> None:
        self.key_id, self.key = key_id, key

    def resolve_public_key(self, key_id: str) -> Any:
        if key_id != self.key_id:
            raise KeyError(f"unknown key {key_id}")
        return self.key

    def resolve_private_key(self, key_id: str) -> Any:
        raise KeyError("a verifier holds no private key")
