"""The demo tells issue 16's story: its load resolves persons and enterprises, so the demo
citizen's "我的档案" and an enterprise's file gather several departments' records."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import select

import minyun.handlers  # noqa: F401 - registers demo.load
from minyun.accounts import service as accounts
from minyun.accounts.models import User
from minyun.catalog.models import Resource
from minyun.core import jobs
from minyun.core.jobs import JobState
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.subjects import files
from minyun.subjects.models import SubjectLink
from tests.conftest import make_settings

ACTOR = Principal.system(on_behalf_of="test")


def _demo(tmp_path: Path) -> Platform:
    """The demo's catalog, licences and subjects; no population files, air, grid or food."""
    node = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    node.migrate()
    params: dict[str, Any] = {
        "persons": 0, "enterprises": 0, "seed": 11, "var_dir": str(node.settings.var_dir),
        "lake_uri": node.settings.lake_uri, "opendata": False, "air": False, "grid": False,
        "food": False, "market": False,
    }  # fmt: skip
    with node.factory.begin() as s:
        job_id = jobs.submit(s, ACTOR, "demo.load", params, key="demo-subjects").id
    job = jobs.run(node.factory, job_id)
    assert job.state == JobState.SUCCEEDED, job.error
    return node


def test_the_demo_load_files_the_citizen_and_enterprises_across_departments(
    tmp_path: Path,
) -> None:
    node = _demo(tmp_path)
    try:
        with node.factory() as s:
            run = s.scalars(select(jobs.Job).where(jobs.Job.kind == "demo.load")).one()
            subjects = (run.result or {})["subjects"]
            providers = {
                code: org for code, org in s.execute(select(Resource.code, Resource.provider_id))
            }
        with node.factory.begin() as s:
            user = s.scalars(select(User).where(User.username == "citizen")).one()
            citizen = accounts.principal_for(user)
            mine, _ = files.own_file(s, node.lake, citizen)
        with node.factory() as s:
            linked = set(
                s.scalars(
                    select(SubjectLink.resource).where(SubjectLink.subject_id == mine.subject_id)
                )
            )
        assert mine.kind == "person" and mine.hidden_sources == 0, linked - {
            r.resource for r in mine.records
        }
        departments = {r.department for r in mine.records}
        assert len(departments) >= 4, departments
        assert {r.resource for r in mine.records} >= {
            "police-population-basic", "nature-real-estate-registration",
            "education-diplomas", "hrss-social-insurance",
        }  # fmt: skip
        assert all(r.values.get("ric") == user.ric for r in mine.records)
        assert not mine.conflicts  # her birth date and sex agree with her identity number
        # An enterprise held by two departments has one file with both.
        with node.factory() as s:
            links = s.execute(
                select(SubjectLink.subject_id, SubjectLink.resource).where(
                    SubjectLink.kind == "enterprise"
                )
            ).all()
        by_subject: dict[str, set[str]] = defaultdict(set)
        for subject_id, resource in links:
            by_subject[subject_id].add(providers[resource])
        shared = sorted(s for s, held in by_subject.items() if len(held) >= 2)
        assert shared
        with node.factory.begin() as s:
            admin = Principal.system(on_behalf_of="test")
            enterprise = files.subject_file(s, node.lake, admin, shared[0])
        assert enterprise.kind == "enterprise" and len(enterprise.departments) >= 2
        assert subjects["person"]["subjects"] > 0 and subjects["enterprise"]["subjects"] > 0
    finally:
        node.close()
