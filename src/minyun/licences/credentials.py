"""The credential: W3C Verifiable Credentials 2.0 secured with JOSE (VC-JOSE-COSE), the
issuers' did:web documents, the W3C Bitstring Status List, and an offline verifier.

Nothing here touches the database: `service` gives it keys, subjects and status bits. A
credential is a compact JWS whose protected header is `{"alg": "Ed25519", "kid": "<did>#key-n",
"typ": "vc+jwt", "cty": "vc"}` and whose payload is the credential itself (VC-JOSE-COSE §3.1:
no `vc` claim wrapper). Its `credentialStatus` names two entries of the issuer's status
lists (revocation, suspension) at the same index; each list is itself a `vc+jwt` signed by
the issuer.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
TYP = "vc+jwt"
MEDIA_TYPE = "application/vc+jwt"
ALG = "Ed25519"  # RFC 9864 fully-specified EdDSA over Ed25519 (verifiers also accept "EdDSA")
# Bitstring Status List §2.1: at least 16 KB (131,072 entries), so one entry says little.
LIST_BITS = 131_072
STATUS_TTL = timedelta(minutes=5)  # a verifier may keep a status list this long
PURPOSES = ("revocation", "suspension")


# --- did:web ----------------------------------------------------------------------------


def issuer_did(base_url: str, org_code: str) -> str:
    """The did:web DID of an issuing department of the node at `base_url`."""
    parts = urlsplit(base_url)
    host = quote(parts.netloc, safe="")  # did:web percent-encodes the port's colon
    path = [p for p in parts.path.split("/") if p]
    return ":".join(["did:web", host, *path, "licences", "issuers", org_code])


def did_document_url(did: str, *, scheme: str = "https") -> str:
    """Where the did:web method says the DID's document lives (`scheme` http for a local node)."""
    if not did.startswith("did:web:"):
        raise ValueError(f"not a did:web DID: {did}")
    host, *path = did.removeprefix("did:web:").split(":")
    tail = "/".join(unquote(p) for p in path)
    return f"{scheme}://{unquote(host)}/{tail}/did.json" if tail else (
        f"{scheme}://{unquote(host)}/.well-known/did.json"
    )  # fmt: skip


def signing_key(seed: bytes) -> Ed25519PrivateKey:
    """An Ed25519 key from a 32-byte seed (an issuer's keys are derived from the node key)."""
    return Ed25519PrivateKey.from_private_bytes(seed[:32])


def public_jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of a signing key (RFC 8037), as the DID document lists it."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid}


