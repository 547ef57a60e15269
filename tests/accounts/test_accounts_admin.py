"""Administering accounts and API clients: roles, disable, reset, unlock, rotate, revoke."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts import service
from minyun.core import policies
from minyun.core.audit import AuditRecord
from minyun.core.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)
from minyun.core.keys import NodeKey
from minyun.core.security import verify_password
from minyun.core.throttle import Throttle
from tests.factories import PASSWORD, SYSTEM, make_org, make_user

ISS, AUD = "http://test", "http://test/api"


def _audit(session: Session, action: str) -> list[AuditRecord]:
    query = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
    return list(session.scalars(query))


def _sign_in(session: Session, throttle: Throttle, username: str, password: str) -> None:
    service.authenticate(session, throttle, username=username, password=password, client_ip=None)


# --- accounts -----------------------------------------------------------------------------


def test_roles_are_set_exactly_and_audited_before_and_after(session: Session) -> None:
    user = make_user(session, roles=["steward"])
    epoch = policies.current_epoch(session)
    service.set_roles(session, SYSTEM, user.id, ["approver", "consumer"])
    assert user.roles == ["approver", "consumer"]
    assert policies.current_epoch(session) == epoch + 1
    detail = json.loads(_audit(session, "user.roles")[-1].detail or "{}")
    assert detail == {"before": ["steward"], "after": ["approver", "consumer"]}
    with pytest.raises(Invalid) as error:
        service.set_roles(session, SYSTEM, user.id, ["emperor"])
    assert error.value.extra["field"] == "roles"


def test_the_last_active_administrator_keeps_the_role_and_the_account(session: Session) -> None:
    # Other tests' admins are rolled back: in this transaction the only admin is made here.
    for other in session.scalars(select(service.User)):
        if "admin" in other.roles:
            other.active = False
    admin = make_user(session, roles=["admin"])
    with pytest.raises(Conflict) as role:
        service.set_roles(session, SYSTEM, admin.id, ["steward"])
    assert role.value.code == "last-admin" and admin.roles == ["admin"]
    with pytest.raises(Conflict):
        service.disable_user(session, SYSTEM, admin.id)
    assert admin.active
    second = make_user(session, roles=["admin"])
    service.set_roles(session, SYSTEM, admin.id, ["steward"])
    with pytest.raises(Conflict):
        service.disable_user(session, SYSTEM, second.id)


def test_an_administrator_cannot_disable_their_own_account(session: Session) -> None:
    make_user(session, roles=["admin"])
    me = make_user(session, roles=["admin"])
    with pytest.raises(Conflict, match="own account"):
        service.disable_user(session, service.principal_for(me), me.id)


def test_a_disabled_account_cannot_sign_in_until_enabled(session: Session) -> None:
    user = make_user(session, roles=["steward"])
    throttle = Throttle("memory://", "10/minute")
    service.disable_user(session, SYSTEM, user.id)
    assert not user.active and user.sessions_valid_after is not None
    assert not service.session_is_valid(user, dt.datetime.now(dt.UTC).timestamp() - 1)
    with pytest.raises(Unauthenticated):
        _sign_in(session, throttle, user.username, PASSWORD)
    service.enable_user(session, SYSTEM, user.id)
    _sign_in(session, throttle, user.username, PASSWORD)
    actions = [r.action for r in _audit(session, "user.disable") + _audit(session, "user.enable")]
    assert actions == ["user.disable", "user.enable"]


def test_a_reset_password_is_generated_once_and_ends_sessions(session: Session) -> None:
    user = make_user(session)
    old_hash = user.password_hash
    new = service.reset_password(session, SYSTEM, user.id)
    assert len(new) >= service.MIN_PASSWORD and user.password_hash != old_hash
    assert verify_password(user.password_hash, new) and new not in user.password_hash
    assert user.sessions_valid_after is not None
    record = _audit(session, "user.password-reset")[-1]
    assert record.detail == "generated" and new not in (record.detail or "")
    chosen = service.reset_password(session, SYSTEM, user.id, password="a chosen passphrase")
    assert chosen == "a chosen passphrase"
    with pytest.raises(Invalid) as short:
        service.reset_password(session, SYSTEM, user.id, password="short")
    assert short.value.extra["field"] == "password"


def test_unlock_lets_a_throttled_account_sign_in_at_once(session: Session) -> None:
    user = make_user(session)
    throttle = Throttle("memory://", "3/minute")
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            _sign_in(session, throttle, user.username, "wrong password!")
    assert service.is_locked(throttle, user.username)
    with pytest.raises(TooManyRequests):
        _sign_in(session, throttle, user.username, PASSWORD)
    rows = {r.user.username: r for r in service.list_users(session, SYSTEM, throttle=throttle)}
    assert rows[user.username].locked
    service.unlock_user(session, SYSTEM, throttle, user.id)
    assert not service.is_locked(throttle, user.username)
    _sign_in(session, throttle, user.username, PASSWORD)
    assert _audit(session, "user.unlock")[-1].detail == "was locked"


def test_only_admins_administer_accounts_and_others_cannot_probe_ids(session: Session) -> None:
    steward = service.principal_for(make_user(session, roles=["steward"]))
    target = make_user(session)
    throttle = Throttle("memory://", "3/minute")
    for call in (
        lambda: service.list_users(session, steward),
        lambda: service.disable_user(session, steward, target.id),
        lambda: service.reset_password(session, steward, target.id),
        lambda: service.unlock_user(session, steward, throttle, target.id),
        lambda: service.set_roles(session, steward, target.id, ["admin"]),
        lambda: service.disable_user(session, steward, 2**31 - 1),
    ):
        with pytest.raises(Forbidden) as error:
            call()
        assert error.value.audit.outcome == "denied"
    assert target.active
    with pytest.raises(NotFound):
        service.disable_user(session, SYSTEM, 2**31 - 1)


def test_list_users_matches_name_and_shows_the_organisation(session: Session) -> None:
    org = make_org(session)
    user = make_user(session, organization=org, display_name="王芳-" + uuid.uuid4().hex[:6])
    rows = service.list_users(session, SYSTEM, q=user.display_name)
    assert [(r.user.id, r.organization.code if r.organization else None) for r in rows] == [
        (user.id, org.code)
    ]


# --- API clients --------------------------------------------------------------------------


def _token(session: Session, node_key: NodeKey, client_id: str, secret: str) -> str:
    grant = service.client_credentials_token(
        session, node_key, client_id=client_id, client_secret=secret, scope=None,
        issuer=ISS, audience=AUD, ttl=dt.timedelta(minutes=5),
        throttle=Throttle("memory://", "100/minute"), client_ip=None,
    )  # fmt: skip
    return grant.access_token


def test_a_client_is_created_with_a_hashed_secret_and_audited(session: Session) -> None:
    org = make_org(session)
    new = service.create_client(
        session, SYSTEM, organization_id=org.id, name=" 不动产 登记系统 ",
        scopes=["resource.read", "resource.read"],
    )  # fmt: skip
    assert new.client.name == "不动产 登记系统" and new.client.scopes == ["resource.read"]
    assert new.secret not in new.client.secret_hash and verify_password(
        new.client.secret_hash, new.secret
    )
    record = _audit(session, "client.create")[-1]
    assert record.object_id == new.client.client_id and new.secret not in (record.detail or "")
    assert json.loads(record.detail or "{}")["organization"] == org.code


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["everything"]}, "scopes"),
        ({"name": "  "}, "name"),
        ({"organization_id": 2**31 - 1}, "organization"),
    ],
)
def test_bad_client_input_names_its_field(
    session: Session, over: dict[str, object], field: str
) -> None:
    org = make_org(session)
    args: dict[str, object] = {"organization_id": org.id, "name": "接口", "scopes": ["org.read"]}
    args.update(over)
    before = len(service.list_clients(session, SYSTEM))
    with pytest.raises(Invalid) as error:
        service.create_client(session, SYSTEM, **args)  # type: ignore[arg-type]
    assert error.value.extra["field"] == field
    assert len(service.list_clients(session, SYSTEM)) == before


def test_rotation_refuses_the_old_secret_and_accepts_the_new(
    session: Session, node_key: NodeKey
) -> None:
    org = make_org(session)
    new = service.create_client(
        session, SYSTEM, organization_id=org.id, name="接口", scopes=["org.read"]
    )
    rotated = service.rotate_client(session, SYSTEM, new.client.client_id)
    assert rotated.secret != new.secret and rotated.client.client_id == new.client.client_id
    with pytest.raises(Unauthenticated):
        _token(session, node_key, new.client.client_id, new.secret)
    assert _token(session, node_key, new.client.client_id, rotated.secret)
    assert _audit(session, "client.rotate")[-1].object_id == new.client.client_id


def test_revocation_refuses_tokens_at_once_and_cannot_be_rotated_back(
    session: Session, node_key: NodeKey
) -> None:
    org = make_org(session)
    new = service.create_client(
        session, SYSTEM, organization_id=org.id, name="接口", scopes=["org.read"]
    )
    token = _token(session, node_key, new.client.client_id, new.secret)
    assert service.principal_from_token(session, node_key, token, issuer=ISS, audience=AUD)
    epoch = policies.current_epoch(session)
    service.revoke_client(session, SYSTEM, new.client.client_id)
    assert policies.current_epoch(session) == epoch + 1
    with pytest.raises(Unauthenticated, match="disabled"):
        service.principal_from_token(session, node_key, token, issuer=ISS, audience=AUD)
    with pytest.raises(Conflict):
        service.rotate_client(session, SYSTEM, new.client.client_id)
    listed = {r.client.client_id: r.client.active for r in service.list_clients(session, SYSTEM)}
    assert listed[new.client.client_id] is False


def test_only_admins_manage_clients(session: Session) -> None:
    org = make_org(session)
    new = service.create_client(
        session, SYSTEM, organization_id=org.id, name="接口", scopes=["org.read"]
    )
    steward = service.principal_for(make_user(session, roles=["steward"], organization=org))
    for call in (
        lambda: service.list_clients(session, steward),
        lambda: service.rotate_client(session, steward, new.client.client_id),
        lambda: service.revoke_client(session, steward, new.client.client_id),
        lambda: service.create_client(
            session, steward, organization_id=org.id, name="x", scopes=["org.read"]
        ),
    ):
        with pytest.raises(Forbidden):
            call()
    assert new.client.active
