"""Entity resolution (一人一档) on a synthetic population with planted hard noise and known truth.

Five department sources (`minyun.subjects.synth`: homophones and typos in names, wrong
check digits, transposed digits, swapped dates, duplicates within a source, missing fields,
moves and new phones, and one source with no identity number) are loaded into the lake
through ingest, then resolved end to end in a child process (read through access plans,
features, model training, Splink prediction and clustering, stable ids written back):

- `subjects.f1`, `subjects.precision`, `subjects.recall`: pairwise, against the truth;
  target F1 ≥ 0.995.
- `subjects.persons_1m_s`: seconds of the end-to-end run, scaled to 1 million persons
  (about 2.2 million rows); target < 120 s on 2 cores. Its baseline, measured in the same
  run on the same rows: `subjects.bare_splink_1m_s`, a plain Splink dedupe as its tutorials
  write one (Jaro-Winkler name, Levenshtein identity number, exact birth date and phone, two
  blocking rules, u sampling and EM), scaled the same way; `subjects.vs_bare_splink` is
  their ratio (the issue's reference: about 1 minute for 1 million persons).
- `subjects.peak_rss_gib`: the child's peak RSS; target < 4 GiB.
- `subjects.spark_same_clusters`: 1.0 when Spark gives the same clusters as DuckDB on a
  small slice of the same input (MINYUN_BENCH_SPARK_PERSONS, default 300), else 0.0.
- `subjects.enterprise_f1`, `subjects.enterprise_precision`, `subjects.enterprise_recall`:
  pairwise, against the truth, of the enterprises (一企一档) resolved end to end the same way
  in a second child: five sources (`synth.ENTERPRISE_SOURCES`: 有限公司/有限责任公司 and
  the city dropped or in brackets, homophones and typos in trade names, wrong GB 32100
  check characters, transposed code characters, moves, addresses without their city, new
  legal representatives, duplicates, one source without a credit code);
  `subjects.enterprise_s` its seconds (not scaled).

MINYUN_BENCH_PERSONS sets the population (default 1 million), MINYUN_BENCH_ENTERPRISES the
enterprises (default a tenth of it, at least 1,000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# Read and removed here: Settings refuses MINYUN_ variables it does not know.
PERSONS = int(os.environ.pop("MINYUN_BENCH_PERSONS", "1000000"))
ENTERPRISES = int(os.environ.pop("MINYUN_BENCH_ENTERPRISES", str(max(PERSONS // 10, 1000))))
SPARK_PERSONS = int(os.environ.pop("MINYUN_BENCH_SPARK_PERSONS", "300"))

CHILD = """
import json, logging, resource, sys, time
logging.getLogger("splink").setLevel(logging.WARNING)
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.subjects import service

node = Platform.open(load_settings(var_dir=sys.argv[1]), run_jobs_here=False)
started = time.perf_counter()
with unit_of_work(node.factory) as session:
    run = service.resolve(session, node.lake, Principal.system(), kind=sys.argv[2])
    stats = dict(run.stats)
