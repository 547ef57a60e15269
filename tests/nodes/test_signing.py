"""RFC 9421 node signatures: what a signature covers, and what makes one refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from minyun.nodes import signing

KEY = Ed25519PrivateKey.generate()
URL = "https://city.example/api/v1/node-link/resources/r1/rows?limit=5&purpose=%E6%A0%B8%E9%AA%8C"
HEADERS = {"Minyun-Consumer": "fj-civil-affairs", "Minyun-On-Behalf-Of": "user:alice"}


def _verify(headers: dict[str, str], **over: object) -> signing.Verified:
    values: dict[str, object] = {"method": "POST", "url": URL, "headers": headers, "body": b"{}"}
    values.update(over)
    return signing.verify_request(KEY.public_key(), **values)  # type: ignore[arg-type]


def _sign(**over: object) -> dict[str, str]:
    values: dict[str, object] = {"method": "POST", "url": URL, "headers": HEADERS, "body": b"{}"}
    values.update(over)
    return signing.sign_request(KEY, "province", **values)  # type: ignore[arg-type]


def test_a_signature_verifies_and_names_its_node_nonce_and_times() -> None:
    headers = _sign()
    assert signing.claimed_key_id(headers) == "province"
    found = _verify(headers)
    assert found.key_id == "province" and len(found.nonce) >= 16
    assert found.expires - found.created == signing.TTL
    covered = headers["Signature-Input"]
    for part in ('"@method"', '"@target-uri"', '"content-digest"', '"minyun-consumer"',
                 '"minyun-on-behalf-of"', 'tag="minyun-node"', 'alg="ed25519"'):  # fmt: skip
        assert part in covered


@pytest.mark.parametrize(
    "change",
    [
        {"method": "GET"},
        {"url": URL.replace("limit=5", "limit=500")},
        {"url": URL.replace("city.example", "other-city.example")},
        {"body": b'{"more": true}'},
    ],
)
def test_a_changed_request_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(signing.SignatureRefused):
        _verify(_sign(), **change)


def test_a_changed_or_added_node_header_is_refused() -> None:
    headers = _sign()
    with pytest.raises(signing.SignatureRefused):
        _verify({**headers, "minyun-consumer": "fz-public-security"})
    with pytest.raises(signing.SignatureRefused, match="not covered"):
        _verify({**headers, "minyun-purpose": "anything"})


def test_another_key_expired_or_long_lived_signatures_are_refused() -> None:
    other = Ed25519PrivateKey.generate()
    forged = signing.sign_request(other, "province", method="POST", url=URL, headers=HEADERS,
                                  body=b"{}")  # fmt: skip
    with pytest.raises(signing.SignatureRefused):
        _verify(forged)
    with pytest.raises(signing.SignatureRefused, match=r"expires|age"):
        _verify(_sign(now=datetime.now(UTC) - timedelta(minutes=10)))
    with pytest.raises(signing.SignatureRefused):
        _verify({**_sign(), "Signature-Input": "garbage"})
    assert signing.claimed_key_id({"Signature-Input": "((("}) is None
    with pytest.raises(signing.SignatureRefused):
        _verify({k: v for k, v in _sign().items() if k != "Signature"})


def test_public_keys_are_read_from_base64url_or_pem_only_ed25519() -> None:
    public = KEY.public_key()
    text = signing.public_text(public)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert signing.public_text(signing.parse_public(text)) == text
    assert signing.public_text(signing.parse_public(pem.decode())) == text
    for bad in ("", "abc", "A" * 60, "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"):
        with pytest.raises(ValueError):
            signing.parse_public(bad)


def _answered(body: bytes = b'{"rows":[]}', status: int = 200) -> tuple[dict[str, str], tuple]:  # type: ignore[type-arg]
    request_headers = signing.sign_request(KEY, "province", method="GET", url=URL, headers=HEADERS)
    request = ("GET", URL, request_headers)
    headers = signing.sign_response(KEY, "fuzhou", status=status, body=body, request=request,
                                    headers={"content-type": "application/json"})  # fmt: skip
    return headers, request


def test_an_answer_is_signed_for_the_request_it_answers() -> None:
    headers, request = _answered()
    public = KEY.public_key()
    signing.verify_response(public, "fuzhou", status=200, headers=headers, body=b'{"rows":[]}',
                            request=request)  # fmt: skip
    refusals: list[dict[str, object]] = [
        {"body": b'{"rows":[{"id":1}]}'},  # another body
        {"status": 201},  # another status
        {"key_id": "xiamen"},  # another node's name
        {"request": ("GET", URL.replace("limit=5", "limit=6"), request[2])},  # another target
        # The answer to another request (another signature) is not this one's.
        {
            "request": (
                "GET",
                URL,
                signing.sign_request(KEY, "province", method="GET", url=URL, headers=HEADERS),
            )
        },
        {"public": Ed25519PrivateKey.generate().public_key()},  # another key
        {"headers": {k: v for k, v in headers.items() if k.lower() != "signature"}},
    ]
    for change in refusals:
        values: dict[str, object] = {"public": public, "key_id": "fuzhou", "status": 200,
                                     "headers": headers, "body": b'{"rows":[]}',
                                     "request": request}  # fmt: skip
        values.update(change)
        public_, key_id = values.pop("public"), values.pop("key_id")
        with pytest.raises(signing.SignatureRefused):
            signing.verify_response(public_, key_id, **values)  # type: ignore[arg-type]
