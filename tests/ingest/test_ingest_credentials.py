"""A source's credentials stay out of job parameters, lineage and the audit log, yet reach the load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from minyun.core import jobs
from minyun.core.audit import AuditRecord
from minyun.core.keys import load_node_key
from minyun.core.platform import Platform
from minyun.ingest import sources
from minyun.ingest.models import LoadMode
from minyun.ingest.sources import SourceError, _safe_url, open_source, seal_source
from tests.ingest.loadkit import load, make_resource, versions
from tests.ingest.test_ingest_databases import _pg_insert, _values, pg_table  # noqa: F401


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://bob:s3cret@data.example/x.csv?token=abc&sig=1#frag", "https://data.example/x.csv"),
        ("postgresql://etl:s3cret@db.example:5433/hr?sslpassword=k", "postgresql://db.example:5433/hr"),
        ("mysql://root@[::1]:3306/test", "mysql://[::1]:3306/test"),
        ("https://data.example/plain.csv", "https://data.example/plain.csv"),
    ],
)  # fmt: skip
def test_safe_url_drops_user_info_query_and_fragment(url: str, safe: str) -> None:
    assert _safe_url(url) == safe


def test_a_sealed_source_opens_only_with_the_same_node_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    key = load_node_key(tmp_path / "a")
    dsn = "postgresql://etl:s3cret@db.example/hr?sslmode=require"
    public, sealed = seal_source(dsn, key)
    assert public == "postgresql://db.example/hr" and sealed is not None and "s3cret" not in sealed
    assert open_source(public, sealed, key) == dsn
    with pytest.raises(SourceError, match="cannot be opened"):
        open_source(public, sealed, load_node_key(tmp_path / "b"))
    with pytest.raises(SourceError):  # the sealed part cannot be moved to another source
        open_source("postgresql://elsewhere.example/hr", sealed, key)
    assert seal_source("https://data.example/plain.csv", key) == (
        "https://data.example/plain.csv",
        None,
    )
    assert seal_source("/srv/upload.csv", key) == ("/srv/upload.csv", None)


def test_a_dsn_password_stays_out_of_the_job_but_reaches_the_load(
    sqlite_node: Platform,
    pg_table: tuple[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin_dsn, table = pg_table
    dsn = admin_dsn.replace("postgres@", "postgres:s3cret-pw@", 1)  # the server trusts locals
    _pg_insert(admin_dsn, table, [_values(i) for i in range(1, 4)])
    reached: list[str] = []
    real = sources.fetch_table

    def spy(dsn: str, *args: Any, **kw: Any) -> sources.Fetched:
        reached.append(dsn)
        return real(dsn, *args, **kw)

    monkeypatch.setattr(sources, "fetch_table", spy)
    code, actor = make_resource(sqlite_node)
    job = load(sqlite_node, actor, code, dsn, LoadMode.FULL, table=table)
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    assert reached == [dsn]  # the load connected with the password
    assert "s3cret-pw" not in json.dumps(job.params)
    assert job.params["source"] == "postgresql://127.0.0.1:5432/postgres"
    with sqlite_node.factory() as s:
        details = [r.detail or "" for r in s.scalars(select(AuditRecord))]
    assert details and not any("s3cret-pw" in d for d in details)
    assert all("s3cret-pw" not in v.source for v in versions(sqlite_node, code))
