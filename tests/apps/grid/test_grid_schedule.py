"""The SLA schedule: overdue tasks escalate by themselves, once, on the report's timeline.

The clock is controlled (`core.clock.now` moved forward); the jobs run as the node runs them:
in the foreground (the caller's turn), and in threads of the web app's own process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from minyun.apps.grid import schedule, service
from minyun.apps.grid.models import Report, Step, Task
from minyun.apps.grid.photos import PhotoStore
from minyun.apps.grid.service import NewReport
from minyun.core import clock, events, jobs
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.apps.grid.conftest import DONGJIEKOU, SYSTEM, officer
from tests.conftest import make_settings

START = datetime(2026, 12, 7, 9, 0, tzinfo=clock.now().tzinfo)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Set the platform's clock to START + the given offset."""

    def move(offset: timedelta) -> None:
        monkeypatch.setattr(clock, "now", lambda: START + offset)

    move(timedelta(0))
    return move


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Platform]:
    """A node whose jobs run in the caller's turn (`jobs.run_pending`)."""
    platform = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    platform.migrate()
    with platform.factory.begin() as session:
        service.load_gulou(session, SYSTEM)
    yield platform
    platform.close()


def _file(platform: Platform, code: str = "fire-lane") -> int:
    with platform.factory.begin() as session:
        report = service.file_report(
            session, officer(session, "gl-st-004"), PhotoStore(platform.settings.lake_uri),
            NewReport(code, "消防通道被堵", *DONGJIEKOU,
                      attributes={"BLOCKING": ["full"]} if code == "fire-lane" else {}),
        )  # fmt: skip
        return report.id


def _escalated(platform: Platform, report_id: int) -> list[str]:
    with platform.factory() as session:
        return list(session.scalars(
            select(Step.note).where(Step.report_id == report_id, Step.kind == "escalated")
            .order_by(Step.id)
        ))  # fmt: skip


def test_overdue_tasks_escalate_by_the_schedule_once_per_level(
    node: Platform, frozen: Callable[[timedelta], None]
) -> None:
    report_id = _file(node)  # fire lane: arrive within 10 minutes, close within 2 hours
    ticker = schedule.Escalator(node.factory)
    frozen(timedelta(minutes=5))
    assert ticker.tick() is None  # nothing due: no job at all
    assert node.dispatcher.take_pending() == []

    frozen(timedelta(minutes=11))
    job_id = ticker.tick()
    assert job_id is not None
    assert ticker.tick() == job_id  # the same minute asked again: the same job
    [ran] = jobs.run_pending(node.factory, node.dispatcher)
    assert ran.state == jobs.JobState.SUCCEEDED and ran.result == {"escalated": 3}
    steps = _escalated(node, report_id)
    assert len(steps) == 3 and all(s.endswith("→ gl-st-004") for s in steps)  # the street office

    frozen(timedelta(minutes=30))
    assert ticker.tick() is None  # already at the street office; the close clock still runs

    frozen(timedelta(hours=2, minutes=1))
    assert ticker.tick() is not None
    [ran] = jobs.run_pending(node.factory, node.dispatcher)
    assert ran.result == {"escalated": 3}
    steps = _escalated(node, report_id)
    assert len(steps) == 6 and all(s.endswith("→ gl-grid-centre") for s in steps[3:])

    frozen(timedelta(days=3))
    assert ticker.tick() is None  # every level reached: nothing more, ever
    with node.factory() as session:
        assert set(session.scalars(select(Task.escalation))) == {2}
        kinds = [e.kind for e in events.read_after(session, 0, limit=100)]
        assert kinds.count("grid.task.escalated") == 6
        runs = session.scalars(select(AuditRecord).where(AuditRecord.action == "grid.escalate"))
        assert [r.record_count for r in runs] == [3, 3]


def test_the_web_app_runs_the_schedule_in_its_own_process(
    platform: Platform, frozen: Callable[[timedelta], None]
) -> None:
    with platform.factory.begin() as session:
        service.load_gulou(session, SYSTEM)
    report_id = _file(platform, "garbage")
    frozen(timedelta(minutes=61))
    app = create_app(platform)
    with TestClient(app):
        assert app.state.grid_escalator is not None  # its first look is at once
        deadline = time.monotonic() + 30
        while not _escalated(platform, report_id) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(_escalated(platform, report_id)) == 1
    with platform.factory() as session:
        assert session.scalar(select(func.count()).select_from(jobs.Job)
                              .where(jobs.Job.kind == schedule.KIND)) == 1  # fmt: skip
        report = session.get(Report, report_id)
        assert report is not None and report.steps[-1].kind == "escalated"
