"""Event fan-out: N events to 3 webhook consumers end to end, one consumer down for a while.

`exchange.events_per_s`: events published (in transactions of 100, the outbox) and received
by all three consumers, per second of wall time from the first publish to the last receipt.
Deliveries are the product's own: one `events.deliver` job per subscription and event, run by
the node's job runner (the embedded runner's threads, on PostgreSQL), Standard Webhooks
signatures, retries with backoff (shortened here to base 0.05 s, cap 0.5 s, so the outage
costs seconds, not minutes). Each consumer verifies every webhook (`push.webhooks.Verifier`,
which refuses an id it has seen: a duplicate) and answers 204.

The second consumer is down from the start: it answers 500 to its first eight deliveries
(the first event, retried with backoff: about 2.8 s in which the rest is published and
queues up behind it), then recovers. The outage is counted in refusals, not in a share of
the events published, so it stays inside the retry budget (20 attempts, about 8 s) however
fast the machine publishes. The run fails unless every consumer received every event
exactly once and in log order (`exchange.events_lost` and `exchange.events_duplicated` are
printed and must be 0); it stops waiting as soon as the node has nothing left to deliver.

Baseline, same run: the same signed bodies POSTed straight to the same three consumers from
one keep-alive client, one after the other (no database, no jobs):
`exchange.events_plain_per_s`, and the ratio `exchange.events_fanout_ratio`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import func, or_, select

from minyun.core import clock, events
from minyun.core.config import load_settings
from minyun.core.events import EventOut
from minyun.core.platform import Platform
from minyun.core.uow import unit_of_work
from minyun.push import service as push
from minyun.push import webhooks
from minyun.push.models import Subscription
from minyun.push.webhooks import Backoff, Verifier, WebhookRejected

ADMIN = os.environ.get("MINYUN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
EVENTS = int(os.environ.get("MINYUN_BENCH_EVENTS", "10000"))
KINDS = ["enterprise.registered", "enterprise.changed", "enterprise.deregistered"]
DEPARTMENTS = ("fj-tax", "fj-hrss", "fj-stats")
BATCH = 100


@dataclass
class Consumer:
    """A department's webhook endpoint on a local port: verifies, remembers what it took."""

    name: str
    verifier: Verifier | None = None
    failing: bool = False
    down_for: int = 0  # refusals before it recovers (while failing)
    offsets: list[int] = field(default_factory=list)
    duplicates: int = 0
    refused: int = 0  # answered 500 while down
    last_at: float = 0.0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        consumer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = consumer.take(body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            if self.failing:
                self.refused += 1
                self.failing = self.refused < self.down_for
                return 500
            if self.verifier is None:
                return 400
            try:
                event = self.verifier.verify(body, headers)
            except WebhookRejected as exc:
                if "already received" in str(exc):
                    self.duplicates += 1
                    return 204  # taken before: the consumer says so, and keeps one copy
                return 400
            self.offsets.append(int(event["offset"]))
            self.last_at = time.perf_counter()
            return 204

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass(frozen=True)
class Report:
    events: int
    seconds: float
    lost: int
    duplicated: int
    out_of_order: int
    refused_while_down: int

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def subscribe_departments(node: Platform, consumers: list[Consumer]) -> None:
    """Tax, social security and statistics subscribe their consumers (allowed on loopback)."""
    from minyun.demo import province
    from minyun.orgs import service as orgs

    with node.factory.begin() as session:
        province.load_departments(session)
        ids = [orgs.get_organization(session, code).id for code in DEPARTMENTS]
    for consumer, org_id, code in zip(consumers, ids, DEPARTMENTS, strict=True):
        url = consumer.start()
        with unit_of_work(node.factory) as session:
            owner = push.organization_reader(org_id, code)
            sub = push.subscribe(session, owner, url=url, kinds=KINDS, allow_private=True,
                                 max_attempts=20)  # fmt: skip
        consumer.verifier = Verifier(sub.secret)


def fan_out(node: Platform, *, count: int, down_for: int = 8, timeout: float = 600.0) -> Report:
    """Publish `count` events with the second consumer down for its first `down_for`
    deliveries; wait until every consumer has every event, the node has nothing left to
    deliver, or `timeout`; count the damage."""
    backoff, webhooks.BACKOFF = webhooks.BACKOFF, Backoff(base=0.05, cap=0.5)
    consumers = [Consumer(code) for code in DEPARTMENTS]
    consumers[1].failing, consumers[1].down_for = True, down_for
    try:
        subscribe_departments(node, consumers)
        with node.factory() as session:
            first = events.head(session) + 1
        started = time.perf_counter()
        published = 0
        while published < count:
            n = min(BATCH, count - published)
            with unit_of_work(node.factory) as session:
                for i in range(published, published + n):
                    events.publish(session, kind=KINDS[i % 3], subject=f"91350100MA{i:08d}",
                                   data={"n": i})  # fmt: skip
            published += n
        last = first + count - 1
        deadline = time.perf_counter() + timeout
        said = time.perf_counter()
        while any(len(c.offsets) < count for c in consumers) and time.perf_counter() < deadline:
            time.sleep(0.02)
            if time.perf_counter() - said > 5:
                said = time.perf_counter()
                got = ", ".join(f"{c.name} {len(c.offsets)}" for c in consumers)
                print(f"  events fan-out: {got} of {count}", file=sys.stderr, flush=True)
                if _delivered_all(node, last):
                    break  # the node is done; whatever is missing now is lost
        ended = max(c.last_at for c in consumers)
        wanted = set(range(first, last + 1))
        lost = sum(len(wanted - set(c.offsets)) for c in consumers)
        disorder = sum(int(c.offsets != sorted(c.offsets)) for c in consumers)
        return Report(
            count, ended - started, lost, sum(c.duplicates for c in consumers), disorder,
            consumers[1].refused,
        )  # fmt: skip
    finally:
        webhooks.BACKOFF = backoff
        for c in consumers:
            c.stop()


def _delivered_all(node: Platform, last: int) -> bool:
    """Whether every subscription's cursor passed `last` with no runner holding it."""
    with node.factory() as session:
        behind = session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(or_(Subscription.delivered_offset < last, Subscription.lease.is_not(None)))
        )
    return not behind


