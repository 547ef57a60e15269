"""Validated loads into the lake against DuckDB's own CSV → Parquet copy of the same file.

A person table (the demo population plus extra columns, 15 in all, identity numbers
checked) is written as CSV, then:

- `lake.load_vs_duckdb_ratio`: our load's rows/s (fetch, hash, read, validate every rule,
  check the keys, write one Delta version, record it) ÷ the rows/s of DuckDB's
  `COPY (SELECT * FROM read_csv(...)) TO '...parquet'`; each side the better of two runs,
  taken in turn (this machine's speed drifts by a quarter within minutes); target ≥ 0.5.
- `lake.quality_s`: seconds of the quality report the version's commit queues (a job of
  its own since the load no longer waits for it); the better of the two.
- `lake.load_peak_rss_gib`: peak RSS of the load, run in a child process (read before the
  quality job runs there); the larger of the two; target < 3 GiB.
- `lake.upsert_1m_s`: seconds to upsert 1 million changed rows (a tenth of the table when
  MINYUN_BENCH_ROWS shrinks it) into that table.

MINYUN_BENCH_ROWS sets the table size (default 10 million).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from minyun.catalog.models import Resource, ResourceSchema
from minyun.core import identifiers
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.demo.population import iter_persons
from minyun.orgs import service as orgs

# Read and removed here: Settings refuses MINYUN_ variables it does not know.
ROWS = int(os.environ.pop("MINYUN_BENCH_ROWS", "10000000"))
CODE = "bench-persons"
SCHEMA = {
    "fields": [
        {"name": "person_id", "type": "integer", "constraints": {"required": True}},
        {"name": "ric", "type": "string", "format": "cn-ric", "sensitivity": "sensitive",
         "constraints": {"required": True}},
        {"name": "name", "type": "string", "constraints": {"required": True}},
        {"name": "sex", "type": "string", "constraints": {"enum": ["M", "F"]}},
        {"name": "birth_date", "type": "date"},
        {"name": "county_code", "type": "string", "constraints": {"pattern": "35[0-9]{4}"}},
        {"name": "city_code", "type": "string"},
        {"name": "phone", "type": "string", "constraints": {"pattern": "1[0-9]{10}"}},
        {"name": "address", "type": "string"},
        {"name": "email", "type": "string"},
        {"name": "education", "type": "string",
         "constraints": {"enum": ["primary", "secondary", "bachelor", "master", "doctor"]}},
        {"name": "married", "type": "boolean"},
        {"name": "income", "type": "number", "constraints": {"minimum": 0}},
        {"name": "height_cm", "type": "integer", "constraints": {"minimum": 50, "maximum": 250}},
        {"name": "registered_at", "type": "datetime"},
    ],
    "primaryKey": ["person_id"],
}  # fmt: skip

CHILD = """
import json, resource, sys, time
from sqlalchemy import select
import minyun.handlers
from minyun.core import jobs
from minyun.core import identifiers
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.ingest import service
var_dir, code, source, mode = sys.argv[1:5]
node = Platform.open(load_settings(var_dir=var_dir), run_jobs_here=False)
with unit_of_work(node.factory) as s:
    job_id = service.submit_load(s, Principal.system(), code, source, mode=mode,
                                 settings=node.settings).id
started = time.perf_counter()
job = jobs.run(node.factory, job_id)
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the load's, before quality
started = time.perf_counter()
with node.factory() as s:
    queued = s.scalars(select(jobs.Job.id).where(jobs.Job.kind == service.QUALITY_KIND,
                                                 jobs.Job.state == jobs.JobState.QUEUED)).all()
assert all(jobs.run(node.factory, q).state == jobs.JobState.SUCCEEDED for q in queued)
print("REPORT " + json.dumps({"seconds": seconds, "state": job.state, "error": job.error,
                  "result": job.result, "quality_seconds": time.perf_counter() - started,
                  "peak_kib": peak_kib}))
