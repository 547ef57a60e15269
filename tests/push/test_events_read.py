"""Reading the event log by offset: each reader sees only what it may, every read audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.core import audit, events
from minyun.core.errors import Forbidden, Unauthenticated
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.core.uow import unit_of_work
from minyun.push import service
from minyun.web.app import create_app
from tests import factories
from tests.ingest.loadkit import load, make_resource, person, write_csv


def _staff(org_id: int | None, *roles: str, kind: str | None = None) -> Principal:
    return Principal(kind="user", name=f"u{org_id}{kind}", organization_id=org_id,
                     roles=frozenset(roles), account_kind=kind)  # fmt: skip


def _enterprise_events(node: Platform, n: int) -> None:
    with unit_of_work(node.factory) as session:
        for i in range(n):
            events.publish(session, kind="enterprise.registered", subject=f"E{i}", data={"i": i})


def test_a_resource_event_is_shown_only_to_those_who_may_read_the_resource(
    node: Platform, tmp_path: Path
) -> None:
    code, steward = make_resource(node)
    load(node, steward, code, write_csv(tmp_path / "p.csv", [person(1)]))
    with node.factory.begin() as session:
        other = factories.make_org(session).id
    with unit_of_work(node.factory) as session:
        mine = service.read_events(session, steward)
        theirs = service.read_events(session, _staff(other, Role.STEWARD, Role.CONSUMER))
    assert [(e.kind, e.subject) for e in mine.events] == [("resource.updated", code)]
    assert theirs.events == [] and theirs.next_after == 1 and theirs.head == 1


def test_enterprise_events_are_for_civil_servants_only(node: Platform) -> None:
    _enterprise_events(node, 2)
    with node.factory.begin() as session:
        org = factories.make_org(session).id
    with unit_of_work(node.factory) as session:
        staff = service.read_events(session, _staff(org, Role.CONSUMER))
    assert [e.subject for e in staff.events] == ["E0", "E1"]
    # A citizen's account is not let at the log at all (nor to subscribe).
    with pytest.raises(Forbidden), unit_of_work(node.factory) as session:
        service.read_events(session, _staff(None, kind="citizen"))
    with pytest.raises(Unauthenticated), unit_of_work(node.factory) as session:
        service.read_events(session, Principal.anonymous())


def test_pages_follow_the_offsets_and_every_read_is_audited(node: Platform) -> None:
    _enterprise_events(node, 5)
    reader = _staff(None, Role.CONSUMER)
    seen: list[str] = []
    after = 0
    while True:
        with unit_of_work(node.factory) as session:
            page = service.read_events(session, reader, after=after, limit=2)
        if not page.events:
            break
        seen += [e.subject for e in page.events]
        after = page.next_after
    assert seen == ["E0", "E1", "E2", "E3", "E4"]
    with node.factory() as session:
        reads = session.scalars(
            select(audit.AuditRecord).where(audit.AuditRecord.action == "events.read")
        ).all()
    assert [r.record_count for r in reads] == [2, 2, 1, 0]
    assert reads[0].record_keys == ["1", "2"]


def test_the_api_pages_by_offset_and_refuses_strangers_as_problem_json(
    node: Platform,
) -> None:
    _enterprise_events(node, 3)
    app = create_app(node)
    http = TestClient(app)
    with node.factory.begin() as session:
        org = factories.make_org(session).id
    _, bearer = factories.api_client_token(http, node, org, ["events.read"])
    page = http.get("/api/v1/events", params={"after": 1, "limit": 1}, headers=bearer).json()
    assert [e["subject"] for e in page["events"]] == ["E1"]
    assert page["events"][0]["id"] == "evt_2" and page["events"][0]["type"] == (
        "enterprise.registered"
    )
    assert (page["next_after"], page["head"]) == (2, 3)
    refused = http.get("/api/v1/events")
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert http.get("/api/v1/events", params={"after": -1}, headers=bearer).status_code == 422
