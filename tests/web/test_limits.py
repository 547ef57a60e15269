"""Body limits hold whether or not the client declares the size."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from minyun.core.platform import Platform
from minyun.web.app import create_app
from minyun.web.limits import DEFAULT_LIMIT


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as c:
        yield c


def test_declared_oversized_body_is_refused_before_reading(client: TestClient) -> None:
    r = client.post(
        "/api/v1/oauth/token", headers={"content-length": str(2 * 1024**3)}, content=b"x"
    )
    assert r.status_code == 413 and r.json()["type"] == "/problems/too-large"


def test_undeclared_oversized_body_is_cut_off_while_streaming(client: TestClient) -> None:
    chunk = b"a" * (1024 * 1024)

    def body() -> Iterator[bytes]:
        for _ in range(DEFAULT_LIMIT // len(chunk) + 2):
            yield chunk

    r = client.post(
        "/api/v1/oauth/token",
        content=body(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413, r.text
    assert r.json()["type"] == "/problems/too-large"


def test_upload_limit_applies_to_load_uploads(tmp_path: object, platform: Platform) -> None:
    small = platform.settings.model_copy(update={"upload_max_bytes": 1000})
    node = dataclasses.replace(platform, settings=small)
    with TestClient(create_app(node)) as c:
        r = c.post(
            "/api/v1/resources/anything/loads",
            files={"file": ("big.csv", b"x" * 200_000, "text/csv")},
        )
    assert r.status_code == 413 and r.json()["type"] == "/problems/too-large"
