"""An SM2 verifier that shares no code with minyun's SM2 signer (gmssl): gmalg's SM2 and SM3,
httpx, gzip and base64, written from the specifications (VC-JOSE-COSE, did:web, Bitstring
Status List v1.0, GB/T 32918.2 with the default user id of GM/T 0009). It resolves the
issuer's did:web document and fetches the status list over HTTP."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import unquote

import gmalg
import httpx
from sqlalchemy import select

from minyun.core.uow import unit_of_work
from minyun.licences import service
from minyun.licences.models import Licence
from tests.licences import kit
from tests.licences.live import live_node
from tests.licences.test_independent_verifier import verdict

USER_ID = b"1234567812345678"


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _resolve(kid: str) -> dict:
    """did:web → https://host/path/did.json (http here: the test node has no TLS)."""
    did = kid.split("#")[0]
    host, *path = did.removeprefix("did:web:").split(":")
    url = f"http://{unquote(host)}/" + "/".join(unquote(p) for p in path) + "/did.json"
    document = httpx.get(url, timeout=5).raise_for_status().json()
    assert document["id"] == did
    method = next(m for m in document["verificationMethod"] if m["id"] == kid)
    assert kid in document["assertionMethod"]
    return method["publicKeyJwk"]


def _open(token: str) -> dict:
    head, body, signature = token.split(".")
    header = json.loads(_b64(head))
    assert header["typ"] == "vc+jwt" and header["alg"] == "SM2SM3"
    jwk = _resolve(header["kid"])
    assert (jwk["kty"], jwk["crv"]) == ("EC", "SM2")
    public = b"\x04" + _b64(jwk["x"]) + _b64(jwk["y"])
    raw = _b64(signature)
    assert len(raw) == 64 and base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == signature
    sm2 = gmalg.SM2(pk=public, uid=USER_ID)
    assert sm2.verify(f"{head}.{body}".encode(), raw[:32], raw[32:])
    payload = json.loads(_b64(body))
    issuer = payload["issuer"]["id"] if isinstance(payload["issuer"], dict) else payload["issuer"]
    assert issuer == header["kid"].split("#")[0]
    return payload


def independent_verify(token: str) -> str:
    """valid / revoked / suspended / expired / forged (the status lists read as for Ed25519)."""
    return verdict(token, _open)


def test_an_independent_sm2_verifier_accepts_ours_refuses_a_changed_byte_and_sees_revocation(
    tmp_path: Path,
) -> None:
    with live_node(tmp_path / "var", licence_key_algorithm="SM2") as (node, base):
        code, steward, org = kit.registrations(node)
        kit.load(node, steward, code, tmp_path, [kit.row(1), kit.row(2)])
        kit.define(node, steward, org, code)
        kit.issue(node)
        with node.factory() as session:
            licences = session.scalars(select(Licence).order_by(Licence.number)).all()
        token = licences[0].credential
        assert independent_verify(token) == "valid"
        assert independent_verify(licences[1].credential) == "valid"
        head, body, signature = token.split(".")
        changed = body[:10] + ("B" if body[10] != "B" else "C") + body[11:]
        assert independent_verify(f"{head}.{changed}.{signature}") == "forged"
        with unit_of_work(node.factory) as session:
            service.change_status(session, steward, licences[0].id, to="revoked", reason="吊销")
        # One refresh of the status list shows it; the other licence stays valid.
        assert independent_verify(token) == "revoked"
        assert independent_verify(licences[1].credential) == "valid"
        with unit_of_work(node.factory) as session:
            service.change_status(session, steward, licences[1].id, to="suspended", reason="核查")
        assert independent_verify(licences[1].credential) == "suspended"
        # After a rotation to a new SM2 key, the older licence still verifies independently.
        with unit_of_work(node.factory) as session:
            service.rotate_key(session, steward, org.code)
            service.change_status(session, steward, licences[1].id, to="live", reason="核查完毕")
        assert independent_verify(licences[1].credential) == "valid"
        # The node's own API agrees, anonymously.
        answer = httpx.post(f"{base}/api/v1/licences/verify", json={"credential": token}, timeout=5)
        assert answer.json()["outcome"] == "revoked"
        forged = httpx.post(f"{base}/api/v1/licences/verify",
                            json={"credential": f"{head}.{changed}.{signature}"}, timeout=5)  # fmt: skip
        assert (forged.json()["outcome"], forged.json()["reason"]) == (
            "forged", "the signature does not match",
        )  # fmt: skip
