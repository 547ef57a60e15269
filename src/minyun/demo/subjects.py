"""The demo's files per person and per enterprise (一人一档 / 一企一档, issue 16).

After its resources (and the licences' rows of the demo citizen and enterprise) are loaded,
the demo runs the same resolution as `minyun subjects resolve`, persons then enterprises.

The demo's resources are a few hundred rows each drawn from the same sample, most of them
carrying only an identity number: too narrow for the unsupervised training (EM finds no pair
with the same name and birth date in two resources). So, when the node has no model yet,
the demo trains each kind's model on the synthetic population with planted noise and known
truth (`subjects.synth`, the one the tests measure the model on) and stores it as the node's
model; `resolve` then uses it like any stored model (until `--retrain`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from minyun.core import jobs
from minyun.core.lake import Lake
from minyun.core.security import Principal

SYSTEM = Principal.system(on_behalf_of="demo")
LABEL = {"person": "一人一档", "enterprise": "一企一档"}
TRAIN_SUBJECTS = {"person": 300, "enterprise": 400}  # of the synthetic population


def training_records(kind: str, n: int, *, seed: int) -> pa.Table:
    """The synthetic sources' rows as records (`uid` and the kind's linking columns)."""
    from minyun.subjects import synth
    from minyun.subjects.service import COLUMNS

    if kind == "person":
        tables, _ = synth.person_sources(n, seed=seed)
    else:
        tables, _ = synth.enterprise_sources(n, seed=seed)
    parts = []
    for code, table in tables.items():
        out = {
            "uid": pc.binary_join_element_wise(pa.array([code] * table.num_rows), table["id"], "|")
        }
        for c in COLUMNS[kind]:
            out[c] = table[c] if c in table.column_names else pa.nulls(table.num_rows, pa.string())
        parts.append(pa.table(out).cast(pa.schema([(k, pa.string()) for k in out])))
    return pa.concat_tables(parts)


def ensure_model(ctx: jobs.JobContext, kind: str, *, seed: int) -> bool:
    """Train and store the kind's model on the synthetic population, unless the node has one."""
    from minyun.subjects import linkage
    from minyun.subjects import service as subjects
    from minyun.subjects.models import SubjectModel

    with ctx.factory() as session:
        if subjects.current_model(session, kind) is not None:
            return False
    records = training_records(kind, TRAIN_SUBJECTS[kind], seed=seed)
    model = linkage.train(linkage.features(records, kind), kind)  # type: ignore[arg-type]
    with ctx.factory.begin() as session:
        session.add(
            SubjectModel(kind=kind, settings=model.settings_json, trained_on=records.num_rows)
        )
    return True


def resolve(ctx: jobs.JobContext, *, seed: int) -> dict[str, Any]:
    """Resolve the demo's persons, then its enterprises; each kind's counts and seconds."""
    from minyun.subjects import service as subjects

    logging.getLogger("splink").setLevel(logging.WARNING)
    lake = Lake(ctx.params["lake_uri"])
    out: dict[str, Any] = {}
    for kind, label in LABEL.items():

        def progress(step: str, done: int, total: int, label: str = label) -> None:
            # Shown, not recorded: the run's transaction holds the (SQLite) write lock that
            # recording the job's progress would wait for.
            ctx.check()
            if ctx.on_progress is not None:
                ctx.on_progress(2, None, f"{label} {step}: {done} / {total}")

        started = time.perf_counter()
        ctx.progress(2, None, f"{label}: model")
        trained = ensure_model(ctx, kind, seed=seed)
        ctx.progress(2, None, f"{label}: resolving {kind}s")
        with ctx.factory.begin() as session:
            run = subjects.resolve(session, lake, SYSTEM, kind=kind, progress=progress)
            stats = dict(run.stats)
        out[kind] = {
            **{k: stats.get(k, 0) for k in ("rows", "resources", "subjects")},
            "trained": trained,
            "seconds": round(time.perf_counter() - started, 1),
        }
        ctx.progress(
            2, None, f"{label}: {out[kind]['subjects']:,} subjects from {out[kind]['rows']:,} "
            f"rows of {out[kind]['resources']} resources ({out[kind]['seconds']} s)",
        )  # fmt: skip
    return out
