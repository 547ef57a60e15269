"""What an anonymous caller can learn or cause: audit floods, /readyz, the API docs' scripts."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.web.app import DENIALS_RECORDED, create_app
from tests.conftest import PostgresDatabases, make_settings

RECORDED = int(DENIALS_RECORDED.split("/")[0])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    overrides: dict[str, object] = {}
    if request.param == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        overrides["database_url"] = databases.create()
    platform = Platform.open(make_settings(tmp_path / "var", **overrides))
    platform.migrate()
    yield platform
    platform.close()


@pytest.fixture
def app(node: Platform) -> FastAPI:
    return create_app(node)


def records(node: Platform) -> list[AuditRecord]:
    with node.factory() as s:
        return list(s.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


def test_garbage_bearer_tokens_cannot_flood_the_audit_chain(node: Platform, app: FastAPI) -> None:
    with TestClient(app, client=("10.44.0.1", 40000)) as attacker:
        statuses = {
            attacker.get(
                "/api/v1/organizations", headers={"Authorization": f"Bearer garbage{n}"}
            ).status_code
            for n in range(200)
        }
    assert statuses == {401}  # every one is refused
    kept = records(node)
    assert [r.action for r in kept] == ["auth.token-use"] * RECORDED + ["auth.refusals-counted"]
    assert all(r.client_ip == "10.44.0.1" for r in kept)
    assert kept[-1].object_id == "10.44.0.1"
    with TestClient(app, client=("10.44.0.2", 40000)) as someone_else:
        someone_else.get("/api/v1/organizations", headers={"Authorization": "Bearer x"})
    assert records(node)[-1].client_ip == "10.44.0.2"  # another address is recorded


def test_refused_sign_ins_past_the_budget_are_not_recorded_one_by_one(
    node: Platform, app: FastAPI
) -> None:
    client = TestClient(app, client=("10.44.0.3", 40000), follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    for n in range(60):
        client.post(
            "/login", data={"username": f"guess{n}", "password": "x", "csrf": token.group(1)}
        )
    actions = [r.action for r in records(node)]
    assert actions == ["auth.login"] * RECORDED + ["auth.refusals-counted"]


def test_signed_in_refusals_are_always_recorded(node: Platform, app: FastAPI) -> None:
    from tests.web.test_pages import browser, make_user, sign_in

    user = make_user(node)
    client = browser(app)
    sign_in(client, user.username)
    for _ in range(RECORDED + 5):
        assert client.get("/api/v1/audit").status_code in (403, 404)
    with node.factory() as s:
        denied = s.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.outcome == "denied", AuditRecord.actor == f"user:{user.username}")
        )
    assert denied == RECORDED + 5


def test_readyz_does_not_tell_anonymous_callers_the_database_error(
    node: Platform, app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with node.engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    with caplog.at_level(logging.ERROR, logger="minyun.web.app"), TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "detail": "database unavailable"}
    assert "alembic_version" not in response.text
    assert "alembic_version" in caplog.text  # the operator still finds the reason in the log


def test_api_docs_load_swagger_ui_from_this_node_only(app: FastAPI) -> None:
    with TestClient(app) as client:
        page = client.get("/api/docs")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text  # no inline script: the CSP forbids it
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls and all(u.startswith("/static/") for u in urls), urls
        for url in urls:
            assert client.get(url).status_code == 200, url
        assert client.get("/api/openapi.json").status_code == 200


@pytest.mark.browser
def test_swagger_ui_runs_under_the_docs_csp(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            outside: list[str] = []
            page.on(
                "request",
                lambda r: None if r.url.startswith(server) else outside.append(r.url),
            )
            page.goto(f"{server}/api/docs")
            expect(page.locator(".opblock").first).to_be_visible(timeout=15000)
            assert not [e for e in errors if "Content Security Policy" in e], errors
            assert outside == []
        finally:
            chromium.close()
