"""The event log: written with the change, ordered, gapless, nothing of a rolled-back change."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from minyun.core import events
from minyun.core.errors import Invalid
from minyun.core.platform import Platform
from minyun.core.uow import unit_of_work
from minyun.ingest import service as ingest_service
from tests.ingest.loadkit import load, make_resource, person, write_csv


def test_published_events_get_increasing_offsets_in_commit_order(node: Platform) -> None:
    for n in range(3):
        with unit_of_work(node.factory) as session:
            events.publish(session, kind="enterprise.registered", subject=f"91350100M{n:09d}",
                           data={"n": n})  # fmt: skip
    with node.factory() as session:
        found = events.read_after(session, 0, limit=10)
        assert [e.offset for e in found] == [1, 2, 3]
        assert [e.data["n"] for e in found] == [0, 1, 2]
        assert events.head(session) == 3
        assert [e.offset for e in events.read_after(session, 1, limit=1)] == [2]


def test_a_rolled_back_change_leaves_no_event_and_no_gap(node: Platform) -> None:
    with pytest.raises(RuntimeError), unit_of_work(node.factory) as session:
        events.publish(session, kind="enterprise.changed", subject="X", data={})
        raise RuntimeError("the change fails after its event")
    with unit_of_work(node.factory) as session:
        kept = events.publish(session, kind="enterprise.changed", subject="Y", data={})
        assert kept.offset == 1
    with node.factory() as session:
        assert [(e.offset, e.subject) for e in events.read_after(session, 0, limit=10)] == [
            (1, "Y")
        ]


def test_an_unknown_kind_is_refused(session: Session) -> None:
    with pytest.raises(Invalid):
        events.publish(session, kind="enterprise.exploded", subject="X", data={})


def test_a_committed_load_publishes_resource_updated(node: Platform, tmp_path: Path) -> None:
    code, steward = make_resource(node)
    done = load(node, steward, code, write_csv(tmp_path / "p.csv", [person(1), person(2)]))
    assert done.state == "succeeded", done.error
    with node.factory() as session:
        (event,) = session.scalars(select(events.Event)).all()
    assert (event.kind, event.subject) == ("resource.updated", code)
    assert event.data["lake_version"] == 0 and event.data["rows_accepted"] == 2


def test_a_refused_load_publishes_nothing(node: Platform, tmp_path: Path) -> None:
    code, steward = make_resource(node, threshold=0.0)
    bad = write_csv(tmp_path / "p.csv", [person(1, id="not-a-number"), person(2)])
    load(node, steward, code, bad)
    with node.factory() as session:
        assert events.head(session) == 0


def test_a_second_publisher_waits_for_the_first_to_commit_so_offsets_follow_commits(
    node: Platform,
) -> None:
    first_in = threading.Event()
    release = threading.Event()
    second_done = threading.Event()
    offsets: dict[str, int] = {}

    def first() -> None:
        with unit_of_work(node.factory) as session:
            offsets["first"] = events.publish(session, kind="enterprise.changed", subject="A",
                                              data={}).offset  # fmt: skip
            first_in.set()
            release.wait(10)

    def second() -> None:
        with unit_of_work(node.factory) as session:
            offsets["second"] = events.publish(session, kind="enterprise.changed", subject="B",
                                               data={}).offset  # fmt: skip
        second_done.set()

    a = threading.Thread(target=first)
    a.start()
    assert first_in.wait(10)
    b = threading.Thread(target=second)
    b.start()
    # While the first transaction is open, the second can neither take an offset nor commit,
    # so no reader ever sees offset 2 before offset 1 exists.
    assert not second_done.wait(0.5)
    if node.engine.dialect.name == "postgresql":  # SQLite's readers wait for the writers too
        with node.factory() as session:
            assert events.read_after(session, 0, limit=10) == []
    release.set()
    a.join(10)
    b.join(10)
    assert offsets == {"first": 1, "second": 2}


def test_a_load_recorded_from_its_delta_commit_publishes_resource_updated(
    node: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, steward = make_resource(node)

    def busy(*args: object, **kwargs: object) -> None:
        raise OperationalError("UPDATE resources", {}, Exception("database is locked"))

    monkeypatch.setattr(ingest_service, "_record_committed", busy)
    done = load(node, steward, code, write_csv(tmp_path / "p.csv", [person(1)]))
    assert done.state == "succeeded", done.error
    with node.factory() as session:
        (event,) = events.read_after(session, 0, limit=10)
    assert (event.kind, event.subject, event.data["lake_version"]) == ("resource.updated", code, 0)