"""


def write_persons_csv(path: Path, n: int, *, start: int = 0, changed: bool = False) -> None:
    """Persons start..n-1 with six extra columns, as CSV (vectorised, batch by batch)."""
    writer: pacsv.CSVWriter | None = None
    for batch in iter_persons(n, seed=7, batch_size=500_000, start=start):
        idx = batch["person_id"].to_numpy()
        k = len(idx)
        rng = np.random.default_rng(int(idx[0]) + (1 if changed else 0))
        extra = {
            "email": pc.binary_join_element_wise(pa.array(np.char.mod("u%d", idx)), "example.cn", "@"),
            "education": pa.array(np.array(["primary", "secondary", "bachelor", "master", "doctor"])[rng.integers(0, 5, k)]),
            "married": pa.array(rng.integers(0, 2, k).astype(bool)),
            "income": pa.array(np.round(rng.random(k) * 200_000, 2)),
            "height_cm": pa.array(rng.integers(140, 200, k)),
            "registered_at": pa.array((1_600_000_000 + rng.integers(0, 10**8, k)) * 1_000_000, pa.timestamp("us")),
        }  # fmt: skip
        if changed:
            batch = batch.set_column(
                7,
                "phone",
                pc.binary_join_element_wise("139", pc.utf8_slice_codeunits(batch["phone"], 3), ""),
            )
        for name, arr in extra.items():
            batch = batch.append_column(name, arr)
        if writer is None:
            writer = pacsv.CSVWriter(str(path), batch.schema)
        writer.write_batch(batch)
    assert writer is not None
    writer.close()


def _setup(var: Path) -> None:
    node = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    node.migrate()
    with node.factory.begin() as s:
        orgs.load_divisions(s, orgs.packaged_divisions())
        org = orgs.create_organization(
            s, Principal.system(), code="bench-police", name="基准测试公安厅",
            uscc=identifiers.make_uscc("1", "1", "350000", "00000001"), division_code="350000",
        )  # fmt: skip
        res = Resource(code=CODE, name="人口基准", provider_id=org.id, current_schema_version="1.0")
        s.add(res)
        s.flush()
        s.add(ResourceSchema(resource_id=res.id, version="1.0", descriptor=SCHEMA,
                             change="initial", created_by="bench"))  # fmt: skip
    node.close()


def _child_load(var: Path, source: Path, mode: str) -> tuple[float, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(var), CODE, str(source), mode],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    # DuckDB may draw a progress bar on the same stdout: take the text after the marker.
    line = next(x for x in out.stdout.splitlines() if "REPORT " in x)
    report = json.loads(line.split("REPORT ", 1)[1])
    assert report["state"] == "succeeded", report["error"]
    return float(report["seconds"]), float(report["quality_seconds"]), int(report["peak_kib"])


def _duck_copy(csv_path: Path, out: Path) -> float:
    """Seconds of DuckDB's own CSV → Parquet copy of the file (the baseline)."""
    started = time.perf_counter()
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{csv_path}')) TO '{out}'")
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds


def run() -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="minyun-bench-lake-"))
    try:
        csv_path = work / "persons.csv"
        write_persons_csv(csv_path, ROWS)
        # Both sides the better of two runs, taken in turn, so a slow minute of the
        # machine falls on both; each load of ours goes into a fresh lake (the same input
        # twice into one lake is a no-op).
        duck_runs, our_runs = [], []
        for n in range(2):
            duck_runs.append(_duck_copy(csv_path, work / "duck.parquet"))
            var = work / f"var{n}"
            _setup(var)
            our_runs.append(_child_load(var, csv_path, "full"))
        duck_s = min(duck_runs)
        ours_s = min(seconds for seconds, _, _ in our_runs)
        quality_s = min(quality for _, quality, _ in our_runs)
        peak_kib = max(peak for _, _, peak in our_runs)
        changed = min(1_000_000, max(ROWS // 10, 1))
        upsert_path = work / "changed.csv"
        write_persons_csv(upsert_path, changed, changed=True)
        upsert_s, _, _ = _child_load(work / "var0", upsert_path, "upsert")
        per_million = upsert_s * 1_000_000 / changed
        return {
            "lake.rows": float(ROWS),
            "lake.duckdb_copy_rows_per_s": round(ROWS / duck_s, 1),
            "lake.load_rows_per_s": round(ROWS / ours_s, 1),
            "lake.load_vs_duckdb_ratio": round(duck_s / ours_s, 3),
            "lake.load_peak_rss_gib": round(peak_kib / (1 << 20), 3),
            "lake.quality_s": round(quality_s, 2),
            "lake.upsert_1m_s": round(per_million, 2),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
