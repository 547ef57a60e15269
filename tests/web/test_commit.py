"""The request's transaction commits before the response: a failed commit is a 500, never a 2xx."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.core.audit import AuditCheckpoint, AuditRecord
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.factories import SYSTEM, make_org

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def node(request: pytest.FixtureRequest) -> Platform:
    fixture = "platform" if request.param == "sqlite" else "pg_platform"
    platform: Platform = request.getfixturevalue(fixture)
    return platform


@pytest.fixture
def client_credentials(node: Platform) -> tuple[str, str]:
    with node.factory.begin() as s:
        org = make_org(s)
        new = accounts.create_client(
            s, SYSTEM, organization_id=org.id, name="接口", scopes=["org.read"]
        )
        return new.client.client_id, new.secret


class CommitRefused(Exception):
    """What the database says when the commit cannot be made durable."""


@contextmanager
def failing_commits() -> Iterator[None]:
    def refuse(session: Session) -> None:
        raise CommitRefused("forced commit failure in /srv/minyun/secret/path.py")

    event.listen(Session, "before_commit", refuse)
    try:
        yield
    finally:
        event.remove(Session, "before_commit", refuse)


def _counts(node: Platform) -> tuple[int, int]:
    with node.factory() as s:
        records = s.scalar(select(func.count()).select_from(AuditRecord)) or 0
        checkpoints = s.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0
    return records, checkpoints


def _token(client: TestClient, cid: str, secret: str) -> tuple[int, str, str]:
    response = client.post(
        "/api/v1/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret)
    )
    return response.status_code, response.headers["content-type"], response.text


def test_a_change_is_committed_before_its_response_is_sent(
    node: Platform, client_credentials: tuple[str, str]
) -> None:
    before = _counts(node)
    with TestClient(create_app(node)) as client:
        status, _, _ = _token(client, *client_credentials)
    assert status == 200
    records, checkpoints = _counts(node)
    assert (records, checkpoints) == (before[0] + 1, before[1] + 1)


def test_a_commit_that_fails_is_a_500_problem_and_keeps_nothing(
    node: Platform, client_credentials: tuple[str, str]
) -> None:
    before = _counts(node)
    heads_before = node.audit_heads.path.read_bytes() if node.audit_heads.path.exists() else b""
    app = create_app(node)
    with TestClient(app, raise_server_exceptions=False) as client, failing_commits():
        response = client.post(
            "/api/v1/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=client_credentials,
            headers={"X-Request-ID": "commit-fails-0001"},
        )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "/problems/server-error" and body["status"] == 500
    assert body["request_id"] == "commit-fails-0001"
    assert "access_token" not in response.text
    for leak in ("Traceback", "/srv/", ".py", "forced", "CommitRefused"):
        assert leak not in response.text
    assert _counts(node) == before  # neither the token's audit record nor its signed head
    after = node.audit_heads.path.read_bytes() if node.audit_heads.path.exists() else b""
    assert after == heads_before


def test_an_unexpected_error_on_a_page_is_an_html_500_without_details(
    platform: Platform,
) -> None:
    app = create_app(platform)
    with TestClient(app, raise_server_exceptions=False) as client, failing_commits():
        response = client.get("/login", headers={"Accept": "text/html"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text and "/srv/" not in response.text
