"""Incremental batch delivery to a PostgreSQL sink against a plain COPY of the same rows.

Part of the `exchange` group (`bench_exchange.run` adds these figures; run alone with
`python -m benchmarks.exchange_batch`). PostgreSQL production setup: the control plane in a
throwaway database on 127.0.0.1, the consumer's own database another throwaway database
there (both dropped at the end).

Setup: a resource of MINYUN_BENCH_BATCH_ROWS people (default 1 million) keyed by `id`, with a
name above the grant's clearance and masked, and a secret score the grant drops; a consumer
department holding a grant; its incremental subscription to a PostgreSQL table, whose first
delivery (the whole granted part) is made and timed apart (`exchange.batch_full_s`). Then one
upsert load changes every row (a new version: its Change Data Feed holds the pre- and
post-image of each), and:

- `exchange.batch_rows_per_s`: the incremental delivery of those changed rows as the product
  runs it (the `exchange.batch` job: plan, change feed read through the plan, audit, COPY into
  a staging table, delete and insert into the consumer's table with its ledger row in one
  transaction, signed manifest, control-plane record), rows delivered / wall seconds;
- `exchange.batch_copy_rows_per_s`: a plain COPY of the same rows (the new version's granted
  columns, read from the lake, rendered as CSV, COPY into a fresh table of the same columns)
  in the same run;
- `exchange.batch_copy_ratio`: the first over the second.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
from sqlalchemy import select

from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus
from minyun.core import clock, identifiers, jobs
from minyun.core.config import load_settings
from minyun.core.lake import LoadRecord
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.exchange import batch
from minyun.exchange import service as sharing
from minyun.exchange.batch_models import BatchDelivery
from minyun.exchange.sinks import SinkSpec, csv_chunks
from minyun.orgs import service as orgs

ADMIN = os.environ.get("MINYUN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROWS = int(os.environ.get("MINYUN_BENCH_BATCH_ROWS", "1000000"))
CODE = "bench-batch"
SYSTEM = Principal.system(on_behalf_of="bench")
FIELDS = [
    {"name": "id", "type": "integer", "sensitivity": "internal"},
    {"name": "name", "type": "string", "sensitivity": "secret", "mask": "name"},
    {"name": "city", "type": "string", "sensitivity": "internal"},
    {"name": "age", "type": "integer", "sensitivity": "internal"},
    {"name": "born", "type": "date", "sensitivity": "internal"},
    {"name": "score", "type": "number", "sensitivity": "secret"},
]
CITIES = np.array(
    ["福州市", "厦门市", "泉州市", "漳州市", "莆田市", "三明市", "南平市", "龙岩市", "宁德市"]
)


def people(n: int, salt: int) -> pa.Table:
    """n synthetic people, vectorised; `salt` changes every non-key value."""
    rng = np.random.default_rng(7 + salt)
    ids = np.arange(1, n + 1, dtype=np.int64)
    born = np.datetime64(date(1950, 1, 1)) + rng.integers(0, 25_000, n).astype("timedelta64[D]")
    return pa.table(
        {
            "id": ids,
            "name": pa.array([f"居民{i:07d}{salt}" for i in range(1, n + 1)]),
            "city": pa.array(CITIES[rng.integers(0, len(CITIES), n)]),
            "age": pa.array(rng.integers(18, 90, n), pa.int64()),
            "born": pa.array(born, pa.date32()),
            "score": pa.array(rng.random(n) * 100),
        }
    )


def _load(node: Platform, load_id: int, mode: str, table: pa.Table) -> int:
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(100_000))
    version = node.lake.commit_rows(
        CODE, LoadRecord(load_id=load_id), mode=mode, data=reader, primary_key=["id"]
    )
    with node.factory.begin() as session:
        resource = session.scalars(select(Resource).where(Resource.code == CODE)).one()
        resource.lake_version = version
    return version


def setup(node: Platform, sink_dsn: str) -> int:
    """Provider, consumer, resource (v0), grant, subscription; the subscription's id."""
    with node.factory.begin() as session:
        orgs.load_divisions(session, orgs.packaged_divisions())
        made = []
        for n, name in ((3, "基准 提供单位"), (4, "基准 使用单位")):
            made.append(
                orgs.create_organization(
                    session, SYSTEM, code=f"bench-batch-{n}", name=name, division_code="350100",
                    uscc=identifiers.make_uscc("1", "1", "350100", f"0000000{n}"),
                ).id
            )  # fmt: skip
        provider, consumer = made
        resource = Resource(
            code=CODE, name="基准 批量交换", provider_id=provider, status=ResourceStatus.PUBLISHED,
            current_schema_version="1.0", sharing_type="conditional", open_type="none",
            legal_basis="《条例》",
        )  # fmt: skip
        session.add(resource)
        session.flush()
        session.add(
            ResourceSchema(
                resource_id=resource.id,
                version="1.0",
                change="initial",
                created_by="bench",
                descriptor={"fields": FIELDS, "primaryKey": ["id"]},
            )
        )
    _load(node, 1, "full", people(ROWS, 0))
    reader = batch.department_reader(consumer, "bench-batch-4")
    applicant = Principal(
        kind="user", name="bench-consumer", organization_id=consumer,
        roles=frozenset({"consumer"}), account_kind="staff",
    )  # fmt: skip
    approver = Principal(
        kind="user", name="bench-approver", organization_id=provider,
        roles=frozenset({"approver"}), account_kind="staff",
    )  # fmt: skip
    with node.factory.begin() as session:
        application = sharing.apply(
            session, applicant, resource=CODE, purpose="基准", legal_basis="《条例》",
            fields=["id", "name", "city", "age", "born"],
            expires_at=clock.now() + timedelta(days=30),
        )  # fmt: skip
        sharing.approve_application(session, approver, application.id)
        sub = batch.subscribe(
            session, SYSTEM, resource=CODE, mode="incremental", purpose="基准",
            sink=SinkSpec("postgresql", dsn=sink_dsn, table="people"), every_minutes=None,
            node_key=node.node_key, folders=[], owner=reader,
        )  # fmt: skip
        return sub.id


