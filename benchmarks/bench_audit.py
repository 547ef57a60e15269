"""Audit log appends per second on PostgreSQL, 1 and 8 writers, against plain inserts.

Each writer appends one record at a time through the node's group-commit appender and
waits until it is durable (its batch committed and the batch head in the heads file), as
a request does before its response leaves. The baseline is the same number of writers
each committing one plain insert per transaction into an unchained table with no lock,
so the ratio shows what the chain, the signatures and the heads file cost net of
batching. `audit.in_transaction_appends_per_s_8` is the old path: one record per
transaction, each taking the chain lock (what a change and its record still do).
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import text

from minyun.core import audit
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SECONDS = 3.0


def _measure(node: Platform, writers: int, how: str) -> float:
    counts = [0] * writers
    stop = time.perf_counter() + SECONDS

    def work(n: int) -> None:
        actor = Principal(kind="user", name=f"bench{n}")
        while time.perf_counter() < stop:
            if how == "group":
                entry = audit.Entry.of(
                    actor, "bench.append", target=str(counts[n]), purpose="bench"
                )
                node.audit_appender.append(entry)
                counts[n] += 1
                continue
            with node.factory.begin() as s:
                if how == "record":
                    audit.record(s, actor, "bench.append", target=str(counts[n]), purpose="bench")
                else:
                    s.execute(
                        text("INSERT INTO bench_plain (actor, target) VALUES (:a, :t)"),
                        {"a": actor.label, "t": str(counts[n])},
                    )
            counts[n] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def _measure_async(node: Platform, writers: int) -> float:
    """The same, from `writers` tasks of one event loop (the async hot path's callers)."""
    count = 0

    async def work(n: int, stop: float) -> None:
        nonlocal count
        actor = Principal(kind="user", name=f"bench{n}")
        while time.perf_counter() < stop:
            entry = audit.Entry.of(actor, "bench.append", target=str(count), purpose="bench")
            await node.audit_appender.append_async(entry)
            count += 1

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(work(n, started + SECONDS) for n in range(writers)))
        return count / (time.perf_counter() - started)

    return asyncio.run(main())


def run() -> dict[str, float]:
    name = f"minyun_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        var = Path(tempfile.mkdtemp(prefix="minyun-bench-"))
        url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
        node = Platform.open(load_settings(var_dir=var, database_url=url))
        node.migrate()
        with node.factory.begin() as s:
            s.execute(
                text("CREATE TABLE bench_plain (id bigserial primary key, actor text, target text)")
            )
        figures: dict[str, float] = {}
        for writers in (1, 8):
            chained = _measure(node, writers, "group")
            plain = _measure(node, writers, "plain")
            figures[f"audit.appends_per_s_{writers}"] = round(chained, 1)
            figures[f"audit.vs_plain_insert_ratio_{writers}"] = round(chained / plain, 3)
        with node.factory() as s:
            grouped = s.scalar(text("SELECT count(*) FROM audit_records")) or 0
        figures["audit.records_per_batch"] = round(grouped / max(node.audit_appender.batches, 1), 2)
        figures["audit.async_appends_per_s_8"] = round(_measure_async(node, 8), 1)
        figures["audit.in_transaction_appends_per_s_8"] = round(_measure(node, 8, "record"), 1)
        with node.factory() as s:
            report = audit.verify(s, node.node_key)
        assert report.ok, report.first_problem
        figures["audit.verify_records_per_s"] = round(_verify_rate(node), 1)
        node.close()
        return figures
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _verify_rate(node: Platform) -> float:
    started = time.perf_counter()
    with node.factory() as s:
        records = audit.verify(s, node.node_key).records
    return records / (time.perf_counter() - started)
