"""A department's own table pulled over a real connection: PostgreSQL and MariaDB."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pymysql
import pytest

from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.ingest.models import LoadMode, LoadState
from tests.conftest import PG_ADMIN
from tests.ingest.loadkit import load, make_resource, person, rows, versions

COLUMNS_SQL = (
    "id BIGINT PRIMARY KEY, ric VARCHAR(18), name VARCHAR(40), sex VARCHAR(1), birth DATE, "
    "county VARCHAR(6), phone VARCHAR(11), score DOUBLE PRECISION, level VARCHAR(1), "
    "employer VARCHAR(18), updated TIMESTAMP"
)
INSERT = (
    "INSERT INTO {t} (id, ric, name, sex, birth, county, phone, score, level, employer, updated) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _values(n: int, **over: object) -> tuple[object, ...]:
    r = person(n, **over)
    return (n, r["ric"], r["name"], r["sex"], r["birth"], r["county"], r["phone"], r["score"],
            r["level"], r["employer"], r["updated"])  # fmt: skip


@pytest.fixture
def pg_table() -> Iterator[tuple[str, str]]:
    table = f"people_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} ({COLUMNS_SQL})")
    yield PG_ADMIN, table
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def _pg_insert(dsn: str, table: str, values: list[tuple[object, ...]]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(INSERT.format(t=table), values)


MARIA = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture
def maria_table() -> Iterator[tuple[str, str]]:
    table = f"people_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(
        host="127.0.0.1", user="root", password="", database="test", autocommit=True
    )
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE {table} ({COLUMNS_SQL.replace('DOUBLE PRECISION', 'DOUBLE')}) CHARACTER SET utf8mb4"
        )
    yield MARIA, table
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()


def _maria_insert(dsn: str, table: str, values: list[tuple[object, ...]]) -> None:
    conn = pymysql.connect(
        host="127.0.0.1", user="root", password="", database="test", autocommit=True
    )
    with conn.cursor() as cur:
        cur.executemany(INSERT.format(t=table), values)
    conn.close()


@pytest.mark.parametrize("flavour", ["postgres", "mariadb"])
def test_table_is_pulled_then_only_rows_past_the_watermark(
    sqlite_node: Platform, request: pytest.FixtureRequest, flavour: str
) -> None:
    dsn, table = request.getfixturevalue("pg_table" if flavour == "postgres" else "maria_table")
    insert = _pg_insert if flavour == "postgres" else _maria_insert
    code, actor = make_resource(sqlite_node)
    insert(dsn, table, [_values(i, updated=f"2024-01-0{i} 08:00:00") for i in range(1, 5)]
           + [_values(5, sex="Z", updated="2024-01-05 08:00:00")])  # fmt: skip
    job = load(sqlite_node, actor, code, dsn, LoadMode.UPSERT, table=table, watermark="updated")
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    assert job.result and (job.result["rows_read"], job.result["rows_rejected"]) == (5, 1)
    insert(dsn, table, [_values(6, name="新人", updated="2024-01-07 08:00:00")])
    job = load(sqlite_node, actor, code, dsn, LoadMode.UPSERT, table=table, watermark="updated")
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    # Row 5 was refused last time, so the watermark stayed before it: it is read again.
    assert job.result and job.result["rows_read"] == 2
    first, second = versions(sqlite_node, code)
    assert first.source_kind == flavour and first.source.endswith(f"#{table}")
    assert second.watermark == "2024-01-07 08:00:00.000000" and second.state == LoadState.COMMITTED
    got = rows(sqlite_node, code)
    assert sorted(got.column("id").to_pylist()) == [1, 2, 3, 4, 6]
    assert "新人" in got.column("name").to_pylist()
    again = load(sqlite_node, actor, code, dsn, LoadMode.UPSERT, table=table)
    assert again.state == jobs.JobState.SUCCEEDED


def test_unknown_table_fails_with_the_reason(sqlite_node: Platform) -> None:
    code, actor = make_resource(sqlite_node)
    job = load(sqlite_node, actor, code, MARIA, table="no_such_table")
    assert job.state == jobs.JobState.FAILED and "no_such_table" in (job.error or "")
