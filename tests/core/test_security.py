"""Tokens, passwords, configuration and the authorisation point."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from minyun.core import clock
from minyun.core.config import load_settings
from minyun.core.errors import ConfigError, Forbidden, Unauthenticated
from minyun.core.keys import NodeKey, load_node_key
from minyun.core.security import (
    Principal,
    authorize,
    hash_password,
    issue_token,
    read_token,
    verify_password,
)

ISS, AUD = "http://127.0.0.1:8000", "http://127.0.0.1:8000/api"


def _token(key: NodeKey, **over: object) -> str:
    args: dict[str, object] = {
        "issuer": ISS, "audience": AUD, "subject": "client:mc_x", "scopes": ["org.read"],
        "ttl": timedelta(minutes=5),
    }  # fmt: skip
    args.update(over)
    return issue_token(key, **args)  # type: ignore[arg-type]


def test_valid_token_round_trips(node_key: NodeKey) -> None:
    claims = read_token(node_key, _token(node_key), issuer=ISS, audience=AUD)
    assert claims["sub"] == "client:mc_x" and claims["scope"] == "org.read"
    assert claims["exp"] - claims["iat"] == 300


def test_expired_token_is_refused(node_key: NodeKey, monkeypatch: pytest.MonkeyPatch) -> None:
    token = _token(node_key, ttl=timedelta(seconds=30))
    later = clock.now() + timedelta(minutes=2)
    monkeypatch.setattr(clock, "now", lambda: later)
    with pytest.raises(Unauthenticated, match="expired"):
        read_token(node_key, token, issuer=ISS, audience=AUD)


def test_token_for_another_audience_is_refused(node_key: NodeKey) -> None:
    token = _token(node_key, audience="https://other-province.example/api")
    with pytest.raises(Unauthenticated, match="aud"):
        read_token(node_key, token, issuer=ISS, audience=AUD)


def test_token_from_another_issuer_is_refused(node_key: NodeKey) -> None:
    with pytest.raises(Unauthenticated, match="iss"):
        read_token(
            node_key, _token(node_key, issuer="https://evil.example"), issuer=ISS, audience=AUD
        )


def test_token_signed_by_another_key_is_refused(node_key: NodeKey, tmp_path: Path) -> None:
    other = load_node_key(tmp_path)
    with pytest.raises(Unauthenticated):
        read_token(node_key, _token(other), issuer=ISS, audience=AUD)


def test_token_with_edited_claims_is_refused(node_key: NodeKey) -> None:
    header, payload, signature = _token(node_key).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "org.read audit.read"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(Unauthenticated):
        read_token(node_key, f"{header}.{forged}.{signature}", issuer=ISS, audience=AUD)


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_token_with_a_downgraded_algorithm_is_refused(node_key: NodeKey, alg: str) -> None:
    _header, payload, _sig = _token(node_key).split(".")
    header = (
        base64.urlsafe_b64encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        .decode()
        .rstrip("=")
    )
    with pytest.raises(Unauthenticated):
        read_token(node_key, f"{header}.{payload}.", issuer=ISS, audience=AUD)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 5000])
def test_malformed_token_is_refused(node_key: NodeKey, garbage: str) -> None:
    with pytest.raises(Unauthenticated):
        read_token(node_key, garbage, issuer=ISS, audience=AUD)


def test_password_hash_is_argon2_and_checks() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterY")
    assert not verify_password("not-a-hash", "anything")


def test_authorize_allows_by_role_and_refuses_others(session: Session) -> None:
    auditor = Principal(kind="user", name="a", roles=frozenset({"auditor"}))
    steward = Principal(kind="user", name="s", roles=frozenset({"steward"}))
    assert authorize(session, auditor, "audit.read").allowed
    with pytest.raises(Forbidden) as refused:
        authorize(session, steward, "audit.read")
    assert refused.value.audit is not None and refused.value.audit.action == "audit.read"
    with pytest.raises(Unauthenticated):
        authorize(session, Principal.anonymous(), "audit.read")


def test_unknown_action_is_closed_to_everyone_but_the_system(session: Session) -> None:
    admin = Principal(kind="user", name="root", roles=frozenset({"admin"}))
    with pytest.raises(Forbidden):
        authorize(session, admin, "resource.delete-everything")
    assert authorize(session, Principal.system(), "resource.delete-everything").allowed


def test_malformed_configuration_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MINYUN_JOBS_MODE", "sometimes")
    monkeypatch.setenv("MINYUN_TOKEN_TTL_SECONDS", "-5")
    with pytest.raises(ConfigError) as error:
        load_settings(var_dir=tmp_path)
    assert "MINYUN_JOBS_MODE" in str(error.value) and "MINYUN_TOKEN_TTL_SECONDS" in str(error.value)


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DATABSE_URL"):
        load_settings(var_dir=tmp_path, databse_url="sqlite://")


def test_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_settings(var_dir=tmp_path).secret_key
    assert len(first) >= 48 and load_settings(var_dir=tmp_path).secret_key == first
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0


def test_a_client_scope_never_opens_another_departments_rows(session: Session) -> None:
    client = Principal(
        kind="client", name="mc_bank", organization_id=999,
        scopes=frozenset({"resource.read", "resource.load", "org.read"}),
    )  # fmt: skip
    assert authorize(session, client, "org.read").via == "role"
    for action in ("resource.read", "resource.load"):
        with pytest.raises(Forbidden):
            authorize(session, client, action, target="population-base")
    # The providing department's own client may use its scope on its own data.
    assert authorize(session, client, "resource.load", target="x", provider_id=999).via == "scope"
    with pytest.raises(Forbidden):
        authorize(session, client, "resource.load", target="x", provider_id=5)
    audit_client = Principal(kind="client", name="mc_audit", scopes=frozenset({"audit.read"}))
    assert authorize(session, audit_client, "audit.read").via == "scope"


@pytest.mark.parametrize("typ", ["JWT", "id+jwt", None])
def test_a_token_that_is_not_an_access_token_is_refused(node_key: NodeKey, typ: str | None) -> None:
    from joserfc import jwt
    from joserfc.jwk import OKPKey

    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "client:mc_x", "iat": now, "exp": now + 300}
    header: dict[str, object] = {"alg": "Ed25519", "kid": node_key.kid}
    if typ is not None:
        header["typ"] = typ
    key = OKPKey.import_key(node_key.private_pem())
    token = jwt.encode(header, claims, key, algorithms=["Ed25519"])
    with pytest.raises(Unauthenticated, match="at\\+jwt"):
        read_token(node_key, token, issuer=ISS, audience=AUD)
    header["typ"] = "application/at+jwt"  # the media type's long form (RFC 9068 §4)
    token = jwt.encode(header, claims, key, algorithms=["Ed25519"])
    assert read_token(node_key, token, issuer=ISS, audience=AUD)["sub"] == "client:mc_x"


@pytest.mark.parametrize("claim", ["exp", "sub", "iss", "aud", "nbf", "iat", "jti", "scope"])
def test_extra_claims_cannot_override_registered_ones(node_key: NodeKey, claim: str) -> None:
    with pytest.raises(ValueError, match=claim):
        _token(node_key, extra={claim: "x", "org": 1})
    assert (
        read_token(node_key, _token(node_key, extra={"org": 7}), issuer=ISS, audience=AUD)["org"]
        == 7
    )
