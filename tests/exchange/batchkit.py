"""A node, a provider's resource with a change data feed, a consumer's grant: batch tests."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pymysql
import pytest
from sqlalchemy import select

from minyun.accounts.service import principal_for
from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus
from minyun.core import clock, jobs
from minyun.core.audit import AuditRecord
from minyun.core.lake import LoadRecord
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.exchange import batch, service
from minyun.exchange.batch_models import BatchDelivery
from minyun.exchange.sinks import SinkSpec
from tests import factories
from tests.conftest import PG_ADMIN, make_settings

CITIES = ["福州市", "厦门市", "泉州市"]
# name: masked (secret, above an internal grant), born: masked to the year, score: dropped.
FIELDS = {
    "id": ("integer", "internal", None),
    "name": ("string", "secret", "name"),
    "city": ("string", "internal", None),
    "age": ("integer", "internal", None),
    "born": ("date", "secret", "date(year)"),
    "score": ("number", "secret", None),
}
MARIA = "mysql://root@127.0.0.1:3306/test"
_loads = itertools.count(1)


def people(ids: list[int], *, salt: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": [f"居民{i:05d}" for i in ids],
            "city": [CITIES[(i + salt) % 3] for i in ids],
            "age": pa.array([18 + (i * 7 + salt) % 60 for i in ids], pa.int64()),
            "born": [date(1960, 1, 1) + timedelta(days=i * 37 + salt) for i in ids],
            "score": [float((i * 13 + salt) % 100) for i in ids],
        }
    )


def open_node(tmp_path: Path, database_url: str | None = None) -> Platform:
    """A node whose jobs are run by the test (foreground), on SQLite or PostgreSQL."""
    over: dict[str, Any] = {"database_url": database_url} if database_url else {}
    node = Platform.open(make_settings(tmp_path / "var", **over), run_jobs_here=False)
    node.migrate()
    return node


@dataclass
class World:
    node: Platform
    code: str
    resource_id: int
    provider_id: int
    consumer_id: int
    consumer: Principal
    approver: Principal


def person(org_id: int, *roles: str, name: str) -> Principal:
    return Principal(
        kind="user", name=f"{name}{org_id}", organization_id=org_id, roles=frozenset(roles),
        account_kind="staff",
    )  # fmt: skip


def world(node: Platform, *, rows: int = 60, code: str | None = None) -> World:
    """A published, conditionally shared resource of `rows` people (a change data feed on)."""
    code = code or f"ppl-{uuid.uuid4().hex[:6]}"
    with node.factory.begin() as session:
        provider = factories.make_org(session)
        consumer = factories.make_org(session)
        resource = Resource(
            code=code, name=f"人口 {code}", provider_id=provider.id,
            status=ResourceStatus.PUBLISHED, current_schema_version="1.0",
            sharing_type="conditional", open_type="none", legal_basis="《条例》",
        )  # fmt: skip
        session.add(resource)
        session.flush()
        fields = [
            {"name": n, "type": t, "sensitivity": s, **({"mask": m} if m else {})}
            for n, (t, s, m) in FIELDS.items()
        ]
        session.add(
            ResourceSchema(
                resource_id=resource.id,
                version="1.0",
                created_by="test",
                change="initial",
                descriptor={"fields": fields, "primaryKey": ["id"]},
            )
        )
        ids = (resource.id, provider.id, consumer.id)
        user = factories.make_user(session, roles=["consumer"], organization=consumer)
        reader = principal_for(user)
    w = World(node, code, *ids, reader, person(ids[1], "approver", name="a"))
    load(w, "full", people(list(range(1, rows + 1))))
    return w


def load(w: World, mode: str, table: pa.Table) -> int:
    """A load's commit into the lake (full, upsert or delete), and the catalog's pointer."""
    version = w.node.lake.commit_rows(
        w.code, LoadRecord(load_id=next(_loads) + 10_000), mode=mode,
        data=pa.RecordBatchReader.from_batches(table.schema, table.to_batches()),
        primary_key=["id"],
    )  # fmt: skip
    with w.node.factory.begin() as session:
        found = session.get(Resource, w.resource_id)
        assert found is not None
        found.lake_version = version
    return version


def grant(
    w: World, fields: list[str], *, row_filter: str | None = None, clearance: str = "internal"
) -> int:
    with w.node.factory.begin() as session:
        application = service.apply(
            session, w.consumer, resource=w.code, purpose="社保核验", legal_basis="《条例》第十条",
            fields=fields, expires_at=clock.now() + timedelta(days=30),
        )  # fmt: skip
        made = service.approve_application(
            session, w.approver, application.id, row_filter=row_filter, clearance=clearance
        )
        return made.id


def revoke(w: World, grant_id: int) -> None:
    with w.node.factory.begin() as session:
        service.revoke_grant(session, w.approver, grant_id, reason="结束共享")


def subscribe(
    w: World, sink: SinkSpec, *, mode: str = "incremental", every: int | None = None
) -> int:
    with w.node.factory.begin() as session:
        made = batch.subscribe(
            session, w.consumer, resource=w.code, mode=mode, sink=sink, purpose="社保核验",
            every_minutes=every, node_key=w.node.node_key,
            folders=batch.folder_roots(w.node.settings.var_dir, ""),
        )  # fmt: skip
        return made.id


def deliver(w: World, subscription_id: int) -> BatchDelivery | None:
    """Ask for a delivery and run its job here; the delivery as it ended (None: nothing new)."""
    with w.node.factory.begin() as session:
        made = batch.request_delivery(
            session, w.consumer, subscription_id, lake_uri=w.node.lake.uri,
            var_dir=w.node.settings.var_dir,
        )  # fmt: skip
        delivery_id = made.id if made is not None else None
    jobs.run_pending(w.node.factory, w.node.dispatcher)
    if delivery_id is None:
        return None
    with w.node.factory() as session:
        found = session.get(BatchDelivery, delivery_id)
        assert found is not None
        session.expunge(found)
        return found


def audit_actions(node: Platform, action: str, outcome: str | None = None) -> list[AuditRecord]:
    with node.factory() as session:
        query = select(AuditRecord).where(AuditRecord.action == action)
        if outcome is not None:
            query = query.where(AuditRecord.outcome == outcome)
        return list(session.scalars(query.order_by(AuditRecord.seq)))


# --- the consumers' own databases -------------------------------------------------------------


@pytest.fixture
def pg_sink() -> Iterator[str]:
    """A throwaway PostgreSQL database of the consumer's."""
    name = f"consumer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def maria_sink() -> Iterator[str]:
    """A throwaway MariaDB database of the consumer's."""
    name = f"consumer_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield f"mysql://root@127.0.0.1:3306/{name}"
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def sink_rows(dsn: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of the sink's table, by id."""
    if dsn.startswith("postgresql"):
        with psycopg.connect(dsn) as conn:
            return conn.execute(f'SELECT * FROM "{table}" ORDER BY id').fetchall()
    conn = pymysql.connect(
        host="127.0.0.1", user="root", password="", database=dsn.rsplit("/", 1)[1]
    )
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM `{table}` ORDER BY id")
            return list(cur.fetchall())
    finally:
        conn.close()


def ledger(dsn: str) -> list[tuple[Any, ...]]:
    if dsn.startswith("postgresql"):
        with psycopg.connect(dsn) as conn:
            return conn.execute(
                "SELECT delivery, rows FROM minyun_deliveries ORDER BY 1"
            ).fetchall()
    conn = pymysql.connect(
        host="127.0.0.1", user="root", password="", database=dsn.rsplit("/", 1)[1]
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT delivery, `rows` FROM minyun_deliveries ORDER BY 1")
            return list(cur.fetchall())
    finally:
        conn.close()
