"""Governed key lookups over HTTP against a plain lookup of the same rows (PostgreSQL, 2 workers).

Setup: a throwaway PostgreSQL database on 127.0.0.1 (dropped at the end), a resource of
MINYUN_BENCH_ROWS rows (default 1 million) keyed by `id`, with an identity number and a
phone number whose sensitivity (`secret`) is above the reader's clearance and which carry
a mask, its serving index refreshed (`exchange.index_refresh_s`). The reader is another
department's API client (`resource.read`) holding a grant on it (issue 13's case): every
field, clearance `internal` (the two secret fields masked) and a row filter on the city
that every row passes (`GRANT_ROW_FILTER`), so each lookup tests the filter and no answer
is a 404. Its token is fetched over HTTP.

Two servers run at once, each uvicorn with 2 worker processes and the same options (no
access log), on 127.0.0.1:
- the product, `minyun.web.asgi:app` (the entry point of `minyun serve --workers 2`),
  opened from MINYUN_ environment settings on that database: every lookup goes through
  token, access plan, serving index, masks and audit (`LOOKUP_PATH`);
- the plain baseline, `benchmarks.plain_lookup:app`: the same lookup from the same
  `serving_rows` table with asyncpg, no token, plan, masks or audit.

The index is read into PostgreSQL's cache once (pg_prewarm) before the servers start.
Before any load, one key is read from both and compared (`exchange.masked_fields_in_answer`
counts the fields whose value the governed answer does not give in clear).

Load, from processes of their own, one at a time, so the generator leaves the server the
other core:
- saturation: Debian's `wrk`, 1 thread, 32 keep-alive connections, a Lua script picking
  random keys among all rows and sending the bearer token; a short warm-up of each server,
  then WRK_ROUNDS runs of WRK_SECONDS on each, alternating (the machine's other load
  weighs on both alike). `exchange.lookup_rps` (governed) and `exchange.lookup_plain_rps`,
  their ratio `exchange.governance_overhead_ratio`; any error or non-2xx answer fails the
  run. `exchange.audit_records_per_lookup` counts the audit records the measured runs added.
- latency: `benchmarks/openloop.py`, an open-loop generator (wrk is closed-loop, see its
  docstring) offering a constant 500 lookups/s for `OPEN_SECONDS` after a warm-up; p50
  and p99 measured from each request's scheduled send time.

The machine is shared: `exchange.host_load_1m` is the load average when the run began.

Then the batch delivery figures (`exchange.batch_rows_per_s`, `exchange.batch_copy_ratio`):
see `benchmarks/exchange_batch.py` (MINYUN_BENCH_BATCH_ROWS changed rows, default 1 million).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake
from sqlalchemy.orm import Session

from benchmarks import events_fanout
from minyun.accounts import service as accounts
from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus
from minyun.cli import WORKER_HEALTHCHECK_SECONDS
from minyun.core import clock, identifiers
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.exchange import service as exchange
from minyun.orgs import service as orgs
from minyun.query.service import refresh_index

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ROWS = int(os.environ.get("MINYUN_BENCH_ROWS", "1000000"))
CODE = "bench-exchange"
# The consumer's grant: its row filter is tested on every row looked up, and every row of
# the synthetic register passes it (its cities are all among these).
GRANT_ROW_FILTER = (
    "city in ('福州市', '厦门市', '泉州市', '漳州市', '莆田市', '三明市', '南平市') and id >= 1"
)
# The governed lookup: until the key route lands, the row API's whole-key filter (which
# is answered from the same serving index). One constant to switch, with
# `plain_lookup.body` if the key route answers in another shape.
LOOKUP_PATH = "/api/v1/resources/{code}/rows/{key}"
PLAIN_PATH = "/api/v1/resources/{code}/rows/{key}"
WORKERS = 2
WRK_CONNECTIONS = 32
WRK_WARMUP_SECONDS = 2
WRK_SECONDS = 5  # per run; WRK_ROUNDS runs of each server, alternating
WRK_ROUNDS = 2
OPEN_RATE = 500
OPEN_WARMUP_SECONDS = 2
OPEN_SECONDS = 10
OPEN_CONNECTIONS = 32
START_SECONDS = 90
ROOT = Path(__file__).resolve().parent.parent
SYSTEM = Principal.system()


# --- data --------------------------------------------------------------------------------

_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_SURNAMES = np.array(list("林陈黄张吴王郑李刘杨许蔡"))
_GIVEN = np.array(["建华", "秀英", "志强", "丽娟", "海峰", "晓燕", "国平", "美玲", "闽", "榕"])
_CITIES = np.array(["福州市", "厦门市", "泉州市", "漳州市", "莆田市", "三明市", "南平市"])
_DIVISIONS = np.array([350102, 350203, 350503, 350602, 350302, 350403, 350702], dtype=np.int64)


def synthetic_people(rows: int, *, seed: int = 20240601) -> pa.Table:
    """A register of people: key, name, identity number, phone, city, amount, date."""
    rng = np.random.default_rng(seed)
    city = rng.integers(0, len(_CITIES), rows)
    born = np.datetime64("1950-01-01") + rng.integers(0, 20000, rows).astype("timedelta64[D]")
    ymd = born.astype("datetime64[D]").astype(str)  # 'YYYY-MM-DD'
    yyyymmdd = np.char.replace(ymd, "-", "").astype(np.int64)
    first17 = (_DIVISIONS[city] * 10**8 + yyyymmdd) * 1000 + rng.integers(1, 1000, rows)
    digits = (first17[:, None] // 10 ** np.arange(16, -1, -1, dtype=np.int64)) % 10
    check = np.array(list("10X98765432"))[(digits * _WEIGHTS).sum(axis=1) % 11]
    id_number = pc.binary_join_element_wise(
        pa.array(first17).cast(pa.string()), pa.array(check), ""
    )
    phone = (13 + rng.integers(0, 7, rows)) * 10**9 + rng.integers(0, 10**9, rows)
    name = pc.binary_join_element_wise(
        pa.array(_SURNAMES[rng.integers(0, len(_SURNAMES), rows)]),
        pa.array(_GIVEN[rng.integers(0, len(_GIVEN), rows)]),
        "",
    )
    start = date(2000, 1, 1)
    days = np.datetime64(start) + rng.integers(0, 8000, rows).astype("timedelta64[D]")
    return pa.table(
        {
            "id": pa.array(np.arange(1, rows + 1, dtype=np.int64)),
            "name": name,
            "id_number": id_number,
            "phone": pa.array(phone).cast(pa.string()),
            "city": pa.array(_CITIES[city]),
            "amount": pa.array(rng.gamma(2.0, 500.0, rows).round(2)),
            "day": pa.array(days.astype("datetime64[D]"), pa.date32()),
        }
    )


def descriptor() -> dict[str, Any]:
    """The resource's Table Schema: two fields above any client's clearance, masked."""
    return {
        "fields": [
            {"name": "id", "type": "integer"},
            {"name": "name", "type": "string"},
            {"name": "id_number", "type": "string", "sensitivity": "secret", "mask": "keep(6,4)"},
            {"name": "phone", "type": "string", "sensitivity": "secret", "mask": "keep(3,4)"},
            {"name": "city", "type": "string"},
            {"name": "amount", "type": "number"},
            {"name": "day", "type": "date"},
        ],
        "primaryKey": ["id"],
    }


def setup(node: Platform, rows: int = ROWS) -> tuple[str, str, float]:
    """The provider, the resource with its index, a consumer department's client and its
    grant; (consumer client id, secret, index refresh s)."""
    with node.factory.begin() as session:
        orgs.load_divisions(session, orgs.packaged_divisions())
        org = orgs.create_organization(
            session,
            SYSTEM,
            code="bench-exchange-org",
            name="基准测试单位",
            uscc=identifiers.make_uscc("1", "1", "350100", "00000002"),
            division_code="350100",
        )
        consumer = orgs.create_organization(
            session,
            SYSTEM,
            code="bench-consumer-org",
            name="基准测试使用单位",
            uscc=identifiers.make_uscc("1", "1", "350100", "00000003"),
            division_code="350100",
        )
        new = accounts.create_client(
            session, SYSTEM, organization_id=consumer.id, name="bench", scopes=["resource.read"]
        )
        client_id, secret = new.client.client_id, new.secret
        write_deltalake(node.lake.table_uri(CODE), synthetic_people(rows))
        resource = Resource(
            code=CODE,
            name="基准 人员登记",
            provider_id=org.id,
            status=ResourceStatus.PUBLISHED,
            current_schema_version="1.0",
            lake_version=0,
        )
        session.add(resource)
        session.flush()
        session.add(
            ResourceSchema(
                resource_id=resource.id,
                version="1.0",
                descriptor=descriptor(),
                change="initial",
                created_by="bench",
            )
        )
    with node.factory.begin() as session:
        _grant(session, org.id, consumer.id)
    started = time.perf_counter()
    written = refresh_index(node.factory.begin, node.lake, CODE)  # short transactions, as the job
    refreshed = time.perf_counter() - started
    if written != rows:
        raise RuntimeError(f"the serving index holds {written} rows, not {rows}")
    return client_id, secret, refreshed


def _grant(session: Session, provider_id: int, consumer_id: int) -> None:
    """The consumer applies for every field; the provider's approver grants them with the
    row filter, at clearance `internal` (the secret fields masked)."""
    applicant = Principal(
        kind="user", name="bench-consumer", organization_id=consumer_id,
        roles=frozenset({"consumer"}), account_kind="staff",
    )  # fmt: skip
    approver = Principal(
        kind="user", name="bench-approver", organization_id=provider_id,
        roles=frozenset({"approver"}), account_kind="staff",
    )  # fmt: skip
    fields = [field["name"] for field in descriptor()["fields"]]
    application = exchange.apply(
        session, applicant, resource=CODE, purpose="核验身份", legal_basis="《条例》第十条",
        fields=fields, expires_at=clock.now() + timedelta(days=30),
    )  # fmt: skip
    exchange.approve_application(
        session, approver, application.id, row_filter=GRANT_ROW_FILTER, clearance="internal"
    )


# --- servers -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(app: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """`app` under uvicorn with WORKERS processes on 127.0.0.1; its base URL, until exit."""
    port = _free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", app),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)),
        *("--log-level", "warning", "--no-access-log"),
        # As `minyun serve --workers`: a worker still importing the app is not killed.
        *("--timeout-worker-healthcheck", str(WORKER_HEALTHCHECK_SECONDS)),
    ]
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_ready(server, base, log)
            yield base
        finally:
            _stop(server)


def _wait_ready(server: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not start in {START_SECONDS}s: {log.read_text()[-2000:]}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)  # uvicorn's supervisor stops its workers
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the group of this server alone
            server.wait(timeout=10)


def product_env(var: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINYUN_")}
    env |= {
        "MINYUN_VAR_DIR": str(var),
        "MINYUN_DATABASE_URL": database_url,
        "MINYUN_TOKEN_TTL_SECONDS": "3600",
    }
    return env


def plain_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINYUN_")}
    env["PLAIN_LOOKUP_DSN"] = database_url
    return env


# --- load --------------------------------------------------------------------------------


def split_path(template: str, code: str) -> tuple[str, str]:
    """A lookup path template as (prefix, suffix) around the key."""
    prefix, suffix = template.format(code=code, key="\0").split("\0")
    return prefix, suffix


_WRK_SCRIPT = """
local prefix, suffix, keys = {prefix}, {suffix}, {keys}
{headers}
function init(args)
  math.randomseed({seed})
