"""Issuance in step with a department's data: issue, re-issue, revoke; idempotent."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.uow import unit_of_work
from minyun.ingest.models import LoadMode
from minyun.licences import service
from minyun.licences.models import Licence
from tests.licences import kit


def _by_status(node: Platform) -> dict[str, int]:
    with node.factory() as session:
        return dict(
            session.execute(select(Licence.status, func.count()).group_by(Licence.status)).all()
        )


def test_licences_follow_creates_changes_and_deregistrations(
    node: Platform, tmp_path: Path
) -> None:
    code, steward, org = kit.registrations(node)
    kit.load(node, steward, code, tmp_path, [kit.row(n) for n in range(1, 6)])
    kit.define(node, steward, org, code)
    first = kit.issue(node)
    assert (first.issued, first.revoked) == (5, 0)
    changed = [kit.row(1, name="改名后有限公司"), kit.row(2, status="注销"), kit.row(6)]
    kit.load(node, steward, code, tmp_path, changed, mode=LoadMode.UPSERT)
    # The load queued the type's issuance in its own transaction: running it follows the load.
    with node.factory() as session:
        queued = session.scalars(select(jobs.Job).where(jobs.Job.kind == service.KIND)).all()
    assert [(j.params, j.state) for j in queued] == [({"type": "business-licence"}, "queued")]
    second = service.Tally(**jobs.run(node.factory, queued[0].id).result)
    assert (second.issued, second.reissued, second.revoked, second.read) == (1, 1, 1, 3)
    kit.load(node, steward, code, tmp_path, [kit.row(3)], mode=LoadMode.DELETE)
    third = kit.issue(node)
    assert (third.revoked, third.read) == (1, 1)
    again = kit.issue(node)
    assert (again.issued, again.reissued, again.revoked, again.read) == (0, 0, 0, 0)
    assert _by_status(node) == {"live": 4, "superseded": 1, "revoked": 2}
    with node.factory() as session:
        live = session.scalars(select(Licence).where(Licence.status == "live")).all()
        assert len({lic.source_key for lic in live}) == len(live) == 4
        renamed = next(lic for lic in live if lic.holder_id == kit.row(1)["uscc"])
        assert renamed.data["name"] == "改名后有限公司"


def test_a_whole_table_reload_revokes_rows_that_left(sqlite_node: Platform, tmp_path: Path) -> None:
    node = sqlite_node
    code, steward, org = kit.registrations(node)
    kit.load(node, steward, code, tmp_path, [kit.row(n) for n in range(1, 4)])
    kit.define(node, steward, org, code)
    kit.issue(node)
    kit.load(node, steward, code, tmp_path, [kit.row(1), kit.row(2)])
    tally = kit.issue(node)
    assert (tally.revoked, tally.unchanged, tally.issued) == (1, 2, 0)


def test_issued_credentials_verify_and_revocation_shows(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    node = sqlite_node
    code, steward, org = kit.registrations(node)
    kit.load(node, steward, code, tmp_path, [kit.row(1)])
    kit.define(node, steward, org, code)
    kit.issue(node)
    with unit_of_work(node.factory) as session:
        licence = session.scalars(select(Licence)).one()
        token = licence.credential
        assert service.verify(session, steward, token).outcome == "valid"
        tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        assert service.verify(session, steward, tampered).outcome == "forged"
        service.change_status(session, steward, licence.id, to="suspended", reason="核查中")
    with unit_of_work(node.factory) as session:
        assert service.verify(session, steward, token).outcome == "suspended"
        service.change_status(session, steward, licence.id, to="revoked", reason="吊销")
    with unit_of_work(node.factory) as session:
        result = service.verify(session, steward, token)
        assert result.outcome == "revoked", result.reason


@pytest.mark.postgres
def test_two_issuances_at_once_take_turns_and_issue_each_row_once(
    pg_node: Platform, tmp_path: Path
) -> None:
    node = pg_node
    code, steward, org = kit.registrations(node)
    kit.load(node, steward, code, tmp_path, [kit.row(n) for n in range(1, 41)])
    kit.define(node, steward, org, code)
    results: list[object] = []

    def run() -> None:
        try:
            results.append(kit.issue(node))
        except Exception as exc:  # the assertion below shows it
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    tallies = [r for r in results if isinstance(r, service.Tally)]
    assert len(tallies) == 2, results
    assert sorted(t.issued for t in tallies) == [0, 40]
    assert _by_status(node) == {"live": 40}
