"""The demo's open data: 500+ datasets across the 21 domains, loaded in seconds."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import func, select

from minyun.core.platform import Platform
from minyun.demo import province
from minyun.opendata import ckan, demo, service
from minyun.opendata.models import OpenApplication, OpenDataset
from tests.conftest import make_settings


def test_demo_opens_500_datasets_in_21_domains_quickly(tmp_path: Path) -> None:
    node = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    node.migrate()
    try:
        with node.factory.begin() as s:
            province.load_departments(s)
        started = time.monotonic()
        with node.factory.begin() as s:
            made = demo.load(s, node.lake, big_rows=5_000)
        took = time.monotonic() - started
        assert made >= 500 and took < 60, (made, took)
        with node.factory.begin() as s:
            assert demo.load(s, node.lake, big_rows=5_000) == 0  # idempotent
            domains = s.scalars(select(OpenDataset.domain).distinct()).all()
            assert len(domains) == 21
            listed = s.scalar(service.listed_query().with_only_columns(func.count()))
            assert listed == made
            police = service.get_dataset(s, demo.CITIZEN_APPLIES_FOR)
            assert police.resource.open_type == "conditional"  # listed; rows on application
            found = ckan.search(s, q="福州市企业登记", facet_fields=["groups"])
            assert found.datasets[0].title == "福州市企业登记信息"
        with node.factory.begin() as s:  # with the accounts, the demo citizen applies (once)
            province.load_accounts(s, node.settings.var_dir)
            assert demo.load(s, node.lake, big_rows=5_000) == 0
            assert demo.load(s, node.lake, big_rows=5_000) == 0
            waiting = [(a.dataset.name, a.status) for a in s.scalars(select(OpenApplication))]
            assert waiting == [(demo.CITIZEN_APPLIES_FOR, "submitted")]
    finally:
        node.close()
