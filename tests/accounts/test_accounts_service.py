"""Accounts: creation rules, sign-in with throttling, client tokens."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.accounts import service
from minyun.accounts.models import AccountKind, User
from minyun.core import identifiers
from minyun.core.errors import Conflict, Forbidden, Invalid, TooManyRequests, Unauthenticated
from minyun.core.keys import NodeKey
from minyun.core.security import Principal
from minyun.core.throttle import Throttle
from tests.factories import PASSWORD, SYSTEM, make_org, make_user

ISS, AUD = "http://test", "http://test/api"
_THROTTLE = {"throttle": Throttle("memory://", "10/minute"), "client_ip": None}


def _users(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def test_staff_account_is_created_with_roles(session: Session) -> None:
    user = make_user(session, roles=["steward", "consumer"])
    assert user.roles == ["consumer", "steward"] and user.verified
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash


def test_citizen_with_a_wrong_check_digit_is_refused(session: Session) -> None:
    good = identifiers.make_ric("350102", dt.date(1988, 3, 9), 21)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    before = _users(session)
    with pytest.raises(Invalid, match="ric"):
        service.create_user(
            session, SYSTEM, username="lin", password=PASSWORD, display_name="林",
            kind=AccountKind.CITIZEN, ric=bad,
        )  # fmt: skip
    assert _users(session) == before
    citizen = service.create_user(
        session, SYSTEM, username="lin", password=PASSWORD, display_name="林",
        kind=AccountKind.CITIZEN, ric=good,
    )  # fmt: skip
    assert citizen.ric == good and not citizen.verified
    with pytest.raises(Conflict):
        service.create_user(
            session, SYSTEM, username="lin2", password=PASSWORD, display_name="林",
            kind=AccountKind.CITIZEN, ric=good,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"username": "A b"}, "username"),
        ({"password": "short"}, "password"),
        ({"roles": ["emperor"]}, "roles"),
        ({"organization_id": None}, "organization"),
    ],
)
def test_bad_account_input_is_refused(
    session: Session, over: dict[str, object], field: str
) -> None:
    org = make_org(session)
    args: dict[str, object] = {
        "username": "good.name", "password": PASSWORD, "display_name": "x", "organization_id": org.id,
    }  # fmt: skip
    args.update(over)
    with pytest.raises(Invalid) as error:
        service.create_user(session, SYSTEM, **args)  # type: ignore[arg-type]
    assert error.value.extra["field"] == field


def test_only_admins_create_accounts(session: Session) -> None:
    steward = service.principal_for(make_user(session, roles=["steward"]))
    with pytest.raises(Forbidden):
        make_user(session, roles=["admin"]) and service.create_user(
            session, steward, username="x.y.z", password=PASSWORD, display_name="x",
            organization_id=steward.organization_id,
        )  # fmt: skip


def test_sign_in_and_throttling(session: Session) -> None:
    user = make_user(session)
    throttle = Throttle("memory://", "3/minute")
    assert (
        service.authenticate(
            session, throttle, username=user.username, password=PASSWORD, client_ip="10.0.0.1"
        ).id
        == user.id
    )
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="wrong username or password") as error:
            service.authenticate(
                session,
                throttle,
                username=user.username,
                password="nope nope nope",
                client_ip="10.0.0.1",
            )
        assert error.value.audit.detail == "bad credentials"
    with pytest.raises(TooManyRequests) as throttled:
        service.authenticate(
            session, throttle, username=user.username, password=PASSWORD, client_ip="10.0.0.1"
        )
    assert throttled.value.extra["retry_after"] >= 1


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(session: Session) -> None:
    throttle = Throttle("memory://", "10/minute")
    with pytest.raises(Unauthenticated, match="wrong username or password"):
        service.authenticate(
            session, throttle, username="nobody", password=PASSWORD, client_ip=None
        )


def test_client_credentials_token_carries_the_granted_scopes(
    session: Session, node_key: NodeKey
) -> None:
    org = make_org(session)
    new = service.create_client(
        session, SYSTEM, organization_id=org.id, name="人社厅接口", scopes=["org.read", "jobs.read"]
    )
    grant = service.client_credentials_token(
        session, node_key, client_id=new.client.client_id, client_secret=new.secret, scope="org.read",
        issuer=ISS, audience=AUD, ttl=dt.timedelta(minutes=5), **_THROTTLE,
    )  # fmt: skip
    actor = service.principal_from_token(
        session, node_key, grant.access_token, issuer=ISS, audience=AUD
    )
    assert actor == Principal(
        kind="client",
        name=new.client.client_id,
        organization_id=org.id,
        scopes=frozenset({"org.read"}),
    )
    with pytest.raises(Invalid, match=r"audit\.read"):
        service.client_credentials_token(
            session, node_key, client_id=new.client.client_id, client_secret=new.secret,
            scope="audit.read", issuer=ISS, audience=AUD, ttl=dt.timedelta(minutes=5), **_THROTTLE,
        )  # fmt: skip
    with pytest.raises(Unauthenticated):
        service.client_credentials_token(
            session, node_key, client_id=new.client.client_id, client_secret="wrong", scope=None,
            issuer=ISS, audience=AUD, ttl=dt.timedelta(minutes=5), **_THROTTLE,
        )  # fmt: skip


@pytest.fixture
def argon2_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hashes each password check ran against (the real argon2 check still runs)."""
    checked: list[str] = []
    real = service.verify_password

    def spy(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(service, "verify_password", spy)
    return checked


def test_an_unknown_or_disabled_account_costs_one_argon2_check(
    session: Session, argon2_checks: list[str]
) -> None:
    # Timing is measured in benchmarks; here: the same work is done whoever is named.
    throttle = Throttle("memory://", "100/minute")
    known = make_user(session)
    disabled = make_user(session)
    disabled.active = False
    for username in ("nobody", disabled.username, known.username):
        with pytest.raises(Unauthenticated):
            service.authenticate(
                session, throttle, username=username, password="wrong one", client_ip=None
            )
    assert len(argon2_checks) == 3
    assert all(h.startswith("$argon2id$") for h in argon2_checks)
    assert argon2_checks[0] != known.password_hash and argon2_checks[2] == known.password_hash


def test_an_unknown_client_id_costs_one_argon2_check(
    session: Session, node_key: NodeKey, argon2_checks: list[str]
) -> None:
    with pytest.raises(Unauthenticated):
        service.client_credentials_token(
            session, node_key, client_id="mc_nobody", client_secret="x", scope=None,
            issuer=ISS, audience=AUD, ttl=dt.timedelta(minutes=5), **_THROTTLE,
        )  # fmt: skip
    assert len(argon2_checks) == 1 and argon2_checks[0].startswith("$argon2id$")
