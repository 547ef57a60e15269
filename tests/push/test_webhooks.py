"""Webhooks to a real local receiver: in order, retried, dead-lettered, never duplicated."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.accounts.models import User
from minyun.accounts.service import principal_for
from minyun.core import clock, events, jobs
from minyun.core.errors import Invalid
from minyun.core.events import EventOut
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.core.uow import unit_of_work
from minyun.ingest.service import submit_load
from minyun.push import service, webhooks
from minyun.push.models import EventDeadLetter, Subscription
from minyun.push.webhooks import Backoff, Verifier, WebhookRejected, signed
from minyun.web.app import create_app
from tests import factories
from tests.conftest import PostgresDatabases, make_settings
from tests.ingest.loadkit import make_resource, person, write_csv
from tests.push.receiver import Receiver


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    """A node running its jobs in its own threads, allowing local webhook URLs."""
    overrides: dict[str, object] = {"webhooks_allow_private": True}
    if request.param == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        overrides["database_url"] = databases.create()
    monkeypatch.setattr(webhooks, "BACKOFF", Backoff(base=0.05, cap=0.2))
    node = Platform.open(make_settings(tmp_path / "var", **overrides))
    node.migrate()
    yield node
    node.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _staff(node: Platform) -> Principal:
    """A consumer of a new department (a real account: deliveries follow its state)."""
    with node.factory.begin() as session:
        org = factories.make_org(session).id
        return principal_for(factories.make_user(session, roles=[Role.CONSUMER],
                                                 organization_id=org))  # fmt: skip


def _subscribe(node: Platform, actor: Principal, url: str, **kw: object) -> Subscription:
    with unit_of_work(node.factory) as session:
        return service.subscribe(session, actor, url=url, allow_private=True, **kw)  # type: ignore[arg-type]


def _publish(node: Platform, kind: str, subjects: list[str]) -> None:
    with unit_of_work(node.factory) as session:
        for s in subjects:
            events.publish(session, kind=kind, subject=s, data={"uscc": s})


def _until(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _cursor(node: Platform, subscription_id: int) -> int:
    with node.factory() as session:
        subscription = session.get(Subscription, subscription_id)
        assert subscription is not None
        return subscription.delivered_offset


def test_a_receiver_down_for_a_while_gets_every_event_once_and_in_order(
    live: Platform, receiver: Receiver
) -> None:
    actor = _staff(live)
    sub = _subscribe(live, actor, receiver.url, max_attempts=20,
                     kinds=["enterprise.registered", "enterprise.changed", "resource.updated"])  # fmt: skip
    receiver.verifier = Verifier(sub.secret)
    # Down: nothing listens on the port yet.
    for batch in range(4):
        _publish(live, "enterprise.registered", [f"R{batch}{i}" for i in range(5)])
    # An event about a resource the subscriber may not read is never sent to it.
    _publish(live, "resource.updated", ["someone-elses-resource"])
    _publish(live, "enterprise.deregistered", ["not-subscribed"])
    _publish(live, "enterprise.changed", ["C0"])
    time.sleep(0.5)
    receiver.start()
    _until(lambda: _cursor(live, sub.id) >= 22)
    assert receiver.offsets() == [*range(1, 21), 23]
    assert [e["subject"] for e in receiver.received][-1] == "C0"
    assert receiver.rejected == []
    with live.factory() as session:
        done = session.get(Subscription, sub.id)
        assert done is not None and done.delivered_count == 21 and done.failures == 0
        assert session.scalars(select(EventDeadLetter)).all() == []


def test_a_receiver_that_keeps_failing_dead_letters_and_delivery_moves_on(
    live: Platform, receiver: Receiver
) -> None:
    actor = _staff(live)
    sub = _subscribe(live, actor, receiver.url, kinds=["enterprise.registered"], max_attempts=3)
    receiver.verifier = Verifier(sub.secret)
    receiver.fail = True
    receiver.start()
    _publish(live, "enterprise.registered", ["A", "B"])
    _until(lambda: _cursor(live, sub.id) == 2)
    assert receiver.hits == 6  # three attempts each, with backoff between them
    receiver.fail = False
    _publish(live, "enterprise.registered", ["C"])
    _until(lambda: receiver.offsets() == [3])
    app = create_app(live)
    http = TestClient(app)
    _, bearer = factories.api_client_token(http, live, actor.organization_id or 0, ["events.read"])
    dead = http.get(f"/api/v1/event-subscriptions/{sub.id}/dead-letters", headers=bearer)
    assert [(d["offset"], d["attempts"], d["error"]) for d in dead.json()] == [
        (1, 3, "HTTP 500"),
        (2, 3, "HTTP 500"),
    ]
    # Another organisation neither sees the subscription nor its dead letters.
    with live.factory.begin() as session:
        other = factories.make_org(session).id
    _, stranger = factories.api_client_token(http, live, other, ["events.read"])
    hidden = http.get(f"/api/v1/event-subscriptions/{sub.id}/dead-letters", headers=stranger)
    assert hidden.status_code == 404
    assert hidden.headers["content-type"].startswith("application/problem+json")
    assert http.get("/api/v1/event-subscriptions", headers=stranger).json() == []


def test_subscribing_over_the_api_returns_the_secret_once(live: Platform) -> None:
    app = create_app(live)
    http = TestClient(app)
    with live.factory.begin() as session:
        org = factories.make_org(session).id
    _, bearer = factories.api_client_token(http, live, org, ["events.subscribe"])
    made = http.post("/api/v1/event-subscriptions", headers=bearer,
                     json={"url": "http://10.1.2.3/hook", "kinds": ["enterprise.changed"]})  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["secret"].startswith("whsec_")
    listed = http.get("/api/v1/event-subscriptions", headers=bearer).json()
    assert [s["url"] for s in listed] == ["http://10.1.2.3/hook"] and "secret" not in listed[0]
    stopped = http.delete(f"/api/v1/event-subscriptions/{made.json()['id']}", headers=bearer)
    assert stopped.status_code == 200 and stopped.json()["active"] is False
    with live.factory() as session:
        _publish(live, "enterprise.changed", ["after-stop"])
        assert session.scalars(select(jobs.Job).where(jobs.Job.kind == webhooks.KIND)).all() == []
    bad = http.post("/api/v1/event-subscriptions", headers=bearer,
                    json={"url": "http://10.1.2.3/hook", "kinds": ["enterprise.exploded"]})  # fmt: skip
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


def test_local_urls_are_refused_unless_the_node_allows_them() -> None:
    with pytest.raises(Invalid):
        service.check_url("http://127.0.0.1:8000/hook", allow_private=False)
    with pytest.raises(Invalid):
        service.check_url("http://localhost/hook", allow_private=False)
    with pytest.raises(Invalid):
        service.check_url("file:///etc/passwd", allow_private=True)
    with pytest.raises(Invalid):
        service.check_url("http://[::1/hook", allow_private=True)
    with pytest.raises(Invalid):
        service.check_url("http://example.cn:99999/hook", allow_private=True)
    assert service.check_url("https://hooks.example.cn/x", allow_private=False)


def _event() -> EventOut:
    return EventOut(7, "enterprise.changed", "91350100M000000001", clock.now(), {"name": "闽云"})


def test_the_verifier_takes_a_signed_webhook_once() -> None:
    secret = webhooks.new_secret()
    body, headers = signed(secret, _event())
    verifier = Verifier(secret)
    assert verifier.verify(body, headers)["data"] == {"name": "闽云"}
    with pytest.raises(WebhookRejected, match="already received"):
        verifier.verify(body, headers)  # replayed as it was


def test_the_verifier_refuses_resigned_tampered_and_stale_webhooks() -> None:
    secret = webhooks.new_secret()
    verifier = Verifier(secret)
    body, headers = signed(webhooks.new_secret(), _event())  # re-signed with another key
    with pytest.raises(WebhookRejected):
        verifier.verify(body, headers)
    body, headers = signed(secret, _event())
    with pytest.raises(WebhookRejected):
        verifier.verify(body.replace("闽云".encode(), "别人".encode()), headers)
    old, old_headers = signed(secret, _event(), at=clock.now() - timedelta(minutes=10))
    with pytest.raises(WebhookRejected):
        verifier.verify(old, old_headers)  # a capture replayed later with its old timestamp
    # A fresh signature over another event's body under this id does not pass either.
    other = EventOut(8, "enterprise.changed", "X", clock.now(), {})
    other_body, _ = signed(secret, other)
    with pytest.raises(WebhookRejected):
        verifier.verify(other_body, headers)


def test_three_consumers_one_down_for_a_while_each_get_every_event_once(live: Platform) -> None:
    receivers = [Receiver() for _ in range(3)]
    try:
        for r in receivers:
            sub = _subscribe(live, _staff(live), r.url, max_attempts=20,
                             kinds=["enterprise.registered", "enterprise.changed"])  # fmt: skip
            r.verifier = Verifier(sub.secret)
        receivers[0].start()
        receivers[1].start()
        for batch in range(10):
            _publish(live, "enterprise.changed", [f"C{batch}-{i}" for i in range(6)])
        time.sleep(0.3)
        receivers[2].start()  # back after being down
        _until(lambda: all(len(r.offsets()) == 60 for r in receivers), seconds=60)
        for r in receivers:
            assert r.offsets() == list(range(1, 61)) and r.rejected == []
    finally:
        for r in receivers:
            r.stop()


def test_deliveries_stop_once_the_subscribers_account_is_disabled(
    live: Platform, receiver: Receiver
) -> None:
    actor = _staff(live)
    sub = _subscribe(live, actor, receiver.url, kinds=["enterprise.registered"])
    receiver.verifier = Verifier(sub.secret)
    receiver.start()
    _publish(live, "enterprise.registered", ["A"])
    _until(lambda: receiver.offsets() == [1])
    with live.factory.begin() as session:
        user = session.get(User, actor.user_id)
        assert user is not None
        user.active = False
    _publish(live, "enterprise.registered", ["B"])

    def stopped() -> bool:
        with live.factory() as session:
            found = session.get(Subscription, sub.id)
            return found is not None and not found.active

    _until(stopped)
    time.sleep(0.2)
    assert receiver.offsets() == [1]


def test_a_committed_load_reaches_the_providers_webhook_and_no_outsiders(
    live: Platform, tmp_path: Path
) -> None:
    code, steward = make_resource(live)
    with live.factory.begin() as session:
        account = factories.make_user(session, roles=[Role.STEWARD],
                                      organization_id=steward.organization_id)  # fmt: skip
        provider = principal_for(account)
    outsider = _staff(live)
    mine, theirs = Receiver(), Receiver()
    try:
        for who, r in ((provider, mine), (outsider, theirs)):
            sub = _subscribe(live, who, r.url, kinds=["resource.updated"])
            r.verifier = Verifier(sub.secret)
            r.start()
        with unit_of_work(live.factory) as session:
            submit_load(session, provider, code, str(write_csv(tmp_path / "p.csv", [person(1)])),
                        settings=live.settings)  # fmt: skip
        _until(lambda: mine.offsets() == [1])
        assert mine.received[0]["subject"] == code
        assert mine.received[0]["data"]["rows_accepted"] == 1
        _until(lambda: _cursor(live, sub.id) == 1)  # the outsider's cursor passed it
        assert theirs.offsets() == [] and theirs.hits == 0
    finally:
        mine.stop()
        theirs.stop()