def plain_post(count: int) -> float:
    """Baseline: the same signed bodies POSTed straight to three consumers; events/s."""
    consumers = [Consumer(code) for code in DEPARTMENTS]
    secrets_ = [webhooks.new_secret() for _ in consumers]
    for c, secret in zip(consumers, secrets_, strict=True):
        c.verifier = Verifier(secret)
    urls = [c.start() for c in consumers]
    try:
        started = time.perf_counter()
        with httpx.Client(timeout=10) as client:
            for i in range(count):
                event = EventOut(i + 1, KINDS[i % 3], f"91350100MA{i:08d}", clock.now(), {"n": i})
                for url, secret in zip(urls, secrets_, strict=True):
                    body, headers = webhooks.signed(secret, event)
                    client.post(url, content=body, headers=headers).raise_for_status()
        return count / (time.perf_counter() - started)
    finally:
        for c in consumers:
            c.stop()


def run(count: int = EVENTS) -> dict[str, float]:
    name = f"minyun_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    var = Path(tempfile.mkdtemp(prefix="minyun-bench-events-"))
    try:
        database_url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
        settings = load_settings(var_dir=var, database_url=database_url,
                                 webhooks_allow_private=True)  # fmt: skip
        node = Platform.open(settings)
        try:
            node.migrate()
            report = fan_out(node, count=count)
        finally:
            node.close()
        plain = plain_post(count)
        if report.lost or report.duplicated or report.out_of_order:
            raise RuntimeError(f"events lost or duplicated: {report}")
        return {
            "exchange.events_per_s": round(report.per_s, 1),
            "exchange.events_plain_per_s": round(plain, 1),
            "exchange.events_fanout_ratio": round(report.per_s / plain, 3),
            "exchange.events_lost": float(report.lost),
            "exchange.events_duplicated": float(report.duplicated),
            "exchange.events_refused_while_down": float(report.refused_while_down),
            "exchange.events_count": float(count),
        }
    finally:
        shutil.rmtree(var, ignore_errors=True)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    print(run())
