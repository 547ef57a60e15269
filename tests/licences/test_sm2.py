"""SM2 (GB/T 32918) issuers: the standard's worked example, SM2 credentials and status
lists, rotation across algorithms, and every refusal the Ed25519 path gives."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from minyun.core.errors import Invalid
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.licences import credentials as vc
from minyun.licences import service
from minyun.licences.models import Licence
from minyun.orgs.models import Organization
from minyun.web.app import create_app
from tests.conftest import PostgresDatabases, make_settings
from tests.licences import kit

# The signature example on the recommended curve of GM/T 0003.5-2012 (GB/T 32918.5):
# user id 1234567812345678, message "message digest", private key d_A, random k, and the
# public key and signature (r, s) the standard derives from them.
EXAMPLE_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
EXAMPLE_X = 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
EXAMPLE_Y = 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
EXAMPLE_K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
EXAMPLE_R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
EXAMPLE_S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
EXAMPLE_MESSAGE = b"message digest"


def test_sm2_reproduces_the_standards_signature_example() -> None:
    key = vc.SM2PrivateKey(EXAMPLE_D)
    public = key.public_key()
    assert (public.x, public.y) == (EXAMPLE_X, EXAMPLE_Y)
    signature = key.sign(EXAMPLE_MESSAGE, nonce=EXAMPLE_K)
    assert signature.hex().upper() == EXAMPLE_R + EXAMPLE_S
    assert public.verify(EXAMPLE_MESSAGE, bytes.fromhex(EXAMPLE_R + EXAMPLE_S))
    assert not public.verify(b"message digesT", signature)
    # A random nonce signs differently, and verifies all the same.
    other = key.sign(EXAMPLE_MESSAGE)
    assert other != signature and public.verify(EXAMPLE_MESSAGE, other)
    # r and s outside [1, n-1] are refused before any arithmetic (GB/T 32918.2 §7.1).
    assert not public.verify(EXAMPLE_MESSAGE, bytes(64))
    assert not public.verify(EXAMPLE_MESSAGE, b"\xff" * 64)
    assert not public.verify(EXAMPLE_MESSAGE, signature[:63])


def test_an_sm2_jwk_names_its_curve_and_a_point_off_the_curve_is_refused() -> None:
    public = vc.SM2PrivateKey(EXAMPLE_D).public_key()
    jwk = public.jwk("did:web:example#key-1")
    assert {k: jwk[k] for k in ("kty", "crv", "alg")} == {"kty": "EC", "crv": "SM2",
                                                           "alg": "SM2SM3"}  # fmt: skip
    assert vc.key_algorithm(jwk) is vc.KeyAlgorithm.SM2
    assert vc.SM2PublicKey.from_jwk(jwk) == public
    with pytest.raises(ValueError, match="not on the SM2 curve"):
        vc.SM2PublicKey.from_jwk({**jwk, "y": vc.b64url((EXAMPLE_Y + 1).to_bytes(32, "big"))})
    with pytest.raises(ValueError):
        vc.SM2PublicKey.from_jwk({**jwk, "x": jwk["x"][:-2]})
    with pytest.raises(ValueError):
        vc.SM2PublicKey.from_jwk({**jwk, "crv": "P-256"})
    with pytest.raises(ValueError):
        vc.SM2PrivateKey(0)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sm2_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """A node of a national-standard deployment (issuers' first keys are SM2), embedded and
    on PostgreSQL."""
    overrides: dict[str, object] = {"licence_key_algorithm": "SM2"}
    if request.param == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        overrides["database_url"] = databases.create()
    platform = Platform.open(make_settings(tmp_path / "var", **overrides), run_jobs_here=False)
    platform.migrate()
    yield platform
    platform.close()


def _licences(node: Platform) -> list[Licence]:
    with node.factory() as session:
        return list(session.scalars(select(Licence).order_by(Licence.number)))


def _header(token: str) -> dict[str, str]:
    return json.loads(vc.b64url_decode(token.split(".")[0]))


def _issue_two(node: Platform, tmp_path: Path) -> tuple[str, Principal, Organization]:
    code, steward, org = kit.registrations(node)
    kit.load(node, steward, code, tmp_path, [kit.row(1), kit.row(2)])
    kit.define(node, steward, org, code)
    kit.issue(node)
    return code, steward, org


def test_an_sm2_deployment_signs_licences_status_lists_and_did_documents_with_sm2(
    sm2_node: Platform, tmp_path: Path
) -> None:
    node = sm2_node
    _code, steward, org = _issue_two(node, tmp_path)
    first, second = _licences(node)
    header = _header(first.credential)
    assert header["alg"] == "SM2SM3" and header["typ"] == "vc+jwt"
    assert header["kid"].endswith(f":licences:issuers:{org.code}#key-1")
    with unit_of_work(node.factory) as session:
        document = service.did_document(session, org.code)
        [method] = document["verificationMethod"]
        assert method["id"] == header["kid"] and method["type"] == "JsonWebKey"
        assert {method["publicKeyJwk"][k] for k in ("kty", "crv")} == {"EC", "SM2"}
        assert header["kid"] in document["assertionMethod"]
        status = service.status_list_token(session, org.code, "revocation")
        assert _header(status)["alg"] == "SM2SM3" and _header(status)["kid"] == header["kid"]
        assert service.verify(session, steward, first.credential).outcome == "valid"
        service.change_status(session, steward, first.id, to="revoked", reason="吊销")
    with unit_of_work(node.factory) as session:
        result = service.verify(session, steward, first.credential)
        assert (result.outcome, result.reason) == ("revoked", "its issuer revoked it")
        assert service.verify(session, steward, second.credential).outcome == "valid"
        # An offline counter's trust bundle carries the SM2 key and SM2-signed lists.
        bundle = service.trust_bundle(session)
    assert vc.Verifier.offline(bundle).verify(second.credential).outcome == "valid"
    assert vc.Verifier.offline(bundle).verify(first.credential).outcome == "revoked"


def test_sm2_credentials_refuse_a_changed_byte_a_foreign_key_and_the_wrong_algorithm(
    sm2_node: Platform, tmp_path: Path
) -> None:
    node = sm2_node
    _issue_two(node, tmp_path)
    token = _licences(node)[0].credential
    head, body, signature = token.split(".")
    with unit_of_work(node.factory) as session:
        verify = service.verifier(session).verify
        assert verify(token).outcome == "valid"
        changed = body[:10] + ("B" if body[10] != "B" else "C") + body[11:]
        assert verify(f"{head}.{changed}.{signature}").reason == "the signature does not match"
        # Each character of the signature matters, also the last one's spare bits.
        last = signature[:-1] + ("B" if signature[-1] == "A" else "A")
        assert verify(f"{head}.{body}.{last}").reason == "the signature does not match"
        payload = vc.peek(token)
        assert payload is not None
        kid = _header(token)["kid"]
        # A foreign SM2 key claiming the issuer's key id: the signature does not match.
        foreign = vc.Signer(vc.sm2_signing_key(b"\x07" * 32), kid)
        assert verify(foreign.sign(payload)).reason == "the signature does not match"
        # A foreign key id: no trusted issuer holds it.
        stranger = vc.Signer(vc.sm2_signing_key(b"\x07" * 32), kid.replace("key-1", "key-9"))
        assert verify(stranger.sign(payload)).reason == "signed by a key no trusted issuer holds"
        # An Ed25519 signature under the SM2 key's id: the key decides the algorithm.
        confused = vc.Signer(vc.signing_key(b"\x07" * 32), kid)
        assert verify(confused.sign(payload)).reason == "the key does not sign with Ed25519"
        assert verify(f"{head}.{body}.!!").reason == "the signature does not match"


def test_rotation_across_algorithms_keeps_older_licences_verifiable_and_retiring_refuses(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, steward, org = _issue_two(node, tmp_path)
    ed25519 = _licences(node)[0].credential
    assert _header(ed25519)["alg"] == "Ed25519"
    with unit_of_work(node.factory) as session:
        with pytest.raises(Invalid):
            service.rotate_key(session, steward, org.code, algorithm="SM9")
        made = service.rotate_key(session, steward, org.code, algorithm="SM2")
        assert (made.kid, service.algorithm_of(made)) == ("key-2", "SM2")
    kit.load(node, steward, code, tmp_path, [kit.row(1), kit.row(2), kit.row(3)])
    kit.issue(node)
    sm2 = next(lic for lic in _licences(node) if lic.holder_id == kit.row(3)["uscc"]).credential
    assert _header(sm2)["alg"] == "SM2SM3" and _header(sm2)["kid"].endswith("#key-2")
    with unit_of_work(node.factory) as session:
        # Without an algorithm, a rotation keeps the issuer's kind: SM2 again.
        assert service.algorithm_of(service.rotate_key(session, steward, org.code)) == "SM2"
    with unit_of_work(node.factory) as session:
        assert service.verify(session, steward, ed25519).outcome == "valid"
        assert service.verify(session, steward, sm2).outcome == "valid"
        assert _header(service.status_list_token(session, org.code, "revocation"))["kid"].endswith(
            "#key-3"
        )
        methods = service.did_document(session, org.code)["verificationMethod"]
        assert [m["publicKeyJwk"].get("crv") for m in methods] == ["Ed25519", "SM2", "SM2"]
        service.retire_key(session, steward, org.code, "key-2", reason="密钥泄露")
    with unit_of_work(node.factory) as session:
        result = service.verify(session, steward, sm2)
        assert (result.outcome, result.reason) == ("forged", "signed by a retired key")
        assert service.verify(session, steward, ed25519).outcome == "valid"
        keys = service.issuer_keys(session, steward, org.code)
        assert [(k.kid, service.algorithm_of(k), k.status) for k in keys] == [
            ("key-1", "Ed25519", "rotated"),
            ("key-2", "SM2", "retired"),
            ("key-3", "SM2", "active"),
        ]


def test_the_cli_makes_and_lists_sm2_keys(
    sqlite_node: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = sqlite_node
    _code, _steward, org = kit.registrations(node)
    monkeypatch.setenv("MINYUN_VAR_DIR", str(node.settings.var_dir))
    from minyun.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["licence", "rotate-key", org.code, "--algorithm", "SM2"])
    assert made.exit_code == 0, made.output
    assert made.output.strip() == f"{org.code}: now signing with key-1 (SM2)"
    wrong = runner.invoke(app, ["licence", "rotate-key", org.code, "--algorithm", "RSA"])
    assert wrong.exit_code == 1 and "Ed25519 or SM2" in wrong.output
    again = runner.invoke(app, ["licence", "rotate-key", org.code, "--algorithm", "Ed25519"])
    assert again.exit_code == 0 and "key-2 (Ed25519)" in again.output
    listed = runner.invoke(app, ["licence", "keys", org.code])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert lines[0].startswith("key-1  SM2  rotated") and lines[1].startswith(
        "key-2  Ed25519  active"
    )
    assert lines[-1] == "2 key(s)"


@pytest.mark.parametrize("sm2_node", ["sqlite"], indirect=True)
def test_the_public_verify_page_checks_sm2_credentials_and_says_why_it_refuses(
    sm2_node: Platform, tmp_path: Path
) -> None:
    node = sm2_node
    _issue_two(node, tmp_path)
    token = _licences(node)[0].credential
    payload = vc.peek(token)
    assert payload is not None
    confused = vc.Signer(vc.signing_key(b"\x07" * 32), _header(token)["kid"]).sign(payload)
    head, body, signature = token.split(".")
    changed = body[:10] + ("B" if body[10] != "B" else "C") + body[11:]
    http = TestClient(create_app(node))

    def check(credential: str) -> tuple[str | None, str]:
        form = http.get("/licences/verify")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        page = http.post("/licences/verify", data={"credential": credential, "csrf": csrf[1]})
        assert page.status_code == 200, page.text
        outcome = re.search(r'data-outcome="(\w+)"', page.text)
        return (outcome[1] if outcome else None), page.text

    outcome, text = check(token)
    assert outcome == "valid" and "营业执照" in text
    outcome, text = check(f"{head}.{changed}.{signature}")
    assert outcome == "forged" and "签名不符：签发后内容被改动。" in text
    outcome, text = check(confused)
    assert outcome == "forged" and "签名算法 Ed25519 与发证机关的该密钥不符。" in text
