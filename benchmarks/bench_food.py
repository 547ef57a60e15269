"""Food traceability on PostgreSQL: EPCIS capture throughput and query p99 over a big store.

The store is filled through the capture service itself (`service.capture`, in-process, the
same code `POST /epcis/capture` runs): `EVENTS` events (`MINYUN_BENCH_FOOD_EVENTS`, default
the issue's 10,000,000) in documents of 10,000 events (the capture limit), each validated
against the official schema, normalised, indexed and appended to the lake as one batch, two
captures at a time (`MINYUN_BENCH_FOOD_FILLERS`); `food.fill_per_s` is its rate, document
building included.

`food.capture_per_s`: events per second through the HTTP API once the store is full —
`POST /epcis/capture` of realistic documents of 1,000 events (`HTTP_DOCS` of them, uvicorn
on 127.0.0.1, a client's bearer token), each answered 202 with a successful capture job;
against the baseline of a plain bulk INSERT of the same number of rows into a table with
no checks and one index (`food.capture_vs_plain_insert_ratio`).

`food.query_p99_ms`: the 99th percentile of standard queries over HTTP (`GET /epcis/events`,
a page of 30, the EPCISQueryDocument parsed by the client): one object's events
(`MATCH_epc`), a lot's events (`MATCH_epcClass`), a business step at a read point in a
six-hour window, an event type at a business location, the events recorded since a time,
one event by its eventID; each kind's p99 is reported too, and the p99 of a plain indexed
SELECT of one row by key (`food.query_vs_plain_select_ratio`).

`MINYUN_BENCH_FOOD_EVENTS=20000` checks that the benchmark runs.
"""

from __future__ import annotations

import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text

