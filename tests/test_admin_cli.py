"""`minyun org`, `minyun user …` and `minyun client`, run as an administrator would."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from minyun.accounts.models import User
from minyun.cli import app
from minyun.core.audit import AuditRecord
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import verify_password
from minyun.orgs.models import Organization
from minyun.web.app import create_app
from tests.factories import make_uscc

runner = CliRunner()


@pytest.fixture
def node(var: Path) -> Iterator[Platform]:
    platform = Platform.open(load_settings(var_dir=var))
    yield platform
    platform.close()


def _ok(*args: str, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result.output


def _actions(node: Platform, action: str) -> list[AuditRecord]:
    with node.factory() as s:
        query = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        return list(s.scalars(query))


def _orgs(node: Platform) -> int:
    with node.factory() as s:
        return int(s.scalar(select(func.count()).select_from(Organization)) or 0)


def test_org_create_edit_and_list(var: Path, node: Platform) -> None:
    uscc = make_uscc(5001, "350100")
    out = _ok("org", "create", "fz-data", "--name", "福州市数据管理局", "--division", "350100",
              "--uscc", uscc)  # fmt: skip
    assert "created fz-data 福州市数据管理局 (department, 福州市 350100)" in out
    out = _ok("org", "create", "fz-data-center", "--name", "福州市数据中心", "--division",
              "350102", "--uscc", make_uscc(5002, "350102"), "--parent", "fz-data")  # fmt: skip
    assert "(unit, 鼓楼区 350102)" in out
    _ok("org", "edit", "fz-data", "--name", "福州市大数据管理局")
    listed = json.loads(_ok("org", "list", "--json"))
    assert {o["code"]: (o["name"], o["parent"]) for o in listed} == {
        "fz-data": ("福州市大数据管理局", None),
        "fz-data-center": ("福州市数据中心", "fz-data"),
    }
    assert "2 organisation(s)" in _ok("org", "list")
    assert [r.object_id for r in _actions(node, "org.create")] == ["fz-data", "fz-data-center"]
    edit = _actions(node, "org.edit")
    assert len(edit) == 1 and edit[0].actor == "system:minyun" and edit[0].on_behalf_of == "cli"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--division", "359999"], "not one of the shipped Fujian divisions"),
        (["--division", "350100", "--uscc", "11350100000050019X"], "check character"),
        (["--division", "350100", "--parent", "nobody"], "parent organisation does not exist"),
    ],
)
def test_org_create_refuses_bad_input_and_writes_nothing(
    var: Path, node: Platform, args: list[str], message: str
) -> None:
    if "--uscc" not in args:
        args = [*args, "--uscc", make_uscc(5003, "350100")]
    result = runner.invoke(app, ["org", "create", "new-org", "--name", "新单位", *args])
    assert result.exit_code == 1 and message in result.output
    assert _orgs(node) == 0 and _actions(node, "org.create") == []


def test_org_create_refuses_a_taken_code(var: Path, node: Platform) -> None:
    _ok("org", "create", "fz-data", "--name", "甲", "--division", "350100", "--uscc",
        make_uscc(5004, "350100"))  # fmt: skip
    again = runner.invoke(app, ["org", "create", "fz-data", "--name", "乙", "--division",
                                "350100", "--uscc", make_uscc(5005, "350100")])  # fmt: skip
    assert again.exit_code == 1 and "exists" in again.output and _orgs(node) == 1


def _org_and_user(username: str, *roles: str) -> None:
    _ok("org", "create", "fz-data", "--name", "福州市数据管理局", "--division", "350100",
        "--uscc", make_uscc(5006, "350100"))  # fmt: skip
    role_args = [a for r in roles for a in ("--role", r)]
    _ok("user", "create", username, "--org", "fz-data", *role_args, "--password-stdin",
        input="a long enough password\n")  # fmt: skip


def test_user_roles_disable_enable_and_reset(var: Path, node: Platform) -> None:
    _org_and_user("li.steward", "steward")
    assert "li.steward: approver, steward" in _ok(
        "user", "roles", "li.steward", "--role", "steward", "--role", "approver"
    )
    refused = runner.invoke(app, ["user", "roles", "li.steward", "--role", "emperor"])
    assert refused.exit_code == 1 and "unknown role" in refused.output
    _ok("user", "disable", "li.steward")
    listed = json.loads(_ok("user", "list", "--json"))
    assert [(u["username"], u["active"], u["roles"]) for u in listed] == [
        ("li.steward", False, ["approver", "steward"])
    ]
    _ok("user", "enable", "li.steward")
    out = _ok("user", "reset-password", "li.steward")
    new = out.split("(shown once): ")[1].strip()
    _ok("user", "reset-password", "li.steward", "--password-stdin", input="my own passphrase\n")
    with node.factory() as s:
        user = s.scalars(select(User).where(User.username == "li.steward")).one()
        assert user.active and verify_password(user.password_hash, "my own passphrase")
        assert not verify_password(user.password_hash, new)
    actions = ["user.roles", "user.disable", "user.enable", "user.password-reset"]
    assert [len(_actions(node, a)) for a in actions] == [1, 1, 1, 2]
    missing = runner.invoke(app, ["user", "disable", "nobody"])
    assert missing.exit_code == 1 and "no account nobody" in missing.output


def test_unlock_needs_a_shared_throttle_store(var: Path) -> None:
    _org_and_user("li.steward", "steward")
    result = runner.invoke(app, ["user", "unlock", "li.steward"])
    assert result.exit_code == 1 and "/admin/users" in result.output


def test_unlock_clears_a_redis_throttle(
    var: Path, node: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINYUN_RATE_LIMIT_URI", "redis://127.0.0.1:6379")
    username = f"u{uuid.uuid4().hex[:10]}"
    _org_and_user(username, "steward")
    shared = Platform.open(load_settings(var_dir=var))
    try:
        app_ = create_app(shared)
        # An address of its own: Redis keeps other runs' counts for a minute.
        address = f"10.91.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
        with TestClient(app_, client=(address, 5000)) as http:
            for _ in range(shared.settings.login_attempts_per_minute):
                page = http.get("/login")
                csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
                http.post("/login", data={"username": username, "password": "x" * 12,
                                          "csrf": csrf})  # fmt: skip
        listed = json.loads(_ok("user", "list", "--json"))
        assert [u["locked"] for u in listed] == [True]
        assert f"{username} may sign in again" in _ok("user", "unlock", username)
        assert [u["locked"] for u in json.loads(_ok("user", "list", "--json"))] == [False]
        assert _actions(node, "user.unlock")[0].detail == "was locked"
    finally:
        shared.close()


def test_client_create_prints_the_secret_once_rotate_and_revoke(var: Path, node: Platform) -> None:
    _ok("org", "create", "fz-data", "--name", "福州市数据管理局", "--division", "350100",
        "--uscc", make_uscc(5007, "350100"))  # fmt: skip
    created = json.loads(
        _ok(
            "client",
            "create",
            "不动产登记系统",
            "--org",
            "fz-data",
            "--scope",
            "resource.read",
            "--scope",
            "org.read",
            "--json",
        )
    )
    cid, secret = created["client_id"], created["client_secret"]
    assert (
        created["scopes"] == ["org.read", "resource.read"] and created["organization"] == "fz-data"
    )
    listing = _ok("client", "list")
    assert cid in listing and secret not in listing and "active" in listing
    assert secret not in json.dumps([r.detail for r in _actions(node, "client.create")])
    with TestClient(create_app(node)) as http:

        def token(secret: str) -> int:
            return http.post(
                "/api/v1/oauth/token", data={"grant_type": "client_credentials"},
                auth=(cid, secret),
            ).status_code  # fmt: skip

        assert token(secret) == 200
        rotated = _ok("client", "rotate", cid)
        assert "shown this once" in rotated
        new_secret = rotated.split("client secret: ")[1].split()[0]
        assert token(secret) == 401 and token(new_secret) == 200
        access = http.post(
            "/api/v1/oauth/token", data={"grant_type": "client_credentials"},
            auth=(cid, new_secret),
        ).json()["access_token"]  # fmt: skip
        bearer = {"Authorization": f"Bearer {access}"}
        assert http.get("/api/v1/organizations", headers=bearer).status_code == 200
        assert "revoked" in _ok("client", "revoke", cid)
        assert http.get("/api/v1/organizations", headers=bearer).status_code == 401
        assert token(new_secret) == 401
    assert [c["active"] for c in json.loads(_ok("client", "list", "--json"))] == [False]
    bad = runner.invoke(app, ["client", "create", "x", "--org", "fz-data", "--scope", "all"])
    assert bad.exit_code == 1 and "unknown scope" in bad.output
    again = runner.invoke(app, ["client", "rotate", cid])
    assert again.exit_code == 1 and "revoked" in again.output
