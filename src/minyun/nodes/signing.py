"""Node-to-node requests signed with HTTP Message Signatures (RFC 9421) over Ed25519.

A request covers its method, its whole target URI (the receiving node's own base URL, so it
cannot be sent to another node), its `minyun-*` headers (the consumer and the person on whose
behalf, the purpose) and, with a body, its Content-Digest (RFC 9530). The signature's
parameters carry `keyid` (the sending node's id), `created`, `expires` and a random `nonce`;
the receiver refuses a signature past its `expires`, older than `MAX_AGE`, or whose nonce it
has seen (`minyun.nodes.service.authenticate`). Pure functions: no database, no HTTP.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import http_sf
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

LABEL = "minyun"
TAG = "minyun-node"  # the application's tag (RFC 9421 §2.3): a node signature, nothing else
TTL = timedelta(seconds=60)  # a signature's life: created → expires
MAX_AGE = timedelta(seconds=300)  # the longest life a receiver accepts
BASE = ("@method", "@target-uri")


class SignatureRefused(Exception):
    """The signature is missing, malformed, expired, too old or does not verify."""


@dataclass
class _Message:
    """A request as the library reads it: method, absolute URL, header dict (lower-case names)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class _Key(HTTPSignatureKeyResolver):
    def __init__(
        self, *, private: Ed25519PrivateKey | None = None, public: Ed25519PublicKey | None = None
    ) -> None:
        self.private, self.public = private, public

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        if self.private is None:
            raise SignatureRefused("no private key")
        return self.private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        if self.public is None:
            raise SignatureRefused("no public key")
        return self.public


def public_text(key: Ed25519PublicKey) -> str:
    """The key as its raw 32 bytes in base64url: how the registry keeps a node's key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_public(text: str) -> Ed25519PublicKey:
    """A node's public key from base64url raw bytes or a PEM block; ValueError otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64url") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign_request(
    private: Ed25519PrivateKey,
    key_id: str,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    now: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The request's headers with `Signature-Input`, `Signature` (and `Content-Digest`)."""
    message = _Message(method.upper(), url, {k.lower(): v for k, v in (headers or {}).items()})
    covered = [*BASE, *sorted(h for h in message.headers if h.startswith("minyun-"))]
    created = now or datetime.now(UTC)
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_Key(private=private)
    ).sign(
        message,
        key_id=key_id,
        created=created,
        expires=created + TTL,
        nonce=nonce or secrets.token_urlsafe(18),
        label=LABEL,
        tag=TAG,
        covered_component_ids=covered,
        body=body or None,
    )
    return message.headers


@dataclass(frozen=True)
class Verified:
    key_id: str
    nonce: str
    created: datetime
    expires: datetime


def claimed_key_id(headers: Mapping[str, str]) -> str | None:
    """The `keyid` the request's signature claims, before anything is verified (for lookup)."""
    value = next((v for k, v in headers.items() if k.lower() == "signature-input"), None)
    if not value:
        return None
    try:
        parsed: Any = http_sf.parse(value.encode(), tltype="dictionary")
        member = parsed.get(LABEL)
        keyid = member[1].get("keyid") if member else None
    except Exception:  # a malformed header claims nothing
        return None
    return keyid if isinstance(keyid, str) and 0 < len(keyid) <= 64 else None


def verify_request(
    public: Ed25519PublicKey,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
) -> Verified:
    """The verified signature's parameters; SignatureRefused for anything wrong with it."""
    lowered = {k.lower(): v for k, v in headers.items()}
    message = _Message(method.upper(), url, lowered)
    required = [*BASE, *sorted(h for h in lowered if h.startswith("minyun-"))]
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519, key_resolver=_Key(public=public)
    )
    try:
        [result] = verifier.verify(
            message, max_age=MAX_AGE, expect_tag=TAG, require_components=required, body=body
        )
    except (HTTPMessageSignaturesException, ValueError) as exc:
        raise SignatureRefused(str(exc) or type(exc).__name__) from exc
    params = result.parameters
    nonce, created, expires = params.get("nonce"), params.get("created"), params.get("expires")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise SignatureRefused("the signature needs a nonce of 16 to 64 characters")
    if not isinstance(created, int) or not isinstance(expires, int):
        raise SignatureRefused("the signature needs created and expires")
    if expires - created > MAX_AGE.total_seconds():
        raise SignatureRefused(f"a signature lives at most {int(MAX_AGE.total_seconds())} s")
    return Verified(
        key_id=str(params["keyid"]),
        nonce=nonce,
        created=datetime.fromtimestamp(created, UTC),
        expires=datetime.fromtimestamp(expires, UTC),
    )


# --- answers --------------------------------------------------------------------------------

RESPONSE_TAG = "minyun-node-response"
# An answer covers its status, its type and body, and the request it answers: that request's
# method, target and signature (RFC 9421 §2.4), so it cannot be passed off as another's answer.
RESPONSE_COVERED = ("@status", "content-type", '"@method";req', '"@target-uri";req',
                    f'"signature";req;key="{LABEL}"')  # fmt: skip


@dataclass
class _Response:
    status_code: int
    headers: dict[str, str]
    request: _Message


def _answer(
    status: int, headers: Mapping[str, str], request: tuple[str, str, Mapping[str, str]]
) -> _Response:
    method, url, request_headers = request
    asked = _Message(method.upper(), url, {k.lower(): v for k, v in request_headers.items()})
    return _Response(status, {k.lower(): v for k, v in headers.items()}, asked)


def sign_response(
    private: Ed25519PrivateKey,
    key_id: str,
    *,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    request: tuple[str, str, Mapping[str, str]],
) -> dict[str, str]:
    """The answer's headers with its signature, bound to the signed request it answers."""
    answer = _answer(status, headers, request)
    created = datetime.now(UTC)
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Key(private=private)).sign(
        answer, key_id=key_id, created=created, expires=created + TTL, label=LABEL,
        tag=RESPONSE_TAG, covered_component_ids=RESPONSE_COVERED, body=body,
    )  # fmt: skip
    return answer.headers


def verify_response(
    public: Ed25519PublicKey,
    key_id: str,
    *,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    request: tuple[str, str, Mapping[str, str]],
) -> None:
    """Nothing if the answer is signed by `key_id`'s key for this request; SignatureRefused."""
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519, key_resolver=_Key(public=public)
    )
    try:
        [result] = verifier.verify(
            _answer(status, headers, request), max_age=MAX_AGE, expect_tag=RESPONSE_TAG,
            require_components=RESPONSE_COVERED, body=body,
        )  # fmt: skip
    except (HTTPMessageSignaturesException, ValueError) as exc:
        raise SignatureRefused(str(exc) or type(exc).__name__) from exc
    if result.parameters.get("keyid") != key_id:
        raise SignatureRefused(f"the answer is signed by {result.parameters.get('keyid')!r}")