seconds = time.perf_counter() - started
node.close()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak": peak, "stats": stats}))
"""


def _load(var: Path, work: Path) -> tuple[pa.Table, pa.Table]:
    """The sources as resources of their departments, loaded through ingest; the truths
    (persons, enterprises)."""
    from minyun.core.config import load_settings
    from minyun.core.platform import Platform
    from minyun.core.uow import unit_of_work
    from minyun.orgs import service as orgs
    from minyun.subjects.synth import (
        ENTERPRISE_SOURCES,
        SOURCES,
        enterprise_schema,
        enterprise_sources,
        person_schema,
        person_sources,
    )

    tables, truth = person_sources(PERSONS)
    firms, firm_truth = enterprise_sources(ENTERPRISES)
    node = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    node.migrate()
    try:
        with unit_of_work(node.factory) as session:
            orgs.load_divisions(session, orgs.packaged_divisions())
        for i, source in enumerate(SOURCES):
            _load_source(node, work, i, source, person_schema(source), tables[source.code])
        for i, firm in enumerate(ENTERPRISE_SOURCES, start=len(SOURCES)):
            _load_source(node, work, i, firm, enterprise_schema(firm), firms[firm.code])
    finally:
        node.close()
    return truth, firm_truth


def _load_source(
    node: Any, work: Path, i: int, source: Any, descriptor: dict[str, object], table: pa.Table
) -> None:
    from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus
    from minyun.core import jobs
    from minyun.core.security import Principal, Role
    from minyun.core.uow import unit_of_work
    from minyun.ingest import service as ingest
    from minyun.orgs import service as orgs

    path = work / f"{source.code}.csv"
    pacsv.write_csv(table, path)
    with unit_of_work(node.factory) as session:
        org = orgs.create_organization(
            session, Principal.system(), code=f"bench-{i}", name=source.department,
            uscc=_uscc(i), division_code="350000",
        )  # fmt: skip
        resource = Resource(
            code=source.code, name=source.title, provider_id=org.id,
            current_schema_version="1.0", status=ResourceStatus.PUBLISHED,
        )  # fmt: skip
        session.add(resource)
        session.flush()
        session.add(
            ResourceSchema(resource_id=resource.id, version="1.0", descriptor=descriptor,
                           change="initial", created_by="bench")
        )  # fmt: skip
        steward = Principal(kind="user", name="bench", organization_id=org.id,
                            roles=frozenset({Role.STEWARD}))  # fmt: skip
        job = ingest.submit_load(session, steward, source.code, str(path),
                                 settings=node.settings)  # fmt: skip
        job_id = job.id
    done = jobs.run(node.factory, job_id)
    if done.state != "succeeded":
        raise RuntimeError(f"load of {source.code} failed: {done.error}")


def _uscc(i: int) -> str:
    from minyun.core import identifiers

    return identifiers.make_uscc("1", "1", "350000", f"{90000000 + i:08d}")


def _links(var: Path, kind: str) -> pa.Table:
    from minyun.core.config import load_settings
    from minyun.core.platform import Platform
    from minyun.core.security import Principal
    from minyun.core.uow import unit_of_work
    from minyun.subjects import service

    node = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    try:
        with unit_of_work(node.factory) as session:
            return service.links_table(session, Principal.system(), kind=kind)
    finally:
        node.close()


def _uid(resource: pa.ChunkedArray, key: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(resource, key, "|")


def _records(tables: dict[str, pa.Table]) -> pa.Table:
    """The sources as one record table for the linkage (the bare baseline and Spark)."""
    columns = ("ric", "name", "sex", "birth_date", "phone", "address")
    parts = []
    for code, table in tables.items():
        out = {"uid": _uid(pa.chunked_array([[code] * table.num_rows]), table["id"])}
        for c in columns:
            out[c] = (
                pc.cast(table[c], pa.string())
                if c in table.column_names
                else pa.nulls(table.num_rows, pa.string())
            )
        parts.append(pa.table(out))
    return pa.concat_tables(parts)


def _bare_splink_seconds(records: pa.Table) -> float:
    """A plain Splink dedupe of the same rows as its tutorials write one: Jaro-Winkler on the
    name, Levenshtein on the identity number, exact birth date and phone, two blocking rules,
    u by random sampling and m by EM; no pinyin, no swaps, no reads or writes around it."""
    import duckdb
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on
    from splink import comparison_library as cl

    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="uid",
        comparisons=[
            cl.JaroWinklerAtThresholds("name", [0.9, 0.8]),
            cl.LevenshteinAtThresholds("ric", [1, 2]),
            cl.ExactMatch("birth_date"),
            cl.ExactMatch("phone"),
        ],
        blocking_rules_to_generate_predictions=[block_on("ric"), block_on("name", "birth_date")],
    )
    started = time.perf_counter()
    con = duckdb.connect()
    con.register("records", records)
    linker = Linker("records", settings, DuckDBAPI(connection=con))
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("ric"))
    predictions = linker.inference.predict(threshold_match_probability=0.9)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, 0.95)
    clusters.as_duckdbpyrelation().aggregate("count(*)").fetchall()
    con.close()
    return time.perf_counter() - started


def _spark_same_clusters() -> float:
    from minyun.subjects import linkage
    from minyun.subjects.synth import person_sources

    tables, _ = person_sources(SPARK_PERSONS, seed=11)
    frame = linkage.features(_records(tables), "person")
    model = linkage.train(frame, "person")

    def partition(table: pa.Table) -> set[frozenset[str]]:
        groups: dict[object, set[str]] = {}
        for uid, cluster in zip(
            table["uid"].to_pylist(), table["cluster_id"].to_pylist(), strict=True
        ):
            groups.setdefault(cluster, set()).add(uid)
        return {frozenset(g) for g in groups.values()}

    duck = linkage.pairwise_scores(frame, model, engine="duckdb").clusters
    spark = linkage.pairwise_scores(frame, model, engine="spark").clusters
    return 1.0 if partition(duck) == partition(spark) else 0.0


def run() -> dict[str, float]:
    import logging

    logging.getLogger("splink").setLevel(logging.WARNING)
    from minyun.subjects.synth import person_sources

    with tempfile.TemporaryDirectory(prefix="bench-subjects-") as tmp:
        work = Path(tmp)
        var = work / "var"
        truth, firm_truth = _load(var, work)
        result = _resolve(var, "person")
        print(f"  resolve steps (s): {result['stats'].get('seconds')}", flush=True)
        links = _links(var, "person")
        firm_result = _resolve(var, "enterprise")
        print(f"  enterprise steps (s): {firm_result['stats'].get('seconds')}", flush=True)
        firm_links = _links(var, "enterprise")
    metrics = _metrics(links, truth, "person_id")
    firm_metrics = _metrics(firm_links, firm_truth, "enterprise_id")
    tables, _ = person_sources(PERSONS)
    bare = _bare_splink_seconds(_records(tables))
    scale = 1_000_000 / PERSONS
    ours = result["seconds"] * scale
    return {
        "subjects.f1": round(metrics["f1"], 5),
        "subjects.precision": round(metrics["precision"], 5),
        "subjects.recall": round(metrics["recall"], 5),
        "subjects.persons_1m_s": round(ours, 2),
        "subjects.bare_splink_1m_s": round(bare * scale, 2),
        "subjects.vs_bare_splink": round(ours / (bare * scale), 3),
        "subjects.peak_rss_gib": round(result["peak"] / 2**30, 3),
        "subjects.spark_same_clusters": _spark_same_clusters(),
        "subjects.enterprise_f1": round(firm_metrics["f1"], 5),
        "subjects.enterprise_precision": round(firm_metrics["precision"], 5),
        "subjects.enterprise_recall": round(firm_metrics["recall"], 5),
        "subjects.enterprise_s": round(firm_result["seconds"], 2),
    }


def _resolve(var: Path, kind: str) -> dict[str, Any]:
    """One resolution run of `kind` in a child process: its seconds, peak RSS and stats."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(var), kind], capture_output=True, text=True, check=False
    )
    if child.returncode != 0:
        raise RuntimeError(child.stderr[-4000:])
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def _metrics(links: pa.Table, truth: pa.Table, who: str) -> dict[str, float]:
    from minyun.subjects import linkage

    predicted = pa.table(
        {"uid": _uid(links["resource"], links["row_key"]), "cluster_id": links["subject_id"]}
    )
    expected = pa.table({"uid": _uid(truth["resource"], truth["row_key"]), "true_id": truth[who]})
    return linkage.pairwise_metrics(predicted, expected)
