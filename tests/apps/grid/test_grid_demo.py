"""The demo's grid: accounts that can sign in, a grid worker on duty, reports on the map."""

from __future__ import annotations

from sqlalchemy import func, select

from minyun.apps.grid import demo, stats
from minyun.apps.grid.models import Area, Report, ReportState
from minyun.core.platform import Platform
from minyun.demo.province import load_departments, read_accounts
from tests.apps.grid.conftest import SYSTEM


def test_demo_grid_is_loaded_once_with_its_accounts(platform: Platform) -> None:
    var = platform.settings.var_dir
    with platform.factory.begin() as session:
        load_departments(session)
        assert demo.load(session, var, lake_uri=platform.settings.lake_uri) == 3
    with platform.factory.begin() as session:
        assert demo.load(session, var, lake_uri=platform.settings.lake_uri) == 0
        names = {a.username for a in read_accounts(var)}
        assert {"wangge", "jiaojing", "xiaofang", "fangguan", "chengguan"} <= names
        assert (
            session.scalar(
                select(func.count()).select_from(Area).where(Area.worker_user_id.is_not(None))
            )
            == 2
        )
        states = sorted(session.scalars(select(Report.state)))
        assert states.count(ReportState.CLOSED) == 1 and len(states) == 3
        assert stats.summary(session, SYSTEM).reports == 3
