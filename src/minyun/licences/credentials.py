"""The credential: W3C Verifiable Credentials 2.0 secured with JOSE (VC-JOSE-COSE), the
issuers' did:web documents, the W3C Bitstring Status List, and an offline verifier.

Nothing here touches the database: `service` gives it keys, subjects and status bits. A
credential is a compact JWS whose protected header is `{"alg": "Ed25519", "kid": "<did>#key-n",
"typ": "vc+jwt", "cty": "vc"}` and whose payload is the credential itself (VC-JOSE-COSE §3.1:
no `vc` claim wrapper). An issuer of a national-standard deployment signs with SM2 instead
(GB/T 32918, `alg` "SM2SM3", decision 0013): the same JWS, the key a JWK of `kty` "EC" and
`crv` "SM2". Its `credentialStatus` names two entries of the issuer's status
lists (revocation, suspension) at the same index; each list is itself a `vc+jwt` signed by
the issuer.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gmssl import sm2 as gmssl_sm2
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


class KeyAlgorithm(StrEnum):
    """What an issuer's key signs with."""

    ED25519 = "Ed25519"
    SM2 = "SM2"  # GB/T 32918.2 signature with SM3 (GB/T 32905), for national-standard deployments


# JOSE registers no SM2 algorithm: "SM2SM3" names the signature and its digest, as the fully
# specified algorithms of RFC 9864 do (decision 0013).
SM2_ALG = "SM2SM3"
SM2_CURVE = "SM2"  # the JWK `crv` of the recommended curve sm2p256v1 (GB/T 32918.5)
# The distinguishing identifier every signer and verifier uses unless they agreed another
# (GM/T 0009-2012): its length and bytes open Z_A. gmssl hashes exactly this one into Z_A
# (it takes no other); the standard's worked example in the tests holds it to that.
SM2_UID = b"1234567812345678"


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