def deliver(node: Platform, subscription_id: int) -> tuple[BatchDelivery, float]:
    """One delivery as the product runs it; (the delivery, wall seconds)."""
    started = time.perf_counter()
    with node.factory.begin() as session:
        made = batch.request_delivery(
            session, SYSTEM, subscription_id, lake_uri=node.lake.uri,
            var_dir=node.settings.var_dir,
        )  # fmt: skip
        if made is None:
            raise RuntimeError("nothing to deliver")
        delivery_id = made.id
    jobs.run_pending(node.factory, node.dispatcher)
    seconds = time.perf_counter() - started
    with node.factory() as session:
        found = session.get(BatchDelivery, delivery_id)
        if found is None or found.state != "delivered":
            raise RuntimeError(f"the delivery did not succeed: {found and found.error}")
        session.expunge(found)
    return found, seconds


def plain_copy(node: Platform, sink_dsn: str, version: int) -> tuple[int, float]:
    """The same rows (the version's granted columns) rendered as CSV and COPYed into a fresh
    table: (rows, seconds). The baseline: no plan, mask, change feed, ledger or audit."""
    started = time.perf_counter()
    table = node.lake.dataset(CODE, version=version).to_table(
        columns=["id", "name", "city", "age", "born"]
    )
    with psycopg.connect(sink_dsn) as conn:
        conn.execute(
            "CREATE TABLE plain_people (id BIGINT PRIMARY KEY, name TEXT, city TEXT, "
            "age BIGINT, born DATE)"
        )
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY plain_people (id, name, city, age, born) FROM STDIN (FORMAT csv)"
            ) as copy,
        ):
            for chunk, _ in csv_chunks(table, header=False):
                copy.write(chunk)
    return table.num_rows, time.perf_counter() - started


def run() -> dict[str, float]:
    names = [f"minyun_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    control, sink = (ADMIN.rsplit("/", 1)[0] + f"/{name}" for name in names)
    var = Path(tempfile.mkdtemp(prefix="minyun-bench-batch-"))
    try:
        node = Platform.open(load_settings(var_dir=var, database_url=control), run_jobs_here=False)
        try:
            node.migrate()
            sub = setup(node, sink)
            _first, full_s = deliver(node, sub)
            version = _load(node, 2, "upsert", people(ROWS, 1))
            delivered, batch_s = deliver(node, sub)
            if delivered.kind != "changes" or delivered.rows != ROWS:
                raise RuntimeError(f"expected {ROWS} changed rows, got {delivered.rows}")
            rows, copy_s = plain_copy(node, sink, version)
        finally:
            node.close()
        batch_rate = ROWS / batch_s
        copy_rate = rows / copy_s
        return {
            "exchange.batch_rows": float(ROWS),
            "exchange.batch_full_s": round(full_s, 2),
            "exchange.batch_rows_per_s": round(batch_rate, 1),
            "exchange.batch_copy_rows_per_s": round(copy_rate, 1),
            "exchange.batch_copy_ratio": round(batch_rate / copy_rate, 3),
        }
    finally:
        shutil.rmtree(var, ignore_errors=True)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    for metric, value in run().items():
        print(f"{metric} {value}")
