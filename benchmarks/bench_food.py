"""Food traceability on PostgreSQL: EPCIS capture throughput and query p99.

`food.capture_per_s`: events per second through `service.capture` (schema validation,
hash-free ids given, the index insert, the lake append, the audit record), documents of
`BATCH` ObjectEvents each, against the baseline of the same rows bulk-inserted into a plain
table with no checks (`food.capture_vs_plain_insert_ratio`).

`food.query_p99_ms`: the 99th percentile of standard queries over the repository (one
object's events by MATCH_epc, a business step at a read point in a time window, one event
by id; a page of 30), against the p99 of a plain indexed SELECT of one row by key
(`food.query_vs_plain_select_ratio`).

The issue asks for 10 million events (`MINYUN_BENCH_FOOD_EVENTS`, default 10,000,000; the
fill goes through the capture path, so at a few hundred to a thousand events a second it
takes hours: 1,000,000 is a practical size); `MINYUN_BENCH_FOOD_EVENTS=2000` checks that the
benchmark runs. The plain baselines use at most 200,000 rows.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text

from minyun.apps.food import epcis, sample
from minyun.apps.food import service as svc
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
EVENTS = int(os.environ.get("MINYUN_BENCH_FOOD_EVENTS", "10000000"))
BATCH = min(5000, max(EVENTS // 4, 1))
QUERIES = int(os.environ.get("MINYUN_BENCH_FOOD_QUERIES", "300"))
SITES = 200
STEPS = ("commissioning", "shipping", "receiving", "storing", "retail_selling")
START = datetime(2024, 1, 1, tzinfo=UTC)
CLIENT = Principal(kind="client", name="bench", organization_id=None,
                   scopes=frozenset({"epcis.capture", "epcis.query"}))  # fmt: skip


def _event(n: int) -> dict[str, Any]:
    when = START + timedelta(seconds=n)
    site = sample.gln(f"{60000 + n % SITES:05d}")
    return {
        "type": "ObjectEvent", "eventID": f"urn:uuid:{uuid.UUID(int=n + 1)}",
        "eventTime": when.isoformat(timespec="milliseconds"), "eventTimeZoneOffset": "+00:00",
        "epcList": [f"urn:epc:id:sgtin:{sample.PREFIX}.054321.{n // 5}"], "action": "OBSERVE",
        "bizStep": STEPS[n % len(STEPS)], "readPoint": {"id": site}, "bizLocation": {"id": site},
        "quantityList": [{"epcClass": sample.lot("054321", f"L{n // 1000}"), "quantity": 1}],
    }  # fmt: skip


def _document(first: int, count: int) -> bytes:
    import json

    return json.dumps(sample.document([_event(n) for n in range(first, first + count)])).encode()


def _capture_all(node: Platform) -> float:
    """Capture EVENTS events in documents of BATCH; events per second."""
    began, done = time.perf_counter(), 0
    while done < EVENTS:
        count = min(BATCH, EVENTS - done)
        raw = _document(done, count)
        with node.factory.begin() as s:
            job = svc.capture(s, CLIENT, node.lake, raw)
            if not job.success:
                raise RuntimeError(job.errors)
        done += count
    return EVENTS / (time.perf_counter() - began)


def _plain_insert(node: Platform) -> float:
    """The baseline: the same number of rows into a plain table, in the same batches."""
    with node.engine.begin() as c:
        c.execute(text("CREATE TABLE bench_plain (id bigserial primary key, event_id text, "
                       "event_time timestamptz, body text)"))  # fmt: skip
    n = min(EVENTS, 200_000)
    began, done = time.perf_counter(), 0
    while done < n:
        rows = [{"e": f"e{i}", "t": START + timedelta(seconds=i), "b": "{}"}
                for i in range(done, min(done + BATCH, n))]  # fmt: skip
        with node.engine.begin() as c:
            c.execute(text("INSERT INTO bench_plain (event_id, event_time, body) "
                           "VALUES (:e, :t, :b)"), rows)  # fmt: skip
        done += len(rows)
    with node.engine.begin() as c:
        c.execute(text("CREATE INDEX ON bench_plain (event_id)"))
    return n / (time.perf_counter() - began)


def _params(rng: random.Random) -> dict[str, list[str]]:
    n = rng.randrange(EVENTS)
    kind = rng.randrange(3)
    if kind == 0:
        return {"MATCH_epc": [f"urn:epc:id:sgtin:{sample.PREFIX}.054321.{n // 5}"]}
    if kind == 1:
        since = START + timedelta(seconds=n)
        return {"EQ_bizStep": [STEPS[n % len(STEPS)]],
                "EQ_readPoint": [sample.gln(f"{60000 + n % SITES:05d}")],
                "GE_eventTime": [since.isoformat()],
                "LT_eventTime": [(since + timedelta(hours=6)).isoformat()]}  # fmt: skip
    return {"EQ_eventID": [f"urn:uuid:{uuid.UUID(int=n + 1)}"]}


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) >= 2 else samples[0]


def _query_p99(node: Platform) -> float:
    rng, took = random.Random(7), []
    for _ in range(10):  # warm-up: the audit appender's thread, connections, plans
        with node.factory.begin() as s:
            svc.query_events(s, CLIENT, _params(rng), per_page=30)
    for _ in range(QUERIES):
        params = _params(rng)
        began = time.perf_counter()
        with node.factory.begin() as s:
            svc.query_events(s, CLIENT, params, per_page=30)
        took.append((time.perf_counter() - began) * 1000)
    return _p99(took)


def _plain_p99(node: Platform) -> float:
    rng, took = random.Random(7), []
    n = min(EVENTS, 200_000)
    for _ in range(10):
        with node.engine.begin() as c:
            c.execute(text("SELECT 1")).all()
    for _ in range(QUERIES):
        began = time.perf_counter()
        with node.engine.begin() as c:
            c.execute(text("SELECT body FROM bench_plain WHERE event_id = :e"),
                      {"e": f"e{rng.randrange(n)}"}).all()  # fmt: skip
        took.append((time.perf_counter() - began) * 1000)
    return _p99(took)


def run() -> dict[str, float]:
    """Capture events per second and query p99, each with its baseline's ratio."""
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
                captured = _capture_all(node)
                plain = _plain_insert(node)
                with node.engine.begin() as c:
                    c.execute(text("ANALYZE"))
                p99 = _query_p99(node)
                plain_p99 = _plain_p99(node)
            finally:
                node.close()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "food.capture_per_s": round(captured, 1),
        "food.capture_vs_plain_insert_ratio": round(captured / plain, 4),
        "food.query_p99_ms": round(p99, 3),
        "food.query_vs_plain_select_ratio": round(p99 / plain_p99, 3),
        "food.events": float(EVENTS),
    }


if __name__ == "__main__":
    for metric, value in run().items():
        print(f"{metric}: {value:,.3f}")