def public_jwk(key: Ed25519PrivateKey | SM2PrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of a signing key (RFC 8037 for Ed25519), as the DID document lists it."""
    if isinstance(key, SM2PrivateKey):
        return key.public_key().jwk(kid)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid}


def key_algorithm(jwk: Mapping[str, Any]) -> KeyAlgorithm | None:
    """What a public JWK verifies: Ed25519, SM2, or None for a key of neither kind."""
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return KeyAlgorithm.ED25519
    if jwk.get("kty") == "EC" and jwk.get("crv") == SM2_CURVE:
        return KeyAlgorithm.SM2
    return None


# --- SM2 (GB/T 32918) -------------------------------------------------------------------
# The curve sm2p256v1 of GB/T 32918.5; the arithmetic is gmssl's.
_CURVE = gmssl_sm2.default_ecc_table
_P = int(_CURVE["p"], 16)
_A = int(_CURVE["a"], 16)
_B = int(_CURVE["b"], 16)
_N = int(_CURVE["n"], 16)


def _crypt(private_hex: str, public_hex: str) -> gmssl_sm2.CryptSM2:
    crypt = gmssl_sm2.CryptSM2(private_key=private_hex, public_key="")
    # Set after construction: the constructor strips a leading "04" with str.lstrip, which
    # also eats any 0 or 4 the coordinates start with.
    crypt.public_key = public_hex
    return crypt


@dataclass(frozen=True)
class SM2PublicKey:
    """A point of sm2p256v1, checked to lie on the curve."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if (
            not (0 <= self.x < _P and 0 <= self.y < _P)
            or (self.y * self.y - (self.x**3 + _A * self.x + _B)) % _P
        ):
            raise ValueError("the point is not on the SM2 curve")

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SM2PublicKey:
        """The key of a JWK `{"kty": "EC", "crv": "SM2", "x", "y"}` (32-byte coordinates)."""
        if key_algorithm(jwk) is not KeyAlgorithm.SM2:
            raise ValueError("not an SM2 JWK")
        coordinates = [_strict_b64(str(jwk.get(c, ""))) for c in ("x", "y")]
        if any(len(c) != 32 for c in coordinates):
            raise ValueError("an SM2 JWK's coordinates are 32 bytes each")
        return cls(*(int.from_bytes(c, "big") for c in coordinates))

    def jwk(self, kid: str) -> dict[str, Any]:
        """The public JWK, pinned to `SM2SM3` (RFC 7517 `alg`) so no verifier tries ECDSA."""
        return {"kty": "EC", "crv": SM2_CURVE, "alg": SM2_ALG,
                "x": b64url(self.x.to_bytes(32, "big")), "y": b64url(self.y.to_bytes(32, "big")),
                "kid": kid}  # fmt: skip

    @property
    def hex(self) -> str:
        return f"{self.x:064x}{self.y:064x}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether `signature` (r ‖ s, 32 bytes each) is an SM2 signature of `message` by
        this key: e = SM3(Z_A ‖ message), Z_A over the default user id (GB/T 32918.2 §7)."""
        if len(signature) != 64:
            return False
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        if not (0 < r < _N and 0 < s < _N):  # GB/T 32918.2 §7.1 B1, B2
            return False
        try:
            return bool(_crypt("", self.hex).verify_with_sm3(signature.hex(), message))
        except (TypeError, ValueError):  # t·P_A + s·G at infinity
            return False


class SM2PrivateKey:
    """An SM2 signing key d ∈ [1, n-2] (GB/T 32918.1 §6.1)."""

    def __init__(self, d: int) -> None:
        if not 0 < d < _N - 1:
            raise ValueError("an SM2 private key lies in [1, n-2]")
        self._d = d
        point = gmssl_sm2.CryptSM2(private_key="", public_key="")._kg(d, _CURVE["g"])
        self._public = SM2PublicKey(int(point[:64], 16), int(point[64:], 16))
        self._crypt = _crypt(f"{d:064x}", self._public.hex)

    @classmethod
    def from_seed(cls, seed: bytes) -> SM2PrivateKey:
        """The key of a 32-byte seed (an issuer's keys are derived from the node key)."""
        return cls(1 + int.from_bytes(seed[:32], "big") % (_N - 2))

    def public_key(self) -> SM2PublicKey:
        return self._public

    def sign(self, message: bytes, *, nonce: int | None = None) -> bytes:
        """r ‖ s of `message` (GB/T 32918.2 §6.1), with the default user id. The nonce k is
        drawn from `secrets` (gmssl's own comes from `random`); `nonce` is for the standard's
        worked example only."""
        while True:
            k = nonce if nonce is not None else 1 + secrets.randbelow(_N - 1)
            signed = self._crypt.sign_with_sm3(message, f"{k:064x}")
            if signed:  # None when r = 0, r + k = n or s = 0: draw again
                return bytes.fromhex(signed)
            if nonce is not None:
                raise ValueError("this nonce gives no signature")


def sm2_signing_key(seed: bytes) -> SM2PrivateKey:
    """An SM2 key from a 32-byte seed."""
    return SM2PrivateKey.from_seed(seed)


def _strict_b64(text: str) -> bytes:
    """base64url without padding, refusing any other spelling of the same bytes (a changed
    character must never decode to the same signature)."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if b64url(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _sm2_compact(header: Mapping[str, Any], payload: bytes, key: SM2PrivateKey) -> str:
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(payload)
    )
    return signing_input + "." + b64url(key.sign(signing_input.encode("ascii")))


def _sm2_open(token: str, jwk: Mapping[str, Any]) -> bytes:
    """The payload of an SM2-signed compact JWS; ValueError when the signature fails."""
    head, body, signature = token.split(".")
    if not SM2PublicKey.from_jwk(jwk).verify(
        f"{head}.{body}".encode("ascii"), _strict_b64(signature)
    ):
        raise ValueError("the signature does not match")
    return _strict_b64(body)


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
    """Signs documents as `vc+jwt` with one issuer key (Ed25519 or SM2)."""

    def __init__(self, key: Ed25519PrivateKey | SM2PrivateKey, kid: str) -> None:
        self.kid = kid
        self._key: SM2PrivateKey | OKPKey = key if isinstance(key, SM2PrivateKey) else _okp(key)
        self.alg = SM2_ALG if isinstance(key, SM2PrivateKey) else ALG

    def sign(self, document: Mapping[str, Any]) -> str:
        """The compact JWS of `document` (the credential is the payload)."""
        header = {"alg": self.alg, "kid": self.kid, "typ": TYP, "cty": "vc"}
        payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        if isinstance(self._key, SM2PrivateKey):
            return _sm2_compact(header, payload, self._key)
        return jws.serialize_compact(header, payload, self._key, algorithms=[ALG])


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
        alg = header.get("alg")
        if alg not in (ALG, "EdDSA", SM2_ALG):
            return Verification(Outcome.FORGED, f"algorithm {alg} is not accepted")
        known = self.keys.get(kid)
        if known is None:
            return Verification(Outcome.FORGED, "signed by a key no trusted issuer holds", kid=kid)
        if known.status == "retired":
            return Verification(Outcome.FORGED, "signed by a retired key", kid=kid)
        # The key decides the algorithm: an SM2 key verifies SM2SM3 only, an Ed25519 key EdDSA.
        if (alg == SM2_ALG) != (key_algorithm(known.jwk) is KeyAlgorithm.SM2):
            return Verification(Outcome.FORGED, f"the key does not sign with {alg}", kid=kid)
        try:
            if alg == SM2_ALG:
                payload = _sm2_open(token, known.jwk)
            else:
                payload = jws.deserialize_compact(token, _okp(known.jwk), algorithms=[alg]).payload
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