end
function request()
  return wrk.format("GET", prefix .. math.random(keys) .. suffix)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_script(prefix: str, suffix: str, keys: int, headers: dict[str, str], seed: int) -> str:
    """The Lua script of a wrk run: random keys in 1..keys, the given headers."""
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    return _WRK_SCRIPT.format(
        prefix=json.dumps(prefix), suffix=json.dumps(suffix), keys=keys, headers=lines, seed=seed
    )


def run_wrk(base: str, script: Path, seconds: int) -> dict[str, float]:
    """Requests/s of one wrk run (1 thread); fails on any error or non-2xx answer."""
    command = [
        *("wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s"),
        *("-s", str(script), base),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    found = re.search(r"^RESULT ((?:\d+ ?){9})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed: {done.stdout}{done.stderr}")
    requests, duration_us, *errors, p50_us, p99_us = (int(v) for v in found.group(1).split())
    if any(errors):
        raise RuntimeError(f"wrk saw errors (connect read write status timeout): {errors}")
    return {
        "requests": requests,
        "seconds": duration_us / 1e6,
        "rps": requests / (duration_us / 1e6),
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
    }


def run_open_loop(
    base: str,
    prefix: str,
    suffix: str,
    headers: dict[str, str],
    *,
    keys: int = ROWS,
    rate: float = OPEN_RATE,
    seconds: float = OPEN_SECONDS,
    warmup_seconds: float = OPEN_WARMUP_SECONDS,
) -> dict[str, Any]:
    """Latency percentiles at a constant offered rate, from the open-loop generator's process."""
    config = {
        "port": int(base.rsplit(":", 1)[1]),
        "path_prefix": prefix,
        "path_suffix": suffix,
        "keys": keys,
        "rate": rate,
        "seconds": seconds,
        "warmup_seconds": warmup_seconds,
        "connections": OPEN_CONNECTIONS,
        "headers": headers,
        "seed": 7,
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.openloop"],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=warmup_seconds + seconds + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the open-loop generator failed: {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def _rate(runs: list[dict[str, float]]) -> float:
    return sum(r["requests"] for r in runs) / sum(r["seconds"] for r in runs)


def prewarm(database_url: str) -> None:
    """The serving index read once, so neither server meets a cold cache first."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            conn.execute("SELECT pg_prewarm('serving_rows', 'read')")
            conn.execute("SELECT pg_prewarm('pk_serving_rows')")
        except psycopg.Error:  # no pg_prewarm here: a scan fills the OS cache at least
            conn.execute("SELECT count(*) FROM serving_rows")


def _audit_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_records").fetchone()
    return int(row[0]) if row else 0


def _index_share(database_url: str) -> float:
    """The share of successful reads that the serving index answered (the fast path)."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT count(*) FILTER (WHERE detail LIKE '%; index'), count(*) FROM audit_records"
            " WHERE action = 'resource.read' AND outcome = 'success'"
        ).fetchone()
    return round(found[0] / found[1], 3) if found and found[1] else 0.0


def answered_row(body: dict[str, Any]) -> dict[str, Any] | None:
    """The one row of a lookup's answer: `{"rows": [row], …}`, `{"row": row, …}` or the row."""
    if isinstance(body.get("rows"), list):
        return body["rows"][0] if len(body["rows"]) == 1 else None
    if isinstance(body.get("row"), dict):
        return dict(body["row"])
    return body


def _compare(governed: str, plain: str, token: str, rng: random.Random) -> int:
    """Read one key from both servers; the fields the governed answer does not give in clear."""
    key = rng.randint(1, ROWS)
    answers = []
    for url, headers in ((governed, {"Authorization": f"Bearer {token}"}), (plain, {})):
        r = httpx.get(url.format(key=key), headers=headers, timeout=30)
        r.raise_for_status()
        row = answered_row(r.json())
        if row is None or row.get("id") != key:
            raise RuntimeError(f"a lookup of {key} answered {r.text[:500]}")
        answers.append(row)
    seen, stored = answers
    return sum(1 for name, value in stored.items() if seen.get(name) != value)


# --- the run -----------------------------------------------------------------------------


def _measure(
    database_url: str, governed_base: str, plain_base: str, token: str
) -> dict[str, float]:
    figures: dict[str, float] = {}
    rng = random.Random(3)
    auth = {"Authorization": f"Bearer {token}"}
    g_prefix, g_suffix = split_path(LOOKUP_PATH, CODE)
    p_prefix, p_suffix = split_path(PLAIN_PATH, CODE)
    figures["exchange.masked_fields_in_answer"] = float(
        _compare(
            governed_base + LOOKUP_PATH.format(code=CODE, key="{key}"),
            plain_base + PLAIN_PATH.format(code=CODE, key="{key}"),
            token,
            rng,
        )
    )
    scripts = Path(tempfile.mkdtemp(prefix="minyun-bench-wrk-"))
    try:
        governed_lua = scripts / "governed.lua"
        governed_lua.write_text(wrk_script(g_prefix, g_suffix, ROWS, auth, 11))
        plain_lua = scripts / "plain.lua"
        plain_lua.write_text(wrk_script(p_prefix, p_suffix, ROWS, {}, 11))

        run_wrk(governed_base, governed_lua, WRK_WARMUP_SECONDS)
        run_wrk(plain_base, plain_lua, WRK_WARMUP_SECONDS)
        # Alternate short runs, so a change in the machine's other load weighs on both.
        governed, plain, audited = [], [], 0
        for _ in range(WRK_ROUNDS):
            before = _audit_count(database_url)
            governed.append(run_wrk(governed_base, governed_lua, WRK_SECONDS))
            audited += _audit_count(database_url) - before
            plain.append(run_wrk(plain_base, plain_lua, WRK_SECONDS))
    finally:
        shutil.rmtree(scripts, ignore_errors=True)
    governed_rps, plain_rps = _rate(governed), _rate(plain)
    figures["exchange.lookup_rps"] = round(governed_rps, 1)
    figures["exchange.lookup_plain_rps"] = round(plain_rps, 1)
    figures["exchange.governance_overhead_ratio"] = round(governed_rps / plain_rps, 3)
    figures["exchange.lookup_p99_ms_saturated"] = round(max(r["p99_ms"] for r in governed), 2)
    figures["exchange.plain_p99_ms_saturated"] = round(max(r["p99_ms"] for r in plain), 2)
    requests = sum(r["requests"] for r in governed)
    figures["exchange.audit_records_per_lookup"] = round(audited / requests, 3)
    figures["exchange.lookups_from_index_share"] = _index_share(database_url)

    for name, base, prefix, suffix, headers in (
        ("lookup", governed_base, g_prefix, g_suffix, auth),
        ("plain", plain_base, p_prefix, p_suffix, {}),
    ):
        load = run_open_loop(base, prefix, suffix, headers)
        if load["ok"] != load["sent"]:
            print(f"  {name} at {OPEN_RATE}/s: {load}")
        figures[f"exchange.{name}_p50_ms_at_{OPEN_RATE}"] = load["p50_ms"]
        figures[f"exchange.{name}_p99_ms_at_{OPEN_RATE}"] = load["p99_ms"]
        figures[f"exchange.{name}_answered_rps_at_{OPEN_RATE}"] = load["answered_rps"]
        figures[f"exchange.{name}_not_ok_at_{OPEN_RATE}"] = float(load["sent"] - load["ok"])
        figures[f"exchange.{name}_send_lag_p99_ms_at_{OPEN_RATE}"] = load["send_lag_p99_ms"]
    return figures


def run() -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: `make wrk` installs Debian's")
    figures: dict[str, float] = {"exchange.host_load_1m": round(os.getloadavg()[0], 2)}
    name = f"minyun_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    var = Path(tempfile.mkdtemp(prefix="minyun-bench-exchange-"))
    try:
        database_url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
        node = Platform.open(load_settings(var_dir=var, database_url=database_url))
        try:
            node.migrate()
            client_id, secret, refreshed = setup(node)
        finally:
            node.close()
        figures["exchange.index_refresh_s"] = round(refreshed, 1)
        prewarm(database_url)
        with (
            serving("minyun.web.asgi:app", product_env(var, database_url), var / "app.log") as g,
            serving("benchmarks.plain_lookup:app", plain_env(database_url), var / "plain.log") as p,
        ):
            token = httpx.post(
                f"{g}/api/v1/oauth/token",
                data={"grant_type": "client_credentials", "scope": "resource.read"},
                auth=(client_id, secret),
                timeout=30,
            )
            token.raise_for_status()
            figures |= _measure(database_url, g, p, token.json()["access_token"])
        figures["exchange.table_rows"] = float(ROWS)
        figures |= events_fanout.run()  # exchange.events_per_s: benchmarks/events_fanout.py
        figures["exchange.host_load_1m_end"] = round(os.getloadavg()[0], 2)
    finally:
        shutil.rmtree(var, ignore_errors=True)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    # Batch delivery (its own databases; see benchmarks/exchange_batch.py).
    from benchmarks import exchange_batch

    figures |= exchange_batch.run()
    return figures
