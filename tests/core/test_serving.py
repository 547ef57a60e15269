"""The serving index on SQLite and PostgreSQL: full and incremental refresh, freshness, JSON."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus
from minyun.core import serving
from minyun.core.audit import AuditRecord
from minyun.core.jobs import Job
from minyun.core.lake import Lake
from minyun.core.serving import ServingRow, ServingState
from minyun.query.service import RowsPage, query_rows, refresh_index
from tests.factories import make_org
from tests.query.data import ADMIN

CDF = {"delta.enableChangeDataFeed": "true"}


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def register(
    session: Session, code: str, table: pa.Table, primary_key: list[str] | None
) -> Resource:
    """A published resource whose schema names `primary_key` (types do not matter here)."""
    org = make_org(session)
    resource = Resource(
        code=code,
        name=f"测试 {code}",
        provider_id=org.id,
        status=ResourceStatus.PUBLISHED,
        current_schema_version="1.0",
    )
    session.add(resource)
    session.flush()
    descriptor: dict[str, Any] = {
        "fields": [{"name": n, "type": "any"} for n in table.schema.names]
    }
    if primary_key:
        descriptor["primaryKey"] = primary_key
    session.add(
        ResourceSchema(
            resource_id=resource.id,
            version="1.0",
            descriptor=descriptor,
            change="initial",
            created_by="test",
        )
    )
    session.flush()
    return resource


def people(ids: range, tag: str = "") -> pa.Table:
    return pa.table(
        {
            "id": pa.array(list(ids), pa.int64()),
            "name": [f"居民{i}{tag}" for i in ids],
            "born": pa.array([date(1990, 1, 1 + i % 28) for i in ids], pa.date32()),
        }
    )


def at_head(session: Session, lake: Lake, resource: Resource) -> None:
    resource.lake_version = DeltaTable(lake.table_uri(resource.code)).version()
    session.flush()


def merge_upsert(lake: Lake, code: str, source: pa.Table) -> None:
    DeltaTable(lake.table_uri(code)).merge(
        source, "t.id = s.id", source_alias="s", target_alias="t"
    ).when_matched_update_all().when_not_matched_insert_all().execute()


def merge_delete(lake: Lake, code: str, ids: list[int]) -> None:
    source = pa.table({"id": pa.array(ids, pa.int64())})
    DeltaTable(lake.table_uri(code)).merge(
        source, "t.id = s.id", source_alias="s", target_alias="t"
    ).when_matched_delete().execute()


def indexed(session: Session, resource: Resource) -> dict[str, dict[str, Any]]:
    rows = session.execute(
        select(ServingRow.key, ServingRow.row).where(ServingRow.resource_id == resource.id)
    )
    return {key: row for key, row in rows}


def lake_rows(lake: Lake, code: str) -> dict[str, dict[str, Any]]:
    table = DeltaTable(lake.table_uri(code)).to_pyarrow_table()
    return {
        serving.encode_key([r["id"]]): {k: serving._encode(v) for k, v in r.items()}
        for r in table.to_pylist()
    }


def test_full_refresh_in_batches_then_nothing_to_do(session: Session, lake: Lake) -> None:
    code = "sv-full"
    write_deltalake(lake.table_uri(code), people(range(1, 2501)), configuration=CDF)
    resource = register(session, code, people(range(1, 2)), ["id"])
    at_head(session, lake, resource)

    assert (
        serving.refresh(serving.savepoints(session), lake, resource, ["id"], batch_rows=1000)
        == 2500
    )
    state = session.get(ServingState, resource.id)
    assert state is not None and state.lake_version == 0 and state.rows == 2500
    rows = indexed(session, resource)
    assert rows == lake_rows(lake, code)
    assert rows['["7"]'] == {"id": 7, "name": "居民7", "born": "1990-01-08"}
    assert refresh_index(session, lake, code) == 0  # already at the version


def test_incremental_refresh_applies_appends_upserts_and_deletes(
    session: Session, lake: Lake
) -> None:
    code = "sv-cdf"
    uri = lake.table_uri(code)
    write_deltalake(uri, people(range(1, 1001)), configuration=CDF)  # v0
    resource = register(session, code, people(range(1, 2)), ["id"])
    at_head(session, lake, resource)
    assert refresh_index(session, lake, code) == 1000

    write_deltalake(uri, people(range(1001, 1011)), mode="append")  # v1: 10 new
    merge_upsert(lake, code, people(range(995, 1006), "-改"))  # v2: 6 changed, 5 again
    merge_delete(lake, code, [1, 2, 3, 1004])  # v3
    DeltaTable(uri).delete("id = 500")  # v4
    at_head(session, lake, resource)
    assert resource.lake_version == 4

    # Only the changed keys are written: 10 appended, 11 upserted (overlapping), 5 deleted.
    written = refresh_index(session, lake, code)
    assert written < 40
    rows = indexed(session, resource)
    assert rows == lake_rows(lake, code)
    assert '["1"]' not in rows and '["500"]' not in rows and '["1004"]' not in rows
    assert rows['["1000"]']["name"] == "居民1000-改" and rows['["1010"]']["name"] == "居民1010"
    state = session.get(ServingState, resource.id)
    assert state is not None and state.lake_version == 4 and state.rows == 1000 + 10 - 5

    # One version at a time gives the same index.
    merge_upsert(lake, code, people(range(1, 3), "-回"))  # v5
    at_head(session, lake, resource)
    assert refresh_index(session, lake, code) == 2
    assert indexed(session, resource) == lake_rows(lake, code)


def test_overwrite_and_tables_without_a_feed_are_rebuilt(session: Session, lake: Lake) -> None:
    code = "sv-nocdf"
    uri = lake.table_uri(code)
    write_deltalake(uri, people(range(1, 101)))  # no change data feed
    resource = register(session, code, people(range(1, 2)), ["id"])
    at_head(session, lake, resource)
    refresh_index(session, lake, code)
    write_deltalake(uri, people(range(101, 111)), mode="append")
    at_head(session, lake, resource)
    assert refresh_index(session, lake, code) == 110  # rebuilt
    assert indexed(session, resource) == lake_rows(lake, code)

    code = "sv-over"
    uri = lake.table_uri(code)
    write_deltalake(uri, people(range(1, 101)), configuration=CDF)
    resource = register(session, code, people(range(1, 2)), ["id"])
    at_head(session, lake, resource)
    refresh_index(session, lake, code)
    write_deltalake(uri, people(range(50, 80), "-新"), mode="overwrite")
    at_head(session, lake, resource)
    assert refresh_index(session, lake, code) == 30
    assert indexed(session, resource) == lake_rows(lake, code)


def test_resources_without_a_usable_primary_key_are_not_indexed(
    session: Session, lake: Lake
) -> None:
    write_deltalake(lake.table_uri("sv-nopk"), people(range(1, 11)), configuration=CDF)
    resource = register(session, "sv-nopk", people(range(1, 2)), None)
    at_head(session, lake, resource)
    assert refresh_index(session, lake, "sv-nopk") == 0
    assert session.get(ServingState, resource.id) is None and not indexed(session, resource)

    floats = pa.table({"x": [1.5, 2.5], "v": ["a", "b"]})
    write_deltalake(lake.table_uri("sv-float"), floats)
    resource = register(session, "sv-float", floats, ["x"])
    at_head(session, lake, resource)
    assert refresh_index(session, lake, "sv-float") == 0
    assert session.get(ServingState, resource.id) is None


def _rich() -> pa.Table:
    """Every kind of value the JSON output converts, with NULLs."""
    return pa.table(
        {
            "region": ["350100", "350200", "350100"],
            "seq": pa.array([1, 1, 2], pa.int32()),
            "day": pa.array([date(2022, 1, 4), None, date(2000, 2, 29)], pa.date32()),
            "at": pa.array(
                [
                    datetime(2022, 1, 4, 8, 30, 0, 123456, tzinfo=UTC),
                    None,
                    datetime(1999, 12, 31, 23, 59, tzinfo=UTC),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "amount": pa.array([Decimal("1234.50"), Decimal("-0.01"), None], pa.decimal128(12, 2)),
            "ratio": [0.1, None, 1e-7],
            "ok": [True, False, None],
            "note": ['福州 "鼓楼"', None, "\\ / \n"],
            "blob": pa.array([b"\x00\xff", None, b"minyun"], pa.binary()),
        }
    )


def _json(page: RowsPage) -> bytes:
    """The body the query API writes for a page (its own converter)."""
    body = {
        "rows": page.table.to_pylist(),
        "next_cursor": page.next_cursor,
        "version": page.version,
    }
    return json.dumps(
        body, ensure_ascii=False, separators=(",", ":"), default=serving.json_value
    ).encode()


def _reads(session: Session) -> list[AuditRecord]:
    query = select(AuditRecord).where(AuditRecord.action == "resource.read")
    return list(session.scalars(query.order_by(AuditRecord.seq)))


@pytest.mark.parametrize("fields", [None, "note,amount,day"])
def test_served_json_equals_lake_json(session: Session, lake: Lake, fields: str | None) -> None:
    code = "sv-json"
    write_deltalake(lake.table_uri(code), _rich(), configuration=CDF)
    resource = register(session, code, _rich(), ["region", "seq"])
    at_head(session, lake, resource)
    refresh_index(session, lake, code)
    for region, seq in [("350100", 1), ("350200", 1), ("350100", 2), ("350100", 9)]:
        where = f"seq = {seq} and region = '{region}'"
        served = query_rows(session, lake, ADMIN, code, filter=where, fields=fields)
        read = query_rows(session, lake, ADMIN, code, filter=where, fields=fields, version=0)
        assert _json(served) == _json(read)
        assert served.table.schema == read.table.schema
        *_, a, b = _reads(session)
        assert (a.record_keys, a.record_count, a.detail) == (
            b.record_keys,
            b.record_count,
            b.detail,
        )
    # The stored row is the API's JSON of the lake row.
    stored = indexed(session, resource)['["350100","1"]']
    read = query_rows(session, lake, ADMIN, code, filter="region = '350100' and seq = 1", version=0)
    assert json.loads(_json(read))["rows"][0] == stored


def test_only_a_fresh_index_serves_and_only_whole_key_lookups(
    session: Session, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "sv-fresh"
    uri = lake.table_uri(code)
    write_deltalake(uri, people(range(1, 21)), configuration=CDF)
    resource = register(session, code, people(range(1, 2)), ["id"])
    at_head(session, lake, resource)
    refresh_index(session, lake, code)
    # Mark the indexed row so we can tell who answered.
    session.execute(
        update(ServingRow)
        .where(ServingRow.resource_id == resource.id, ServingRow.key == '["5"]')
        .values(row={"id": 5, "name": "索引", "born": "1990-01-06"})
    )

    def name(**options: Any) -> list[str]:
        page = query_rows(session, lake, ADMIN, code, **options)
        return [str(n) for n in page.table.column("name").to_pylist()]

    assert name(filter="id = 5") == ["索引"]
    assert name(filter="id = 5", fields="name", sort="-born") == ["索引"]
    assert name(filter="id = 99") == []  # not in the index: not in the lake either
    assert name(filter="id = 5", version=0) == ["居民5"]  # explicit version: the lake
    assert name(filter="id = 5 or id = 6") == ["居民5", "居民6"]
    assert name(filter="id = 5 and name = '居民5'") == ["居民5"]
    assert name(filter="id >= 5 and id <= 5") == ["居民5"]
    assert name(filter="id = 5.0") == ["居民5"]

    merge_upsert(lake, code, people(range(5, 6), "-新"))  # v1, not yet indexed
    at_head(session, lake, resource)
    assert name(filter="id = 5") == ["居民5-新"]  # stale index: the lake answers
    refresh_index(session, lake, code)
    assert name(filter="id = 5") == ["居民5-新"]  # now from the index, fresh


def test_submit_refresh_queues_one_job_per_version(session: Session, lake: Lake) -> None:
    facts = serving.Facts(41, "sv-job", 3)
    job = serving.submit_refresh(session, facts, ["id"], lake_uri=lake.uri)
    again = serving.submit_refresh(session, facts, ["id"], lake_uri=lake.uri)
    assert again.id == job.id and job.kind == "serving.refresh" and job.key == "serving:sv-job:3"
    assert job.params == {
        "code": "sv-job",
        "resource_id": 41,
        "lake_version": 3,
        "primary_key": ["id"],
        "lake_uri": lake.uri,
    }
    count = session.scalar(
        select(func.count()).select_from(Job).where(Job.kind == "serving.refresh")
    )
    assert count == 1


def test_a_build_taken_over_by_a_newer_refresh_stops_and_an_older_one_does_nothing(
    session: Session, lake: Lake
) -> None:
    code = "sv-race"
    uri = lake.table_uri(code)
    write_deltalake(uri, people(range(1, 2501)), configuration=CDF)  # v0
    write_deltalake(uri, people(range(2501, 2601)), mode="append", configuration=CDF)  # v1
    resource = register(session, code, people(range(1, 2)), ["id"])
    at_head(session, lake, resource)
    savepoints = serving.savepoints(session)
    opened = 0
    seen_building: list[tuple[int | None, str | None]] = []

    @contextlib.contextmanager
    def interleaved() -> Iterator[Session]:
        # The v0 refresh's third transaction: first a whole refresh of v1 runs.
        nonlocal opened
        opened += 1
        if opened == 3:
            state = session.get(ServingState, resource.id)
            assert state is not None
            seen_building.append((state.lake_version, state.building))
            assert serving.refresh(savepoints, lake, resource, ["id"], batch_rows=1000) == 2600
        with savepoints() as inner:
            yield inner

    old = serving.Facts(resource.id, code, 0)
    assert serving.refresh(interleaved, lake, old, ["id"], batch_rows=1000) == 0  # taken over
    assert seen_building and seen_building[0][0] is None and seen_building[0][1]  # not serving
    state = session.get(ServingState, resource.id)
    assert state is not None and (state.lake_version, state.rows, state.building) == (1, 2600, None)
    assert indexed(session, resource) == lake_rows(lake, code)

    # The v0 job running late leaves the index at v1.
    assert serving.refresh(savepoints, lake, old, ["id"], batch_rows=1000) == 0
    assert session.get(ServingState, resource.id) is not None and state.lake_version == 1

    # A key that can no longer be used: the rows go, a few per transaction.
    assert serving.refresh(savepoints, lake, resource, ["gone"], batch_rows=1000) == 2600
    assert session.get(ServingState, resource.id) is None and not indexed(session, resource)


def test_a_build_interrupted_half_way_is_rebuilt_and_never_serves(
    session: Session, lake: Lake
) -> None:
    code = "sv-crash"
    write_deltalake(lake.table_uri(code), people(range(1, 2501)), configuration=CDF)
    resource = register(session, code, people(range(1, 2)), ["id"])
    at_head(session, lake, resource)
    savepoints = serving.savepoints(session)
    opened = 0

    @contextlib.contextmanager
    def dies() -> Iterator[Session]:
        nonlocal opened
        opened += 1
        if opened == 4:
            raise RuntimeError("the runner died")
        with savepoints() as inner:
            yield inner

    with pytest.raises(RuntimeError):
        serving.refresh(dies, lake, resource, ["id"], batch_rows=1000)
    state = session.get(ServingState, resource.id)
    assert state is not None and state.lake_version is None and state.building is not None
    assert 0 < len(indexed(session, resource)) < 2500
    assert query_rows(session, lake, ADMIN, code, filter="id = 2400").table.num_rows == 1  # lake
    # The job runs again: a whole rebuild.
    assert refresh_index(session, lake, code) == 2500
    assert indexed(session, resource) == lake_rows(lake, code)
