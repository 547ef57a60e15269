"""Browser sessions live on the server: signing out, revoking and expiry end them for good.

Each test runs with sessions in SQLite, in PostgreSQL, and in the real Redis server.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from minyun.accounts import service
from minyun.accounts.models import WebSession
from minyun.core import clock
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.web.app import create_app
from minyun.web.sessions import COOKIE, RedisStore
from tests.conftest import PostgresDatabases, make_settings
from tests.factories import SYSTEM
from tests.web.test_pages import browser, csrf_of, make_user, sign_in

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "redis"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """A node keeping sessions in its SQLite or PostgreSQL database, or in Redis."""
    overrides: dict[str, object] = {}
    if request.param == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        overrides["database_url"] = databases.create()
    if request.param == "redis":
        overrides["session_uri"] = REDIS
    platform = Platform.open(make_settings(tmp_path / "var", **overrides))
    platform.migrate()
    yield platform
    platform.close()


@pytest.fixture
def app(node: Platform) -> FastAPI:
    return create_app(node)


def stored(node: Platform, cookie: str) -> dict[str, object] | None:
    """What the store holds under a cookie (looked up by its digest, as the app does)."""
    key = hashlib.sha256(cookie.encode()).hexdigest()
    if node.settings.session_uri:
        raw = redis.Redis.from_url(node.settings.session_uri).get(RedisStore.PREFIX + key)
        return None if raw is None else dict(json.loads(raw)["values"])
    with node.factory() as s:
        row = s.get(WebSession, key)
        return None if row is None else dict(row.data)


def me(app: FastAPI, cookie: str) -> int:
    """The status of GET /api/v1/me for a client that presents only this cookie."""
    with TestClient(app, cookies={COOKIE: cookie}) as thief:
        return thief.get("/api/v1/me").status_code


def test_the_cookie_is_a_random_id_and_the_store_keeps_only_its_digest(
    node: Platform, app: FastAPI
) -> None:
    user = make_user(node)
    client = browser(app)
    sign_in(client, user.username)
    cookie = client.cookies[COOKIE]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie)  # 256 random bits, nothing else
    values = stored(node, cookie)
    assert values is not None and values["user_id"] == user.id
    if not node.settings.session_uri:
        with node.factory() as s:
            assert cookie not in set(s.scalars(select(WebSession.id)))
    assert me(app, cookie) == 200


def test_a_cookie_copied_before_sign_out_is_refused_after_it(node: Platform, app: FastAPI) -> None:
    user = make_user(node)
    client = browser(app)
    sign_in(client, user.username)
    copied = client.cookies[COOKIE]
    assert me(app, copied) == 200
    home = client.get("/")
    assert client.post("/logout", data={"csrf": csrf_of(home)}).status_code == 303
    assert stored(node, copied) is None  # deleted on the server, not only in the browser
    assert me(app, copied) == 401


def test_sign_in_starts_a_new_session_and_deletes_the_visitor_one(
    node: Platform, app: FastAPI
) -> None:
    user = make_user(node)
    client = browser(app)
    client.get("/login")
    visitor = client.cookies[COOKIE]
    assert stored(node, visitor) is not None  # the sign-in form's CSRF token lives there
    sign_in(client, user.username)
    assert client.cookies[COOKIE] != visitor  # no fixation
    assert stored(node, visitor) is None


def test_a_page_without_a_form_starts_no_session(node: Platform, app: FastAPI) -> None:
    response = browser(app).get("/")
    assert response.status_code == 200
    assert "set-cookie" not in response.headers


def test_an_admin_revokes_every_session_of_an_account(node: Platform, app: FastAPI) -> None:
    user = make_user(node)
    admin = make_user(node, roles=["admin"])
    laptop, phone, admin_browser = browser(app), browser(app), browser(app)
    for client in (laptop, phone):
        sign_in(client, user.username)
    cookies = [laptop.cookies[COOKIE], phone.cookies[COOKIE]]
    sign_in(admin_browser, admin.username)
    token = csrf_of(admin_browser.get("/"))
    response = admin_browser.delete(
        f"/api/v1/users/{user.id}/sessions", headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 204, response.text
    assert [me(app, c) for c in cookies] == [401, 401]
    assert me(app, admin_browser.cookies[COOKIE]) == 200  # the admin's own session goes on
    with node.factory() as s:
        revoked = s.scalars(
            select(AuditRecord).where(AuditRecord.action == "auth.sessions-revoke")
        ).one()
    assert (revoked.actor, revoked.object_id) == (f"user:{admin.username}", user.username)
    again = browser(app)
    sign_in(again, user.username)  # signing in afterwards works as before
    assert me(app, again.cookies[COOKIE]) == 200


def test_a_user_signs_out_everywhere_but_cannot_revoke_others(node: Platform, app: FastAPI) -> None:
    user, other = make_user(node), make_user(node)
    client, elsewhere, others = browser(app), browser(app), browser(app)
    sign_in(client, user.username)
    sign_in(elsewhere, user.username)
    sign_in(others, other.username)
    token = csrf_of(client.get("/"))
    refused = client.delete(f"/api/v1/users/{other.id}/sessions", headers={"X-CSRF-Token": token})
    assert refused.status_code == 403
    assert me(app, others.cookies[COOKIE]) == 200
    done = client.delete(f"/api/v1/users/{user.id}/sessions", headers={"X-CSRF-Token": token})
    assert done.status_code == 204
    assert me(app, elsewhere.cookies[COOKIE]) == 401
    assert me(app, client.cookies[COOKIE]) == 401


def test_revoke_sessions_in_the_service_ends_sessions_signed_in_before(
    node: Platform, app: FastAPI
) -> None:
    user = make_user(node)
    client = browser(app)
    sign_in(client, user.username)
    with node.factory.begin() as s:
        target = service.get_user(s, user.id)
        service.revoke_sessions(s, SYSTEM, target)
    assert me(app, client.cookies[COOKIE]) == 401


def test_a_deactivated_account_loses_its_sessions(node: Platform, app: FastAPI) -> None:
    user = make_user(node)
    client = browser(app)
    sign_in(client, user.username)
    with node.factory.begin() as s:
        service.get_user(s, user.id).active = False
    assert me(app, client.cookies[COOKIE]) == 401


def test_an_expired_session_is_refused(node: Platform, app: FastAPI) -> None:
    if node.settings.session_uri:
        pytest.skip("Redis expires its keys itself")
    user = make_user(node)
    client = browser(app)
    sign_in(client, user.username)
    cookie = client.cookies[COOKIE]
    key = hashlib.sha256(cookie.encode()).hexdigest()
    with node.factory.begin() as s:
        s.execute(
            update(WebSession)
            .where(WebSession.id == key)
            .values(expires_at=clock.now() - timedelta(seconds=1))
        )
    assert me(app, cookie) == 401


def test_a_forged_or_malformed_cookie_is_anonymous(node: Platform, app: FastAPI) -> None:
    for cookie in ("x" * 43, "not a cookie", "A" * 5000):
        assert me(app, cookie) == 401
