"""Row queries by primary key through the API, against the same lookups in DuckDB directly.

A resource of MINYUN_BENCH_ROWS rows (default 1 million) is written with deltalake; an API
client of its provider asks `GET /api/v1/resources/{code}/rows?filter=id = k` for random
keys over HTTP (uvicorn on 127.0.0.1, one client, embedded SQLite node: authorisation,
filter compiling, the DuckDB read and an audit record per request). The baseline runs the
same lookups with DuckDB in-process on the same Delta table, registered once. The table is
measured as delta-rs writes it by default (as ingest does) and with 64k-row row groups,
where Parquet statistics let a key lookup skip most of the file.

Each table's serving index is refreshed first (`serving.refresh_1m_s`: a full build of the
default layout's index), so `lake.pk_query_rps` is the lookup as the API serves it, from the
index; `lake.pk_query_lake_rps` is the same lookup forced to the lake (an explicit
`version`, which the index never answers). The ratio is the served rate over DuckDB's.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import uvicorn
from deltalake import DeltaTable, WriterProperties, write_deltalake

from minyun.accounts import service as accounts
from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus
from minyun.core import identifiers
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.orgs import service as orgs
from minyun.query.service import refresh_index
from minyun.web.app import create_app

ROWS = int(os.environ.get("MINYUN_BENCH_ROWS", "1000000"))
SECONDS = 3.0
SYSTEM = Principal.system()


def synthetic_rows(rows: int, *, seed: int = 20240601) -> pa.Table:
    """Rows shaped like a register: integer key, name, city, amount, date."""
    rng = np.random.default_rng(seed)
    cities = np.array(["福州市", "厦门市", "泉州市", "漳州市", "莆田市", "三明市", "南平市"])
    start = date(2000, 1, 1)
    return pa.table(
        {
            "id": pa.array(np.arange(1, rows + 1, dtype=np.int64)),
            "name": pa.array([f"主体{i:07d}" for i in range(1, rows + 1)]),
            "city": pa.array(cities[rng.integers(0, len(cities), rows)]),
            "amount": pa.array(rng.gamma(2.0, 500.0, rows).round(2)),
            "day": pa.array(
                [start + timedelta(days=int(d)) for d in rng.integers(0, 8000, rows)], pa.date32()
            ),
        }
    )


def _add_resource(node: Platform, provider_id: int, code: str) -> None:
    with node.factory.begin() as session:
        resource = Resource(
            code=code,
            name=f"基准 {code}",
            provider_id=provider_id,
            status=ResourceStatus.PUBLISHED,
            current_schema_version="1.0",
            lake_version=0,
        )
        session.add(resource)
        session.flush()
        descriptor = {
            "fields": [
                {"name": "id", "type": "integer"},
                {"name": "name", "type": "string"},
                {"name": "city", "type": "string"},
                {"name": "amount", "type": "number"},
                {"name": "day", "type": "date"},
            ],
            "primaryKey": ["id"],
        }
        session.add(
            ResourceSchema(
                resource_id=resource.id,
                version="1.0",
                descriptor=descriptor,
                change="initial",
                created_by="bench",
            )
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(node: Platform) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = _free_port()
    config = uvicorn.Config(create_app(node), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    return server, thread, base


def _api_rate(
    client: httpx.Client,
    code: str,
    rng: random.Random,
    seconds: float = SECONDS,
    *,
    lake: bool = False,
) -> float:
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        key = rng.randint(1, ROWS)
        params: dict[str, str | int] = {"filter": f"id = {key}"}
        if lake:
            params["version"] = 0  # an explicit version is read from the lake
        r = client.get(f"/api/v1/resources/{code}/rows", params=params)
        r.raise_for_status()
        rows = r.json()["rows"]
        assert len(rows) == 1 and rows[0]["id"] == key, r.text
        done += 1
    return done / (time.perf_counter() - started)


def _duckdb_rate(uri: str, rng: random.Random) -> float:
    con = duckdb.connect(":memory:")
    con.register("t", DeltaTable(uri).to_pyarrow_dataset())
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        key = rng.randint(1, ROWS)
        table = con.sql("SELECT * FROM t WHERE id = ?", params=[key]).to_arrow_table()
        assert table.num_rows == 1
        done += 1
    return done / (time.perf_counter() - started)


def run() -> dict[str, float]:
    var = Path(tempfile.mkdtemp(prefix="minyun-bench-query-"))
    node = Platform.open(load_settings(var_dir=var))
    node.migrate()
    with node.factory.begin() as session:
        orgs.load_divisions(session, orgs.packaged_divisions())
        org = orgs.create_organization(
            session,
            SYSTEM,
            code="bench-org",
            name="基准测试单位",
            uscc=identifiers.make_uscc("1", "1", "350100", "00000001"),
            division_code="350100",
        )
        new = accounts.create_client(
            session, SYSTEM, organization_id=org.id, name="bench", scopes=["org.read"]
        )
        provider_id, client_id, secret = org.id, new.client.client_id, new.secret
    table = synthetic_rows(ROWS)
    figures: dict[str, float] = {}
    layouts = {"": None, "_rowgroups_64k": WriterProperties(max_row_group_size=65536)}
    for suffix, properties in layouts.items():
        code = f"bench-pk{suffix.replace('_', '-')}"
        write_deltalake(node.lake.table_uri(code), table, writer_properties=properties)
        _add_resource(node, provider_id, code)
        started = time.perf_counter()
        refresh_index(node.factory.begin, node.lake, code)  # short transactions, as the job
        if not suffix:
            figures["serving.refresh_1m_s"] = round(time.perf_counter() - started, 2)

    server, thread, base = _serve(node)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            token = client.post(
                "/api/v1/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
            ).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            for suffix in layouts:
                code = f"bench-pk{suffix.replace('_', '-')}"
                _api_rate(client, code, random.Random(1), 0.5)  # warm-up: caches, connection
                api = _api_rate(client, code, random.Random(2))
                _api_rate(client, code, random.Random(1), 0.5, lake=True)
                scan = _api_rate(client, code, random.Random(2), lake=True)
                direct = _duckdb_rate(node.lake.table_uri(code), random.Random(2))
                figures[f"lake.pk_query_rps{suffix}"] = round(api, 1)
                figures[f"lake.pk_query_lake_rps{suffix}"] = round(scan, 1)
                figures[f"lake.pk_query_duckdb_rps{suffix}"] = round(direct, 1)
                figures[f"lake.pk_query_vs_duckdb_ratio{suffix}"] = round(api / direct, 3)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        node.close()
    figures["lake.pk_query_table_rows"] = float(ROWS)
    return figures
