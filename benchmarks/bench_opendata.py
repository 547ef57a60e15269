"""Open data: datastore_search, datastore_search_sql and a streamed CSV download over HTTP.

Setup: a node on a throwaway PostgreSQL database (127.0.0.1, dropped at the end; the
audit log's group commit as in production) and a local lake in a temporary folder, one open
resource of MINYUN_BENCH_OPEN_ROWS rows (default 10 million: id, name, city, category,
date, value, count, amount) committed to the lake in batches, opened as one dataset of its
public fields. The product is served by uvicorn (`minyun.web.asgi:app`, one process) and
read anonymously, as the public reads it: every request goes through the open-data access
plan, the view and the audit record.

- download (first, on the fresh server, so its peak memory is the download's): the whole
  dataset as CSV, streamed; `opendata.download_mb_per_s` and the server's peak resident
  memory `opendata.download_peak_rss_gib` (VmHWM of the server process).
- `datastore_search` with a filter (`city`, one of nine) and 100 rows, CLIENTS concurrent
  clients: `opendata.search_p50_ms`, `opendata.search_p99_ms`, `opendata.search_rps`.
- `datastore_search_sql` with a GROUP BY over the whole dataset, the same clients:
  `opendata.sql_p50_ms`, `opendata.sql_p99_ms`, `opendata.sql_rps`.
- the baseline: DuckDB running the same SQL directly on the same Parquet files, in this
  process, with the same number of concurrent clients: `opendata.duckdb_sql_p50_ms`, and
  `opendata.sql_vs_duckdb_ratio` = sql p50 over DuckDB's p50 (1.0: no cost over the engine).

MINYUN_BENCH_OPEN_ROWS=20000 runs it in seconds (a check that it works, not a figure).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from minyun.catalog import service as catalog
from minyun.catalog.models import LoadMode, LoadState, Version
from minyun.core import clock
from minyun.core.config import load_settings
from minyun.core.lake import LoadRecord
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.opendata import service
from minyun.opendata.demo import _schema
from minyun.orgs import service as orgs

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ROWS = int(os.environ.get("MINYUN_BENCH_OPEN_ROWS", "10000000"))
BATCH = 1_000_000
CLIENTS = int(os.environ.get("MINYUN_BENCH_OPEN_CLIENTS", "8"))
REQUESTS = int(os.environ.get("MINYUN_BENCH_OPEN_REQUESTS", "25"))  # per client and kind
ROOT = Path(__file__).resolve().parents[1]
SYSTEM = Principal.system(on_behalf_of="bench")
CODE = "bench-open"
NAME = "bench-open"
CITIES = np.array(
    ["福州市", "厦门市", "莆田市", "三明市", "泉州市", "漳州市", "南平市", "龙岩市", "宁德市"]
)
CATEGORIES = np.array(["甲类", "乙类", "丙类", "丁类"])
SQL = f'SELECT city, category, count(*) AS n, sum(value) AS total FROM "{NAME}" GROUP BY city, category ORDER BY city, category'


def _batches(rows: int) -> Iterator[pa.RecordBatch]:
    """The rows in batches of BATCH, built with Arrow kernels (no Python loop over rows)."""
    cities, categories = pa.array(CITIES.tolist()), pa.array(CATEGORIES.tolist())
    county = pa.array(["350102"])
    for start in range(0, rows, BATCH):
        n = min(BATCH, rows - start)
        rng = np.random.default_rng(start)
        number = pc.cast(pa.array(np.arange(start, start + n)), pa.string())
        table = pa.table({
            "id": pc.binary_join_element_wise("r", number, ""),
            "name": pc.binary_join_element_wise("开放数据记录", number, ""),
            "city": cities.take(pa.array(rng.integers(0, 9, n))),
            "county_code": county.take(pa.array(np.zeros(n, dtype=np.int64))),
            "category": categories.take(pa.array(rng.integers(0, 4, n))),
            "date": pa.array(np.datetime64("2020-01-01") + rng.integers(0, 2000, n), pa.date32()),
            "value": pa.array(np.round(rng.gamma(2.0, 50.0, n), 2)),
            "count": pa.array(rng.integers(1, 500, n)),
            "amount": pa.array(np.round(rng.gamma(2.0, 5000.0, n), 2)),
        })  # fmt: skip
        yield from table.combine_chunks().to_batches()


def _setup(var: Path, database_url: str) -> Path:
    """The node with the open dataset; the folder of its Delta table (for the baseline)."""
    node = Platform.open(load_settings(var_dir=var, database_url=database_url), run_jobs_here=False)
    node.migrate()
    try:
        with node.factory.begin() as s:
            orgs.load_divisions(s, orgs.packaged_divisions())
            org = orgs.create_organization(s, SYSTEM, code="fj-open", name="福建省大数据管理局",
                                           uscc="11350000MB0000000R", division_code="350000")  # fmt: skip
            catalog.create_resource(
                s, SYSTEM, code=CODE, name="开放数据基准", provider=org.code, theme="finance",
                sharing_type="unconditional", open_type="unconditional", schema=_schema(),
            )  # fmt: skip
            catalog.publish_resource(s, SYSTEM, CODE)
            resource = catalog.get_resource(s, CODE)
            version = Version(resource_id=resource.id, mode=LoadMode.FULL, source="bench",
                              source_kind="parquet", loaded_by=SYSTEM.label)  # fmt: skip
            s.add(version)
            s.flush()
            first = next(_batches(min(ROWS, BATCH)))
            reader = pa.RecordBatchReader.from_batches(first.schema, _batches(ROWS))
            number = node.lake.commit_rows(CODE, LoadRecord(load_id=version.id, rows_read=ROWS,
                                                            rows_accepted=ROWS), mode="full", data=reader)  # fmt: skip
            version.lake_version, version.state = number, LoadState.COMMITTED
            version.committed_at = clock.now()
            resource.lake_version, resource.row_count = number, ROWS
            s.flush()
            service.open_dataset(
                s, SYSTEM, CODE, name=NAME, title="开放数据基准", domain="finance",
                fields=["id", "name", "city", "county_code", "category", "date", "value", "count"],
            )  # fmt: skip
        return Path(node.lake.table_uri(CODE))
    finally:
        node.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _serving(var: Path, database_url: str, log: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINYUN_")}
    env["MINYUN_VAR_DIR"] = str(var)
    env["MINYUN_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "uvicorn", "minyun.web.asgi:app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.2)
            yield base, server.pid
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait(timeout=10)


def _peak_rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 2**30
    return float("nan")


def _download(base: str) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    with httpx.stream("GET", f"{base}/opendata/datasets/{NAME}/download.csv", timeout=3600) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes(1 << 20):
            size += len(chunk)
    return size / 2**20 / (time.perf_counter() - started), size


def _load(one: Callable[[int], None]) -> tuple[list[float], float]:
    """CLIENTS threads each calling `one` REQUESTS times: latencies (ms) and requests/s."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            for i in range(REQUESTS):
                t = time.perf_counter()
                one(n * REQUESTS + i)
                with lock:
                    latencies.append((time.perf_counter() - t) * 1000)
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return latencies, len(latencies) / (time.perf_counter() - started)


