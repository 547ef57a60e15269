"""Query subscriptions: a named query's new events sent to a webhook, signed, exactly once."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from minyun.apps.food import subscriptions
from minyun.apps.food.models import QuerySubscription
from minyun.core.errors import Invalid
from tests.apps.food.conftest import Repo, example

BACKENDS = ("sqlite", "postgresql")
TOKEN = "13df38d8275b13f05704629e5f1cf3d45d6132d5"


class Receiver:
    """A client's webhook endpoint: keeps what it was sent; answers `status`."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def events(self) -> list[list[str]]:
        return [[e["eventID"] for e in json.loads(body)["epcisBody"]["queryResults"]
                 ["resultsBody"]["eventList"]] for _, body in self.received]  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()


def _subscribe(repo: Repo, body: dict[str, Any], name: str = "receiving") -> Any:
    return repo.http.post(f"/epcis/queries/{name}/subscriptions", json=body,
                          headers=repo.headers)  # fmt: skip


def _deliver(repo: Repo, subscription_id: str) -> subscriptions.Delivery:
    with repo.node.factory.begin() as s, httpx.Client(timeout=10) as http:
        pk = s.scalars(select(QuerySubscription.id).where(
            QuerySubscription.subscription_id == subscription_id)).one()  # fmt: skip
        return subscriptions.deliver(s, pk, http)


def _receiving_query(repo: Repo) -> None:
    r = repo.http.post("/epcis/queries", json={"name": "receiving",
                       "query": {"EQ_bizStep": "receiving"}}, headers=repo.headers)  # fmt: skip
    assert r.status_code == 201, r.text


def test_a_streamed_subscription_gets_each_new_matching_event_once_signed(
    repo: Repo, receiver: Receiver
) -> None:
    _receiving_query(repo)
    r = _subscribe(repo, {"dest": receiver.url, "signatureToken": TOKEN, "stream": True})
    assert r.status_code == 201, r.text
    sub = r.json()["subscriptionID"]
    assert r.headers["Location"] == f"/epcis/queries/receiving/subscriptions/{sub}"
    assert "signatureToken" not in r.json()
    assert _deliver(repo, sub).events == 0 and receiver.received == []  # nothing new yet
    assert repo.capture(example("Example_9.6.1-ObjectEvent.jsonld")).json()["success"]
    assert _deliver(repo, sub).events == 1
    headers, body = receiver.received[0]
    expected = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    assert headers["GS1-Signature"] == f"sha256={expected}"
    assert json.loads(body)["type"] == "EPCISQueryDocument"
    assert _deliver(repo, sub).events == 0  # sent once
    assert repo.capture(example("Example_9.6.3-AggregationEvent.jsonld")).json()["success"]
    _deliver(repo, sub)
    assert [len(ids) for ids in receiver.events()] == [1, 1]
    assert receiver.events()[0] != receiver.events()[1]


def test_a_receiver_that_fails_gets_the_events_again_next_time(
    repo: Repo, receiver: Receiver
) -> None:
    _receiving_query(repo)
    sub = _subscribe(repo, {"dest": receiver.url, "stream": True}).json()["subscriptionID"]
    assert repo.capture(example("Example_9.6.1-ObjectEvent.jsonld")).json()["success"]
    receiver.status = 500
    with pytest.raises(Invalid):
        _deliver(repo, sub)
    receiver.status = 200
    assert _deliver(repo, sub).events == 1
    assert receiver.events()[0] == receiver.events()[1]


def test_a_scheduled_subscription_reports_if_empty_when_asked(
    repo: Repo, receiver: Receiver
) -> None:
    _receiving_query(repo)
    body = {"dest": receiver.url, "schedule": {"hour": "1", "minute": "5"}, "reportIfEmpty": True,
            "initialRecordTime": "2020-01-01T00:00:00Z"}  # fmt: skip
    sub = _subscribe(repo, body).json()["subscriptionID"]
    assert _deliver(repo, sub).pages == 1 and receiver.events() == [[]]
    with repo.node.factory() as s:
        found = s.scalars(select(QuerySubscription)).one()
        assert subscriptions.due(found, datetime(2024, 5, 1, 1, 5, tzinfo=UTC))
        assert not subscriptions.due(found, datetime(2024, 5, 1, 1, 6, tzinfo=UTC))


def test_subscriptions_are_listed_read_and_ended(repo: Repo, receiver: Receiver) -> None:
    _receiving_query(repo)
    sub = _subscribe(repo, {"dest": receiver.url, "stream": True}).json()["subscriptionID"]
    path = "/epcis/queries/receiving/subscriptions"
    assert [s["subscriptionID"] for s in repo.http.get(path, headers=repo.headers).json()] == [sub]
    one = repo.http.get(f"{path}/{sub}", headers=repo.headers)
    assert one.status_code == 200 and one.json()["stream"] is True
    assert repo.http.delete(f"{path}/{sub}", headers=repo.headers).status_code == 204
    gone = repo.http.get(f"{path}/{sub}", headers=repo.headers)
    assert gone.status_code == 404
    assert gone.json()["type"] == "epcisException:NoSuchResourceException"


@pytest.mark.parametrize(
    ("name", "body", "status", "kind"),
    [
        ("nothing", {"dest": "https://x.example/cb", "stream": True}, 404, "NoSuchNameException"),
        ("receiving", {"dest": "https://x.example/cb"}, 400, "QueryParameterException"),
        (
            "receiving",
            {"dest": "https://x.example/cb", "stream": True, "schedule": {"minute": "5"}},
            400,
            "QueryParameterException",
        ),
        (
            "receiving",
            {"dest": "https://x.example/cb", "schedule": {"minute": "five"}},
            400,
            "QueryParameterException",
        ),
        (
            "receiving",
            {"dest": "ftp://x.example/cb", "stream": True},
            400,
            "QueryParameterException",
        ),
    ],
)
def test_a_bad_subscription_is_refused_with_the_binding_error(
    repo: Repo, name: str, body: dict[str, Any], status: int, kind: str
) -> None:
    _receiving_query(repo)
    r = _subscribe(repo, body, name)
    assert r.status_code == status, r.text
    assert r.json()["type"] == f"epcisException:{kind}"
    with repo.node.factory() as s:
        assert s.scalars(select(QuerySubscription)).all() == []


def test_the_delivery_job_sends_every_due_subscription(repo: Repo, receiver: Receiver) -> None:
    import time

    from minyun.core import jobs
    from minyun.core.security import Principal

    admin = Principal(kind="user", name="admin", user_id=1, roles=frozenset({"admin"}),
                      account_kind="staff")  # fmt: skip
    _receiving_query(repo)
    _subscribe(repo, {"dest": receiver.url, "stream": True})
    assert repo.capture(example("Example_9.6.1-ObjectEvent.jsonld")).json()["success"]
    with repo.node.factory.begin() as s:
        job_id = subscriptions.submit(s, admin).id
    with repo.node.factory.begin() as s:  # the same minute: the same job
        assert subscriptions.submit(s, admin).id == job_id
    for _ in range(200):
        with repo.node.factory() as s:
            job = s.get(jobs.Job, job_id)
            assert job is not None
            if job.state in (jobs.JobState.SUCCEEDED, jobs.JobState.FAILED):
                break
        time.sleep(0.1)
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    assert [len(ids) for ids in receiver.events()] == [1]
