"""Batch exchange: subscriptions delivered as jobs to files, folders and the consumers' own
PostgreSQL and MariaDB tables, exactly once per version range, through the grant's plan."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from minyun.core import jobs
from minyun.core.errors import Forbidden, Invalid
from minyun.core.platform import Platform
from minyun.exchange import batch, sinks
from minyun.exchange.batch_models import BatchDelivery
from minyun.exchange.sinks import SinkSpec
from tests.exchange.batchkit import (
    audit_actions,
    deliver,
    grant,
    ledger,
    load,
    maria_sink,
    open_node,
    people,
    pg_sink,
    revoke,
    sink_rows,
    subscribe,
    world,
)

__all__ = ["maria_sink", "pg_sink"]  # fixtures


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Platform]:
    made = open_node(tmp_path)
    yield made
    made.close()


def _file(node: Platform, subscription_id: int, delivery: BatchDelivery) -> Path:
    assert delivery.file_name is not None
    return batch.files_folder(node.settings.var_dir, subscription_id) / delivery.file_name


def test_a_full_file_holds_the_granted_fields_and_rows_only(node: Platform) -> None:
    w = world(node)
    grant(w, ["id", "name", "city", "born"], row_filter="id <= 40")
    sub = subscribe(w, SinkSpec("file", "parquet"), mode="full")
    delivery = deliver(w, sub)
    assert delivery is not None and delivery.state == "delivered", delivery and delivery.error
    table = pq.read_table(_file(node, sub, delivery))
    assert table.column_names == ["id", "name", "city", "born"]
    assert table.column("id").to_pylist() == list(range(1, 41))
    assert table.column("name")[6].as_py() == "居*****7"  # masked above the grant's clearance
    assert all(len(str(v)) == 4 for v in table.column("born").to_pylist())  # the year
    # The manifest: rows, checksum, versions, grant, signed with the node key.
    assert delivery.manifest is not None and delivery.signature is not None
    assert delivery.manifest["rows"] == 40 and delivery.manifest["to_version"] == 0
    assert delivery.manifest["checksum"] == sinks.checksum(table)
    signed = {"manifest": delivery.manifest, "signature": delivery.signature}
    assert batch.verify_manifest(signed, node.node_key)
    tampered = {**signed, "manifest": {**delivery.manifest, "rows": 41}}
    assert not batch.verify_manifest(tampered, node.node_key)
    beside = json.loads(Path(f"{_file(node, sub, delivery)}.manifest.json").read_text())
    assert beside["manifest"] == delivery.manifest
    # Nothing new: nothing delivered. The read and the delivery are audited.
    assert deliver(w, sub) is None
    reads = audit_actions(node, "resource.read", "success")
    assert len(reads) == 1 and f"grant={delivery.manifest['grant']}" in (reads[0].detail or "")
    assert len(audit_actions(node, "exchange.deliver")) == 1


def test_csv_has_a_byte_order_mark_and_xlsx_opens(node: Platform) -> None:
    from openpyxl import load_workbook

    w = world(node, rows=12)
    grant(w, ["id", "city", "age"])
    csv_sub = subscribe(w, SinkSpec("file", "csv"), mode="full")
    xlsx_sub = subscribe(w, SinkSpec("file", "xlsx"), mode="full")
    text = _file(node, csv_sub, deliver(w, csv_sub)).read_bytes()  # type: ignore[arg-type]
    assert text.startswith(sinks.BOM) and text[3:].decode().splitlines()[0] == '"id","city","age"'
    assert len(text.decode().splitlines()) == 13
    sheet = load_workbook(_file(node, xlsx_sub, deliver(w, xlsx_sub))).active  # type: ignore[arg-type]
    values = list(sheet.values)  # type: ignore[union-attr]
    assert values[0] == ("id", "city", "age") and len(values) == 13 and values[1][0] == 1


def test_a_folder_sink_writes_under_an_allowed_folder_only(node: Platform, tmp_path: Path) -> None:
    w = world(node, rows=5)
    grant(w, ["id", "city"])
    inside = node.settings.var_dir / "outbox" / "社保"
    sub = subscribe(w, SinkSpec("folder", "parquet", folder=str(inside)))
    delivery = deliver(w, sub)
    assert delivery is not None and delivery.state == "delivered"
    assert pq.read_table(inside / str(delivery.file_name)).num_rows == 5
    with pytest.raises(sinks.SinkError) as refused:
        subscribe(w, SinkSpec("folder", "csv", folder=str(tmp_path / "elsewhere")))
    assert refused.value.code == "folder-not-allowed"


def _expected(ids: list[int], *, salt_of: dict[int, int]) -> list[tuple[int, str]]:
    return [(i, people([i], salt=salt_of.get(i, 0)).column("city")[0].as_py()) for i in ids]


@pytest.mark.postgres
@pytest.mark.parametrize("flavour", ["postgresql", "mariadb"])
def test_incremental_changes_reach_the_consumers_database(
    node: Platform, flavour: str, request: pytest.FixtureRequest
) -> None:
    dsn = request.getfixturevalue("pg_sink" if flavour == "postgresql" else "maria_sink")
    w = world(node, rows=30)
    grant(w, ["id", "city"], row_filter="id <= 20")
    sub = subscribe(w, SinkSpec(flavour, dsn=dsn, table="people"))
    first = deliver(w, sub)
    assert first is not None and first.state == "delivered" and first.kind == "full"
    assert sink_rows(dsn, "people") == _expected(list(range(1, 21)), salt_of={})
    # Changed: 3 updated (city moves), 25 (outside the scope) updated, 21 new, 5 deleted.
    load(w, "upsert", people([3, 25, 21], salt=1))
    load(w, "delete", people([5]))
    second = deliver(w, sub)
    assert second is not None and second.state == "delivered", second and second.error
    assert second.kind == "changes" and second.from_version == 0 and second.to_version == 2
    assert second.manifest is not None and second.manifest["changes"] == {"upsert": 1, "delete": 1}
    ids = [i for i in range(1, 21) if i != 5]
    assert sink_rows(dsn, "people") == _expected(ids, salt_of={3: 1})
    assert [rows for _, rows in ledger(dsn)] == [20, 2]
    assert deliver(w, sub) is None


@pytest.mark.postgres
def test_a_crash_mid_delivery_then_resume_loses_nothing_and_doubles_nothing(
    node: Platform, pg_sink: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world(node, rows=50)
    grant(w, ["id", "city", "age"])
    sub = subscribe(w, SinkSpec("postgresql", dsn=pg_sink, table="people"), mode="full")
    # 1. The process dies in the middle of the COPY: the sink's transaction never commits.
    monkeypatch.setattr(sinks, "CHUNK_ROWS", 10)
    calls = {"n": 0}
    real_progress = jobs.JobContext.progress

    def dying(self: jobs.JobContext, done: int, *args: object, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        real_progress(self, done, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs.JobContext, "progress", dying)
    crashed = deliver(w, sub)
    assert crashed is not None and crashed.state == "failed"
    monkeypatch.setattr(jobs.JobContext, "progress", real_progress)
    assert ledger(pg_sink) == []
    # 2. It dies after the sink committed, before the control plane recorded it.
    real_finish = batch._finish
    monkeypatch.setattr(batch, "_finish", lambda *a, **k: (_ for _ in ()).throw(OSError("gone")))
    again = deliver(w, sub)
    assert again is not None and again.id == crashed.id and again.state == "failed"
    assert len(sink_rows(pg_sink, "people")) == 50 and len(ledger(pg_sink)) == 1
    # 3. Resumed: the ledger says it is there; recorded once, written once.
    monkeypatch.setattr(batch, "_finish", real_finish)
    done = deliver(w, sub)
    assert done is not None and done.id == crashed.id and done.state == "delivered"
    assert done.rows == 50 and len(sink_rows(pg_sink, "people")) == 50
    assert len(ledger(pg_sink)) == 1
    assert len(audit_actions(node, "exchange.deliver")) == 1
    assert deliver(w, sub) is None


def test_a_grant_revoked_before_the_job_runs_delivers_nothing(node: Platform) -> None:
    w = world(node, rows=10)
    grant_id = grant(w, ["id", "city"])
    sub = subscribe(w, SinkSpec("file", "parquet"), mode="full")
    with node.factory.begin() as session:
        queued = batch.request_delivery(
            session, w.consumer, sub, lake_uri=node.lake.uri, var_dir=node.settings.var_dir
        )
        assert queued is not None
    revoke(w, grant_id)
    jobs.run_pending(node.factory, node.dispatcher)
    with node.factory() as session:
        found = session.get(BatchDelivery, queued.id)
        assert found is not None and found.state == "refused" and found.rows is None
    folder = batch.files_folder(node.settings.var_dir, sub)
    assert not folder.exists() or not any(folder.iterdir())
    assert len(audit_actions(node, "resource.read", "denied")) == 1
    assert audit_actions(node, "exchange.deliver") == []
    # Asked again: refused at once, audited, nothing queued.
    with pytest.raises(Forbidden), node.factory.begin() as session:
        batch.request_delivery(
            session, w.consumer, sub, lake_uri=node.lake.uri, var_dir=node.settings.var_dir
        )


def test_bad_sinks_and_modes_are_refused(node: Platform) -> None:
    w = world(node, rows=5)
    grant(w, ["city", "age"])  # no primary key granted
    with pytest.raises(sinks.SinkError) as unknown:
        subscribe(w, SinkSpec("ftp"))
    assert unknown.value.code == "unknown-sink"
    with pytest.raises(sinks.SinkError) as no_format:
        subscribe(w, SinkSpec("file", "docx"))
    assert no_format.value.code == "unknown-format"
    with pytest.raises(sinks.SinkError) as bad_table:
        subscribe(w, SinkSpec("postgresql", dsn="postgresql://x@127.0.0.1/db", table="a;drop"))
    assert bad_table.value.extra["field"] == "table"
    with pytest.raises(sinks.SinkError) as unreachable:
        subscribe(w, SinkSpec("mariadb", dsn="mysql://root@127.0.0.1:1/none", table="t"))
    assert unreachable.value.code == "sink-unreachable" and unreachable.value.audit is not None
    with pytest.raises(Invalid) as no_key:
        subscribe(w, SinkSpec("file", "csv"), mode="incremental")
    assert no_key.value.code == "no-key"


def test_due_subscriptions_are_delivered_on_their_schedule(node: Platform) -> None:
    from datetime import timedelta

    from minyun.core import clock
    from minyun.core.security import Principal

    w = world(node, rows=8)
    grant_id = grant(w, ["id", "city"])
    sub = subscribe(w, SinkSpec("file", "parquet"), every=60)
    on_demand = subscribe(w, SinkSpec("file", "csv"))
    system = Principal.system(on_behalf_of="scheduler")
    where = {"lake_uri": node.lake.uri, "var_dir": node.settings.var_dir}
    with node.factory.begin() as session:
        queued = batch.deliver_due(session, system, **where)
        assert [d.subscription_id for d in queued] == [sub]
    jobs.run_pending(node.factory, node.dispatcher)
    with node.factory.begin() as session:
        assert batch.deliver_due(session, system, **where) == []  # next in an hour
    load(w, "upsert", people([2], salt=1))
    with node.factory.begin() as session:
        later = clock.now() + timedelta(minutes=61)
        assert len(batch.deliver_due(session, system, now=later, **where)) == 1
    jobs.run_pending(node.factory, node.dispatcher)
    revoke(w, grant_id)
    with node.factory.begin() as session:
        found = session.get(batch.BatchSubscription, sub)
        assert found is not None and found.delivered_version == 1
        found.next_due_at = clock.now()
    with node.factory.begin() as session:  # refused: skipped, audited
        assert batch.deliver_due(session, system, **where) == []
    assert len(audit_actions(node, "resource.read", "denied")) == 1
    with node.factory() as session:
        assert session.get(batch.BatchSubscription, on_demand).delivered_version is None  # type: ignore[union-attr]


@pytest.mark.postgres
def test_a_sink_unreachable_at_delivery_fails_it_and_a_later_run_delivers(
    node: Platform, pg_sink: str
) -> None:
    import psycopg

    from tests.conftest import PG_ADMIN

    w = world(node, rows=10)
    grant(w, ["id", "city"])
    sub = subscribe(w, SinkSpec("postgresql", dsn=pg_sink, table="people"), mode="full")
    name = pg_sink.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{name}_away"')
    try:
        failed = deliver(w, sub)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}_away" RENAME TO "{name}"')
    assert failed is not None and failed.state == "failed"
    assert failed.error is not None and "does not exist" in failed.error
    assert audit_actions(node, "exchange.deliver") == []
    assert len(audit_actions(node, "job.finish", "failed")) == 1
    done = deliver(w, sub)
    assert done is not None and done.id == failed.id and done.state == "delivered"
    assert len(sink_rows(pg_sink, "people")) == 10


@pytest.mark.postgres
@pytest.mark.parametrize("flavour", ["postgresql", "mariadb"])
def test_a_changed_grant_makes_the_next_delivery_a_full_one(
    node: Platform, flavour: str, request: pytest.FixtureRequest
) -> None:
    dsn = request.getfixturevalue("pg_sink" if flavour == "postgresql" else "maria_sink")
    w = world(node, rows=12)
    grant(w, ["id", "city"])
    sub = subscribe(w, SinkSpec(flavour, dsn=dsn, table="people"))
    assert deliver(w, sub).kind == "full"  # type: ignore[union-attr]
    grant(w, ["id", "city", "age"], row_filter="id <= 10")  # replaces the first grant
    load(w, "upsert", people([2], salt=1))
    again = deliver(w, sub)
    assert again is not None and again.state == "delivered", again and again.error
    assert again.kind == "full" and again.rows == 10
    rows = sink_rows(dsn, "people")
    assert len(rows) == 10 and len(rows[0]) == 3  # id, city, age


@pytest.mark.postgres
def test_a_killed_delivery_process_is_resumed_with_nothing_lost_or_doubled(
    tmp_path: Path, pg_sink: str
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "var", jobs_stale_after=1.0)
    node = Platform.open(settings, run_jobs_here=False)
    node.migrate()
    try:
        w = world(node, rows=50)
        grant(w, ["id", "city", "age"])
        sub = subscribe(w, SinkSpec("postgresql", dsn=pg_sink, table="people"), mode="full")
        with node.factory.begin() as session:
            made = batch.request_delivery(
                session, w.consumer, sub, lake_uri=node.lake.uri, var_dir=settings.var_dir
            )
            assert made is not None
            job_id = str(made.job_id)
        node.dispatcher.take_pending()  # the child process runs it
        ready = tmp_path / "ready"
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.exchange.crash_child", str(settings.var_dir), job_id,
             str(ready)],
            cwd=Path(__file__).resolve().parents[2], env={**os.environ},
        )  # fmt: skip
        try:
            for _ in range(300):
                if ready.exists() or child.poll() is not None:
                    break
                time.sleep(0.1)
            assert ready.exists(), "the child never reached the sink"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        assert ledger(pg_sink) == []  # killed inside the sink's transaction: nothing there
        time.sleep(1.5)  # its heartbeat goes stale
        assert jobs.recover(node.factory, node.dispatcher) == [job_id]
        jobs.run_pending(node.factory, node.dispatcher)
        with node.factory() as session:
            done = session.get(BatchDelivery, made.id)
            assert done is not None and done.state == "delivered" and done.rows == 50
        assert [r[0] for r in sink_rows(pg_sink, "people")] == list(range(1, 51))
        assert len(ledger(pg_sink)) == 1
        assert len(audit_actions(node, "exchange.deliver")) == 1
    finally:
        node.close()