def _pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def run() -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="minyun-bench-open-"))
    out: dict[str, float] = {"opendata.rows": float(ROWS), "opendata.clients": float(CLIENTS),
                             "opendata.host_load_1m": round(os.getloadavg()[0], 2)}  # fmt: skip
    name = f"minyun_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        table_dir = _setup(work / "var", database_url)
        with _serving(work / "var", database_url, work / "server.log") as (base, pid):
            speed, size = _download(base)
            out["opendata.download_mb_per_s"] = speed
            out["opendata.download_mb"] = size / 2**20
            out["opendata.download_peak_rss_gib"] = _peak_rss_gib(pid)
            local = threading.local()

            def http() -> httpx.Client:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(base_url=base, timeout=120)
                return local.client  # type: ignore[no-any-return]

            def search(i: int) -> None:
                city = str(CITIES[i % 9])
                r = http().post("/api/3/action/datastore_search",
                                json={"resource_id": NAME, "filters": {"city": city}, "limit": 100})  # fmt: skip
                if r.status_code != 200 or len(r.json()["result"]["records"]) != min(
                    100, ROWS // 20
                ):
                    raise RuntimeError(f"datastore_search: {r.status_code} {r.text[:300]}")

            def sql(i: int) -> None:
                r = http().post("/api/3/action/datastore_search_sql", json={"sql": SQL})
                if r.status_code != 200 or len(r.json()["result"]["records"]) != 36:
                    raise RuntimeError(f"datastore_search_sql: {r.status_code} {r.text[:300]}")

            search(0)
            sql(0)  # warm
            times, rps = _load(search)
            out |= {"opendata.search_p50_ms": _pct(times, 50), "opendata.search_p99_ms": _pct(times, 99),
                    "opendata.search_rps": rps}  # fmt: skip
            times, rps = _load(sql)
            out |= {"opendata.sql_p50_ms": _pct(times, 50), "opendata.sql_p99_ms": _pct(times, 99),
                    "opendata.sql_rps": rps}  # fmt: skip

        engine = duckdb.connect()
        direct = SQL.replace(f'"{NAME}"', f"read_parquet('{table_dir}/*.parquet')")

        def baseline(i: int) -> None:
            cursor = engine.cursor()
            try:
                if len(cursor.execute(direct).fetchall()) != 36:
                    raise RuntimeError("the baseline query returned another answer")
            finally:
                cursor.close()

        baseline(0)
        times, rps = _load(baseline)
        out |= {"opendata.duckdb_sql_p50_ms": _pct(times, 50),
                "opendata.duckdb_sql_p99_ms": _pct(times, 99), "opendata.duckdb_sql_rps": rps}  # fmt: skip
        out["opendata.sql_vs_duckdb_ratio"] = (
            out["opendata.sql_p50_ms"] / out["opendata.duckdb_sql_p50_ms"]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return out
