"""The demo province job: departments, accounts, population files, resume after a failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

import minyun.handlers  # noqa: F401 - registers demo.load
from minyun.accounts import service as accounts
from minyun.accounts.models import User
from minyun.core import identifiers, jobs
from minyun.core.jobs import JobState
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.demo import province
from minyun.exchange.batch_models import BatchDelivery
from minyun.orgs.models import Organization
from tests.conftest import make_settings

ACTOR = Principal.system(on_behalf_of="test")


def _params(platform: Platform, persons: int, enterprises: int) -> dict[str, Any]:
    return {
        "persons": persons,
        "enterprises": enterprises,
        "seed": 11,
        "var_dir": str(platform.settings.var_dir),
        "lake_uri": platform.settings.lake_uri,
    }


def _submit_and_run(platform: Platform, params: dict[str, Any], **kw: Any) -> jobs.Job:
    with platform.factory.begin() as s:
        job_id = jobs.submit(s, ACTOR, "demo.load", params, key="demo-test").id
    return jobs.run(platform.factory, job_id, **kw)


def test_demo_province_has_departments_accounts_and_valid_people(tmp_path: Path) -> None:
    node = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    node.migrate()
    job = _submit_and_run(node, _params(node, 5_000, 800))
    assert job.state == JobState.SUCCEEDED, job.error
    with node.factory() as s:
        # 48, and Gulou's 5 departments and 10 street offices (apps.grid)
        assert s.scalar(select(func.count()).select_from(Organization)) == 48 + 15
        roles = {u.username: u.roles for u in s.scalars(select(User))}
    assert roles["steward"] == ["steward"] and roles["auditor"] == ["auditor"]
    assert {"citizen", "enterprise", "admin", "approver", "consumer"} <= set(roles)
    demo_accounts = {a.username: a for a in province.read_accounts(node.settings.var_dir)}
    with node.factory.begin() as s:
        user = accounts.authenticate(
            s,
            node.throttle,
            username="steward",
            password=demo_accounts["steward"].password,
            client_ip=None,
        )
        assert user.display_name == "市场监管数据专员"
    lake = province.population_dir(node.settings.lake_uri)
    persons = pq.read_table(lake / "persons")
    enterprises = pq.read_table(lake / "enterprises")
    assert persons.num_rows == 5_000 and enterprises.num_rows == 800
    assert pc.all(identifiers.ric_valid_mask(persons["ric"])).as_py()
    assert pc.all(identifiers.uscc_valid_mask(enterprises["uscc"])).as_py()
    assert pc.all(pc.is_in(enterprises["legal_rep_ric"], persons["ric"])).as_py()
    # The sharing story's standing order: its first delivery was queued; run, it delivers
    # the granted fields of the police register as a signed Parquet file.
    with node.factory() as s:
        queued = s.scalars(select(jobs.Job.id).where(jobs.Job.kind == "exchange.batch")).all()
    assert len(queued) == 1
    assert jobs.run(node.factory, queued[0]).state == JobState.SUCCEEDED
    with node.factory() as s:
        delivery = s.scalars(select(BatchDelivery)).one()
        assert delivery.state == "delivered" and (delivery.rows or 0) > 0
    node.close()


def test_interrupted_demo_load_resumes_after_the_last_whole_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test runs the job itself: no background runner may race it for the job.
    platform = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    platform.migrate()
    monkeypatch.setattr(province, "PART_ROWS", 1_000)
    params = _params(platform, 3_500, 0)
    folder = province.population_dir(platform.settings.lake_uri) / "persons"

    def crash(done: int, total: int | None, message: str | None) -> None:
        if message and message.startswith("persons: 2,000"):
            raise OSError("disk unplugged")

    failed = _submit_and_run(platform, params, on_progress=crash)
    assert failed.state == JobState.FAILED and "disk unplugged" in (failed.error or "")
    assert failed.resume is not None and failed.resume["persons_parts"] == 2
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("part-*.parquet")}
    assert sorted(kept) == ["part-00000.parquet", "part-00001.parquet"]

    resumed = _submit_and_run(platform, params)
    assert resumed.state == JobState.SUCCEEDED and resumed.attempts == 2
    parts = sorted(folder.glob("part-*.parquet"))
    assert [p.name for p in parts] == [f"part-0000{i}.parquet" for i in range(4)]
    assert all(kept[p.name] == p.stat().st_mtime_ns for p in parts[:2])  # not rewritten
    table = pq.read_table(folder)
    assert table.num_rows == 3_500 and pc.count_distinct(table["ric"]).as_py() == 3_500
    assert not list(folder.glob(".*.tmp"))