from minyun.accounts import service as accounts
from minyun.apps.food import epcis, sample
from minyun.apps.food import service as svc
from minyun.core import identifiers
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.orgs import service as orgs
from minyun.web.app import create_app

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
EVENTS = int(os.environ.get("MINYUN_BENCH_FOOD_EVENTS", "10000000"))
FILL_DOC = min(svc.CAPTURE_LIMIT, max(EVENTS // 2, 1))
FILLERS = int(os.environ.get("MINYUN_BENCH_FOOD_FILLERS", "2"))
HTTP_DOC = 1000
HTTP_DOCS = int(os.environ.get("MINYUN_BENCH_FOOD_HTTP_DOCS", "40"))
QUERIES = int(os.environ.get("MINYUN_BENCH_FOOD_QUERIES", "300"))
SITES = 200
STEPS = ("commissioning", "shipping", "receiving", "storing", "retail_selling")
TYPES = ("ObjectEvent", "ObjectEvent", "ObjectEvent", "AggregationEvent", "TransactionEvent")
START = datetime(2024, 1, 1, tzinfo=UTC)
SYSTEM = Principal.system()


def _site(n: int) -> str:
    """Where event `n` happens: an object's five events at five sites, every site seeing
    every step and event type."""
    return sample.gln(f"{60000 + (n // 5 * 31 + n % 5 * 7) % SITES:05d}")


def _event(n: int) -> dict[str, Any]:
    """Event `n`: one second after event n-1, about one object (5 events each), one lot
    per 1,000 events, one of 200 sites; every fifth a shipment with a purchase order."""
    when = START + timedelta(seconds=n)
    site = _site(n)
    event: dict[str, Any] = {
        "type": "ObjectEvent", "eventID": f"urn:uuid:{uuid.UUID(int=n + 1)}",
        "eventTime": when.isoformat(timespec="milliseconds"), "eventTimeZoneOffset": "+08:00",
        "epcList": [f"urn:epc:id:sgtin:{sample.PREFIX}.054321.{n // 5}"], "action": "OBSERVE",
        "bizStep": STEPS[n % len(STEPS)], "disposition": "in_progress",
        "readPoint": {"id": site}, "bizLocation": {"id": site},
        "quantityList": [{"epcClass": sample.lot("054321", f"L{n // 1000}"), "quantity": 1}],
    }  # fmt: skip
    kind = TYPES[n % len(TYPES)]
    if kind == "AggregationEvent":
        event = {k: v for k, v in event.items() if k not in ("epcList", "quantityList")}
        event.update(type=kind, action="ADD", parentID=sample.sscc(f"{n // 50:010d}"),
                     childEPCs=[f"urn:epc:id:sgtin:{sample.PREFIX}.054321.{n // 5}"])  # fmt: skip
    elif kind == "TransactionEvent":
        event.update(type=kind, action="ADD", bizTransactionList=[
            {"type": "po", "bizTransaction": f"urn:epcglobal:cbv:bt:{sample.PREFIX}000005:{n}"}])  # fmt: skip
    return event


def _document(first: int, count: int) -> bytes:
    events = [_event(n) for n in range(first, first + count)]
    return json.dumps(sample.document(events)).encode()


def _client(node: Platform) -> tuple[Principal, str, str]:
    """An enterprise's API client holding both EPCIS scopes: its principal, id and secret."""
    with node.factory.begin() as session:
        orgs.load_divisions(session, orgs.packaged_divisions())
        org = orgs.create_organization(
            session, SYSTEM, code="bench-food", name="茶叶合作社",
            uscc=identifiers.make_uscc("9", "1", "350100", "00000001"), division_code="350100",
        )  # fmt: skip
        new = accounts.create_client(
            session, SYSTEM, organization_id=org.id, name="bench",
            scopes=[svc.CAPTURE, svc.QUERY],
        )  # fmt: skip
        actor = Principal(kind="client", name=new.client.client_id, organization_id=org.id,
                          scopes=frozenset({svc.CAPTURE, svc.QUERY}))  # fmt: skip
        return actor, new.client.client_id, new.secret


def _fill(node: Platform, actor: Principal) -> float:
    """EVENTS events captured in-process in documents of FILL_DOC, by FILLERS captures at a
    time (as concurrent `POST /epcis/capture` requests would be: each its own transaction,
    so one's Python work overlaps another's COPY in PostgreSQL); events per second of the
    whole fill, document building included."""
    documents = range(0, EVENTS, FILL_DOC)
    done, lock, began, shown = 0, threading.Lock(), time.perf_counter(), [time.perf_counter()]

    def fill(first: int) -> None:
        nonlocal done
        raw = _document(first, min(FILL_DOC, EVENTS - first))
        with node.factory.begin() as s:
            job = svc.capture(s, actor, node.lake, raw)
            if not job.success:
                raise RuntimeError(job.errors)
        with lock:
            done += job.event_count
            if time.perf_counter() - shown[0] > 60:
                rate = done / (time.perf_counter() - began)
                print(f"  food: {done:,} events stored, {rate:,.0f}/s", file=sys.stderr)
                shown[0] = time.perf_counter()

    with ThreadPoolExecutor(FILLERS) as pool:
        for future in [pool.submit(fill, first) for first in documents]:
            future.result()
    return EVENTS / (time.perf_counter() - began)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _http_capture(client: httpx.Client) -> float:
    """HTTP_DOCS documents of HTTP_DOC events through POST /epcis/capture; events per second."""
    docs = [_document(EVENTS + i * HTTP_DOC, HTTP_DOC) for i in range(HTTP_DOCS)]
    headers = {"Content-Type": "application/ld+json", "GS1-EPCIS-Version": "2.0.0"}
    began = time.perf_counter()
    for raw in docs:
        r = client.post("/epcis/capture", content=raw, headers=headers)
        if r.status_code != 202 or not r.json()["success"]:
            raise RuntimeError(r.text[:500])
    return HTTP_DOCS * HTTP_DOC / (time.perf_counter() - began)


def _plain_insert(node: Platform, rows: int) -> float:
    """The baseline: the same number of rows into a plain table, in the same batches."""
    with node.engine.begin() as c:
        c.execute(text("CREATE TABLE bench_plain (id bigserial primary key, event_id text, "
                       "event_time timestamptz, body text)"))  # fmt: skip
        c.execute(text("CREATE INDEX ON bench_plain (event_id)"))
    began, done = time.perf_counter(), 0
    while done < rows:
        batch = [{"e": f"e{i}", "t": START + timedelta(seconds=i), "b": "{}"}
                 for i in range(done, min(done + HTTP_DOC, rows))]  # fmt: skip
        with node.engine.begin() as c:
            c.execute(text("INSERT INTO bench_plain (event_id, event_time, body) "
                           "VALUES (:e, :t, :b)"), batch)  # fmt: skip
        done += len(batch)
    return rows / (time.perf_counter() - began)


KINDS = ("epc", "lot", "step_at_site", "type_at_location", "recorded_since", "event_id")


def _params(kind: str, rng: random.Random, recorded: list[str]) -> dict[str, str]:
    n = rng.randrange(EVENTS)
    since = START + timedelta(seconds=n)
    if kind == "epc":
        return {"MATCH_epc": f"urn:epc:id:sgtin:{sample.PREFIX}.054321.{n // 5}"}
    if kind == "lot":
        return {"MATCH_epcClass": sample.lot("054321", f"L{n // 1000}")}
    if kind == "step_at_site":
        return {"EQ_bizStep": STEPS[n % len(STEPS)], "EQ_readPoint": _site(n),
                "GE_eventTime": since.isoformat(),
                "LT_eventTime": (since + timedelta(hours=6)).isoformat()}  # fmt: skip
    if kind == "type_at_location":
        return {"eventType": "TransactionEvent", "EQ_bizLocation": _site(n),
                "GE_eventTime": since.isoformat()}  # fmt: skip
    if kind == "recorded_since":
        return {"GE_recordTime": rng.choice(recorded), "orderBy": "recordTime"}
    return {"EQ_eventID": f"urn:uuid:{uuid.UUID(int=n + 1)}"}


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 2 else samples[0]


def _query_p99(client: httpx.Client, recorded: list[str]) -> dict[str, float]:
    rng = random.Random(7)
    took: dict[str, list[float]] = {k: [] for k in KINDS}
    for i in range(20):  # warm-up: connections, plans
        client.get("/epcis/events", params={**_params(KINDS[i % 6], rng, recorded),
                                            "perPage": 30}).raise_for_status()  # fmt: skip
    for i in range(QUERIES):
        kind = KINDS[i % len(KINDS)]
        params = {**_params(kind, rng, recorded), "perPage": "30"}
        began = time.perf_counter()
        r = client.get("/epcis/events", params=params)
        found = r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        took[kind].append((time.perf_counter() - began) * 1000)
        if r.status_code != 200 or (kind in ("epc", "lot", "event_id") and not found):
            raise RuntimeError(f"{kind} {params}: {r.status_code} {r.text[:300]}")
    every = [t for samples in took.values() for t in samples]
    figures = {f"food.query_p99_ms_{k}": round(_p99(v), 3) for k, v in took.items()}
    figures["food.query_p99_ms"] = round(_p99(every), 3)
    figures["food.query_median_ms"] = round(statistics.median(every), 3)
    return figures


def _plain_p99(node: Platform, rows: int) -> float:
    rng, took = random.Random(7), []
    for _ in range(QUERIES):
        began = time.perf_counter()
        with node.engine.begin() as c:
            c.execute(text("SELECT body FROM bench_plain WHERE event_id = :e"),
                      {"e": f"e{rng.randrange(rows)}"}).all()  # fmt: skip
        took.append((time.perf_counter() - began) * 1000)
    return _p99(took)


def _measure(node: Platform, app: FastAPI, client_id: str, secret: str) -> dict[str, float]:
    server, thread, base = _serve(app)
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            token = client.post("/api/v1/oauth/token", data={"grant_type": "client_credentials"},
                                auth=(client_id, secret)).json()["access_token"]  # fmt: skip
            client.headers["Authorization"] = f"Bearer {token}"
            captured = _http_capture(client)
            with node.engine.begin() as c:
                c.execute(text("ANALYZE food_events"))
                c.execute(text("ANALYZE food_event_terms"))
                recorded = [t.isoformat() for t in c.execute(text(
                    "SELECT DISTINCT record_time FROM food_events WHERE id IN "
                    "(SELECT id FROM food_events ORDER BY id DESC LIMIT 100000)")).scalars()]  # fmt: skip
            figures = _query_p99(client, recorded)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    figures["food.capture_per_s"] = round(captured, 1)
    return figures


def run() -> dict[str, float]:
    """Fill rate, HTTP capture rate and query p99 over EVENTS events, with baselines."""
    name = f"minyun_bench_food_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
            node = Platform.open(load_settings(var_dir=Path(tmp), database_url=url))
            try:
                node.migrate()
                epcis.validate_document(sample.chain())  # the validator is built before timing
                actor, client_id, secret = _client(node)
                app = create_app(node)  # built first: the code measured is the code filled with
                filled = _fill(node, actor)
                with node.engine.begin() as c:
                    c.execute(text("ANALYZE"))
                figures = _measure(node, app, client_id, secret)
                plain_rows = HTTP_DOC * HTTP_DOCS
                plain = _plain_insert(node, plain_rows)
                plain_p99 = _plain_p99(node, plain_rows)
                with node.engine.begin() as c:
                    size = c.execute(text("SELECT pg_database_size(current_database())")).scalar()
            finally:
                node.close()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    figures.update({
        "food.fill_per_s": round(filled, 1),
        "food.capture_vs_plain_insert_ratio": round(figures["food.capture_per_s"] / plain, 4),
        "food.query_vs_plain_select_ratio": round(figures["food.query_p99_ms"] / plain_p99, 3),
        "food.events": float(EVENTS + HTTP_DOC * HTTP_DOCS),
        "food.index_gb": round(float(size or 0) / 2**30, 2),
    })  # fmt: skip
    return figures


if __name__ == "__main__":
    for metric, value in run().items():
        print(f"{metric}: {value:,.3f}")