def did_document(did: str, keys: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The DID document: one JsonWebKey verification method per (fragment, public JWK)."""
    methods = [
        {"id": f"{did}#{fragment}", "type": "JsonWebKey", "controller": did, "publicKeyJwk": jwk}
        for fragment, jwk in keys
    ]
    ids = [m["id"] for m in methods]
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/jwk/v1"],
        "id": did,
        "verificationMethod": methods,
        "assertionMethod": ids,
    }


# --- signing ----------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _okp(key: Ed25519PrivateKey | dict[str, Any]) -> OKPKey:
    if isinstance(key, dict):
        return OKPKey.import_key({k: v for k, v in key.items() if k in ("kty", "crv", "x")})
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return OKPKey.import_key(pem)


class Signer:
    """Signs documents as `vc+jwt` with one issuer key; keeps its imported JWK."""

    def __init__(self, key: Ed25519PrivateKey, kid: str) -> None:
        self.kid = kid
        self._jwk = _okp(key)

    def sign(self, document: Mapping[str, Any]) -> str:
        """The compact JWS of `document` (the credential is the payload)."""
        header = {"alg": ALG, "kid": self.kid, "typ": TYP, "cty": "vc"}
        payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return jws.serialize_compact(header, payload, self._jwk, algorithms=[ALG])


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def status_entries(list_urls: Mapping[str, str], index: int) -> list[dict[str, Any]]:
    """The credential's `credentialStatus`: one BitstringStatusListEntry per purpose."""
    return [
        {
            "id": f"{list_urls[purpose]}#{index}",
            "type": "BitstringStatusListEntry",
            "statusPurpose": purpose,
            "statusListIndex": str(index),
            "statusListCredential": list_urls[purpose],
        }
        for purpose in PURPOSES
    ]


# --- the status list --------------------------------------------------------------------


def empty_bits(size: int = LIST_BITS) -> bytes:
    return bytes(size // 8)


def set_bit(bits: bytes, index: int, value: bool) -> bytes:
    """The bitstring with entry `index` set; index 0 is the first byte's most significant bit."""
    data = bytearray(bits)
    if index // 8 >= len(data):
        data.extend(bytes(max(len(data), index // 8 + 1 - len(data))))
    mask = 0x80 >> (index % 8)
    data[index // 8] = (data[index // 8] | mask) if value else (data[index // 8] & ~mask)
    return bytes(data)


def get_bit(bits: bytes, index: int) -> bool:
    if index < 0 or index // 8 >= len(bits):
        raise IndexError(f"status list index {index} is outside the list")
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


def encode_list(bits: bytes) -> str:
    """`encodedList`: the Multibase base64url (prefix "u", no padding) of the GZIP'd bits."""
    return "u" + b64url(gzip.compress(bits, mtime=0))


def decode_list(encoded: str) -> bytes:
    if not encoded.startswith("u"):
        raise ValueError("encodedList is not Multibase base64url")
    return gzip.decompress(b64url_decode(encoded[1:]))


def status_list_credential(
    url: str, issuer: str, purpose: str, bits: bytes, *, now: datetime
) -> dict[str, Any]:
    """The BitstringStatusListCredential of one purpose, valid for one cache lifetime."""
    return {
        "@context": [VC_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer,
        "validFrom": iso(now),
        "validUntil": iso(now + STATUS_TTL * 2),
        "credentialSubject": {
            "id": f"{url}#list",
            "type": "BitstringStatusList",
            "statusPurpose": purpose,
            "encodedList": encode_list(bits),
            "ttl": int(STATUS_TTL.total_seconds() * 1000),
        },
    }


# --- verifying --------------------------------------------------------------------------


class Outcome(StrEnum):
    VALID = "valid"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    FORGED = "forged"  # tampered, a foreign or retired key, not a credential at all
    UNKNOWN = "unknown"  # genuine, but its status could not be learnt (no status list)


@dataclass(frozen=True)
class TrustedKey:
    """An issuer key a verifier knows: its public JWK, state, and when it stopped signing."""

    jwk: dict[str, Any]
    status: str = "active"
    rotated_at: datetime | None = None


@dataclass(frozen=True)
class Verification:
    outcome: Outcome
    reason: str
    credential: dict[str, Any] | None = None
    kid: str | None = None


@dataclass
class Verifier:
    """Verifies credentials offline: known issuer keys, status lists fetched or cached.

    `fetch(url)` returns a status list's compact JWS (None when it cannot be had); lists are
    kept for their `ttl`. The same class serves the node's verify page and an offline
    counter that loaded the keys and lists once.
    """

    keys: dict[str, TrustedKey]
    fetch: Callable[[str], str | None] | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    lists: dict[str, tuple[bytes, datetime, str]] = field(default_factory=dict)

    @classmethod
    def offline(
        cls, bundle: Mapping[str, Any], *, clock: Callable[[], datetime] | None = None
    ) -> Verifier:
        """A verifier for a counter without a network: the issuers' DID documents and the
        signed status lists of a trust bundle (`/licences/trust-bundle`), taken once."""
        keys = {
            str(method["id"]): TrustedKey(dict(method["publicKeyJwk"]))
            for document in bundle.get("issuers", [])
            for method in document.get("verificationMethod", [])
        }
        lists = dict(bundle.get("status_lists", {}))
        return cls(keys, fetch=lists.get, clock=clock or (lambda: datetime.now(UTC)))

    def verify(self, token: str) -> Verification:
        """Valid, revoked, suspended, expired, forged or unknown, with the reason."""
        checked = self._checked(token.strip())
        if isinstance(checked, Verification):
            return checked
        credential, kid = checked
        now = self.clock()
        try:
            valid_from = parse_iso(str(credential["validFrom"]))
            until = credential.get("validUntil")
            valid_until = parse_iso(str(until)) if until else None
        except (KeyError, ValueError):
            return Verification(
                Outcome.FORGED, "the credential has no valid dates", credential, kid
            )
        if valid_from > now + timedelta(minutes=5):
            return Verification(Outcome.EXPIRED, "the credential is not valid yet", credential, kid)
        if valid_until is not None and valid_until < now:
            return Verification(Outcome.EXPIRED, f"expired on {iso(valid_until)}", credential, kid)
        for entry in _entries(credential):
            state = self._status(entry, kid.split("#")[0])
            if isinstance(state, Verification):
                return Verification(state.outcome, state.reason, credential, kid)
            if state:
                purpose = entry.get("statusPurpose")
                outcome = Outcome.SUSPENDED if purpose == "suspension" else Outcome.REVOKED
                return Verification(outcome, f"its issuer {outcome} it", credential, kid)
        return Verification(Outcome.VALID, "signature, dates and status check", credential, kid)

    def _checked(self, token: str) -> tuple[dict[str, Any], str] | Verification:
        """The credential and its key id when the JWS is genuine; a refusal otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return Verification(Outcome.FORGED, "not a compact JWS credential")
        try:
            header = json.loads(b64url_decode(parts[0]))
        except ValueError:
            return Verification(Outcome.FORGED, "the header is not JSON")
        if not isinstance(header, dict) or header.get("typ") != TYP:
            return Verification(Outcome.FORGED, "not a vc+jwt credential")
        kid = str(header.get("kid", ""))
        if header.get("alg") not in (ALG, "EdDSA"):
            return Verification(Outcome.FORGED, f"algorithm {header.get('alg')} is not accepted")
        known = self.keys.get(kid)
        if known is None:
            return Verification(Outcome.FORGED, "signed by a key no trusted issuer holds", kid=kid)
        if known.status == "retired":
            return Verification(Outcome.FORGED, "signed by a retired key", kid=kid)
        try:
            payload = jws.deserialize_compact(
                token, _okp(known.jwk), algorithms=[str(header["alg"])]
            ).payload
            credential = json.loads(payload)
        except (JoseError, ValueError):
            return Verification(Outcome.FORGED, "the signature does not match", kid=kid)
        if not isinstance(credential, dict):
            return Verification(Outcome.FORGED, "not a credential", kid=kid)
        issuer = credential.get("issuer")
        issuer_id = issuer.get("id") if isinstance(issuer, dict) else issuer
        if issuer_id != kid.split("#")[0]:
            return Verification(Outcome.FORGED, "the issuer does not own the key", credential, kid)
        if known.rotated_at is not None:
            # `iat` (VC-JOSE-COSE allows the JWT claims beside the credential's own): when
            # it was signed; a rotated key signs nothing after its rotation.
            signed = credential.get("iat")
            if not isinstance(signed, int) or signed > known.rotated_at.timestamp():
                return Verification(Outcome.FORGED, "signed after its key was rotated", kid=kid)
        return credential, kid

    def _status(self, entry: Mapping[str, Any], issuer: str) -> bool | Verification:
        url = str(entry.get("statusListCredential", ""))
        try:
            index = int(entry.get("statusListIndex", ""))
        except ValueError:
            return Verification(Outcome.FORGED, "the status entry has no index")
        bits = self._list(url, issuer, str(entry.get("statusPurpose")))
        if isinstance(bits, Verification):
            return bits
        try:
            return get_bit(bits, index)
        except IndexError:
            return Verification(Outcome.FORGED, "the status index is outside its list")

    def _list(self, url: str, issuer: str, purpose: str) -> bytes | Verification:
        now = self.clock()
        cached = self.lists.get(url)
        if cached is not None and cached[1] > now:
            return cached[0]
        token = self.fetch(url) if self.fetch is not None else None
        if token is None:
            if cached is not None:  # stale, but the best there is offline: say so
                return Verification(Outcome.UNKNOWN, "the status list is out of date offline")
            return Verification(Outcome.UNKNOWN, f"the status list {url} cannot be fetched")
        checked = self._checked(token)
        if isinstance(checked, Verification):
            return Verification(
                Outcome.UNKNOWN, f"the status list is not genuine: {checked.reason}"
            )
        document, kid = checked
        subject = document.get("credentialSubject") or {}
        if kid.split("#")[0] != issuer or subject.get("statusPurpose") != purpose:
            return Verification(Outcome.UNKNOWN, "the status list belongs to another issuer")
        try:
            bits = decode_list(str(subject.get("encodedList", "")))
        except (ValueError, OSError):
            return Verification(Outcome.UNKNOWN, "the status list cannot be decoded")
        ttl = timedelta(milliseconds=int(subject.get("ttl", 0) or 0))
        self.lists[url] = (bits, now + ttl, token)
        return bits


def _entries(credential: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = credential.get("credentialStatus")
    if status is None:
        return []
    return [s for s in (status if isinstance(status, list) else [status]) if isinstance(s, dict)]


def peek(token: str) -> dict[str, Any] | None:
    """The unverified payload of a compact JWS, or None (to show what a refused one claims)."""
    try:
        payload = json.loads(b64url_decode(token.strip().split(".")[1]))
    except (ValueError, IndexError):
        return None
    return payload if isinstance(payload, dict) else None
