"""HTTP uploads of a load (multipart, size-limited), versions and rejects over the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.accounts import service as accounts
from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.ingest import service
from minyun.web.app import create_app
from tests.ingest.loadkit import make_resource, person, write_csv


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as c:
        yield c


def _token(client: TestClient, platform: Platform, organization_id: int) -> dict[str, str]:
    with platform.factory.begin() as s:
        new = accounts.create_client(
            s, Principal.system(), organization_id=organization_id, name="数据接口",
            scopes=["resource.load"],
        )  # fmt: skip
    r = client.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(new.client.client_id, new.secret),
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _wait(platform: Platform, job_id: str) -> jobs.Job:
    for _ in range(200):
        with platform.factory() as s:
            job = jobs.get_job(s, job_id)
        if job.finished:
            return job
        time.sleep(0.05)
    raise AssertionError("the load job did not finish")


def test_upload_loads_the_file_and_lists_versions_and_rejects(
    client: TestClient, platform: Platform, tmp_path: Path
) -> None:
    code, steward = make_resource(platform)
    assert steward.organization_id is not None
    headers = _token(client, platform, steward.organization_id)
    src = write_csv(tmp_path / "人口.csv", [person(i) for i in range(1, 6)] + [person(6, sex="?")])
    with src.open("rb") as f:
        r = client.post(
            f"/api/v1/resources/{code}/loads", headers=headers,
            files={"file": ("人口.csv", f, "text/csv")}, data={"mode": "full"},
        )  # fmt: skip
    assert r.status_code == 202, r.text
    job = _wait(platform, r.json()["job"])
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    # The upload (a department's raw records) is deleted once its load has settled.
    assert list((platform.settings.var_dir / "uploads").iterdir()) == []
    # The quality report is a job of its own, queued by the version's commit.
    with platform.factory() as s:
        quality = s.scalars(select(jobs.Job).where(jobs.Job.kind == service.QUALITY_KIND)).one()
    assert _wait(platform, quality.id).state == jobs.JobState.SUCCEEDED
    [version] = client.get(f"/api/v1/resources/{code}/versions", headers=headers).json()
    assert (version["rows_read"], version["rows_accepted"], version["rows_rejected"]) == (6, 5, 1)
    assert version["source"] == "人口.csv" and version["quality"]["rows"] == 5
    [reject] = client.get(f"/api/v1/resources/{code}/rejects", headers=headers).json()
    assert (reject["row_number"], reject["field"], reject["record"]["sex"]) == (6, "sex", "?")


def test_upload_over_the_limit_is_a_problem_and_nothing_is_kept(
    client: TestClient, platform: Platform, tmp_path: Path
) -> None:
    code, steward = make_resource(platform)
    assert steward.organization_id is not None
    headers = _token(client, platform, steward.organization_id)
    platform.settings = platform.settings.model_copy(update={"upload_max_bytes": 2000})
    src = write_csv(tmp_path / "big.csv", [person(i) for i in range(1, 200)])
    with src.open("rb") as f:
        r = client.post(
            f"/api/v1/resources/{code}/loads", headers=headers, files={"file": ("big.csv", f)}
        )
    assert r.status_code == 422
    assert r.json()["type"] == "/problems/too-large" and "limit" in r.json()["detail"]
    uploads = platform.settings.var_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_upload_by_another_department_is_forbidden(
    client: TestClient, platform: Platform, tmp_path: Path
) -> None:
    code, _ = make_resource(platform)
    _, other = make_resource(platform)
    assert other.organization_id is not None
    headers = _token(client, platform, other.organization_id)
    src = write_csv(tmp_path / "a.csv", [person(1)])
    with src.open("rb") as f:
        r = client.post(
            f"/api/v1/resources/{code}/loads", headers=headers, files={"file": ("a.csv", f)}
        )
    assert r.status_code == 403


@pytest.mark.parametrize("encoding", ["rot13", "zlib_codec", "base64"])
def test_an_upload_with_a_codec_that_is_no_text_encoding_is_refused_and_not_kept(
    client: TestClient, platform: Platform, tmp_path: Path, encoding: str
) -> None:
    code, steward = make_resource(platform)
    assert steward.organization_id is not None
    headers = _token(client, platform, steward.organization_id)
    src = write_csv(tmp_path / "a.csv", [person(1)])
    with src.open("rb") as f:
        r = client.post(
            f"/api/v1/resources/{code}/loads", headers=headers,
            files={"file": ("a.csv", f)}, data={"encoding": encoding},
        )  # fmt: skip
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == f"unknown text encoding {encoding!r}"
    uploads = platform.settings.var_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
