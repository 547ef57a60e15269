"""A verifier that shares no code with minyun: jwcrypto (not joserfc), httpx, gzip and base64,
written from the specifications (VC-JOSE-COSE, did:web, Bitstring Status List v1.0). It
resolves the issuer's did:web document and fetches the status list over HTTP."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import httpx
from jwcrypto import jwk, jws
from sqlalchemy import select

from minyun.core.uow import unit_of_work
from minyun.licences import service
from minyun.licences.models import Licence
from tests.licences import kit
from tests.licences.live import live_node


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _resolve(kid: str) -> jwk.JWK:
    """did:web → https://host/path/did.json (http here: the test node has no TLS)."""
    did = kid.split("#")[0]
    host, *path = did.removeprefix("did:web:").split(":")
    url = f"http://{unquote(host)}/" + "/".join(unquote(p) for p in path) + "/did.json"
    document = httpx.get(url, timeout=5).raise_for_status().json()
    assert document["id"] == did
    method = next(m for m in document["verificationMethod"] if m["id"] == kid)
    assert kid in document["assertionMethod"]
    return jwk.JWK(**method["publicKeyJwk"])


def _open(token: str) -> dict:
    header = json.loads(_b64(token.split(".")[0]))
    assert header["typ"] == "vc+jwt"
    signed = jws.JWS()
    signed.deserialize(token)
    signed.verify(_resolve(header["kid"]), alg=header["alg"])
    payload = json.loads(signed.payload)
    issuer = payload["issuer"]["id"] if isinstance(payload["issuer"], dict) else payload["issuer"]
    assert issuer == header["kid"].split("#")[0]
    return payload


def verdict(token: str, open_: Callable[[str], dict]) -> str:
    """valid / revoked / suspended / expired / forged, with `open_` checking a JWS's
    signature (this file's jwcrypto, or the SM2 test's gmalg) and returning its payload."""
    try:
        credential = open_(token)
    except Exception:
        return "forged"
    now = datetime.now(UTC)
    if datetime.fromisoformat(credential["validFrom"].replace("Z", "+00:00")) > now:
        return "expired"
    until = credential.get("validUntil")
    if until and datetime.fromisoformat(until.replace("Z", "+00:00")) < now:
        return "expired"
    for entry in credential["credentialStatus"]:
        assert entry["type"] == "BitstringStatusListEntry"
        answer = httpx.get(entry["statusListCredential"], timeout=5).raise_for_status()
        assert answer.headers["content-type"].startswith("application/vc+jwt")
        status = open_(answer.text)
        assert "BitstringStatusListCredential" in status["type"]
        subject = status["credentialSubject"]
        assert subject["statusPurpose"] == entry["statusPurpose"]
        encoded = subject["encodedList"]
        assert encoded[0] == "u"  # Multibase base64url
        bits = gzip.decompress(_b64(encoded[1:]))
        assert len(bits) * 8 >= 131_072
        index = int(entry["statusListIndex"])
        if bits[index // 8] & (0x80 >> (index % 8)):
            return "revoked" if entry["statusPurpose"] == "revocation" else "suspended"
    return "valid"


def independent_verify(token: str) -> str:
    """valid / revoked / suspended / expired / forged."""
    return verdict(token, _open)


def test_an_independent_verifier_accepts_ours_refuses_a_changed_byte_and_sees_revocation(
    tmp_path: Path,
) -> None:
    with live_node(tmp_path / "var") as (node, base):
        code, steward, org = kit.registrations(node)
        kit.load(node, steward, code, tmp_path, [kit.row(1), kit.row(2)])
        kit.define(node, steward, org, code)
        kit.issue(node)
        with node.factory() as session:
            licences = session.scalars(select(Licence).order_by(Licence.number)).all()
        token = licences[0].credential
        assert independent_verify(token) == "valid"
        assert independent_verify(licences[1].credential) == "valid"
        payload = token.split(".")[1]
        changed = payload[:10] + ("B" if payload[10] != "B" else "C") + payload[11:]
        assert (
            independent_verify(".".join([token.split(".")[0], changed, token.split(".")[2]]))
            == "forged"
        )
        with unit_of_work(node.factory) as session:
            service.change_status(session, steward, licences[0].id, to="revoked", reason="吊销")
        # One refresh of the status list shows it; the other licence stays valid.
        assert independent_verify(token) == "revoked"
        assert independent_verify(licences[1].credential) == "valid"
        with unit_of_work(node.factory) as session:
            service.change_status(session, steward, licences[1].id, to="suspended", reason="核查")
        assert independent_verify(licences[1].credential) == "suspended"
        # The node's own API agrees, anonymously.
        answer = httpx.post(f"{base}/api/v1/licences/verify", json={"credential": token}, timeout=5)
        assert answer.json()["outcome"] == "revoked"
        assert httpx.post(f"{base}/api/v1/licences/verify", json={"credential": "x.y"},
                          timeout=5).json()["outcome"] == "forged"  # fmt: skip
