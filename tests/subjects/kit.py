"""The synthetic sources as real resources: one department each, loaded through ingest."""

from __future__ import annotations

import functools
import itertools
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus, SharingType
from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.core.uow import unit_of_work
from minyun.subjects.models import SubjectModel
from minyun.subjects.synth import (
    ENTERPRISE_SOURCES,
    SOURCES,
    EnterpriseSource,
    Source,
    enterprise_schema,
    enterprise_sources,
    person_schema,
    person_sources,
)
from tests.factories import make_org
from tests.ingest.loadkit import load

_n = itertools.count(1)


def make_source(
    node: Platform, source: Source | EnterpriseSource, descriptor: dict[str, Any] | None = None
) -> tuple[str, Principal]:
    """The source's resource (published, conditionally shared) and a steward of its department."""
    if descriptor is None:
        descriptor = (
            person_schema(source) if isinstance(source, Source) else enterprise_schema(source)
        )
    with unit_of_work(node.factory) as session:
        org = make_org(session, name=f"{source.department}{next(_n)}")
        resource = Resource(
            code=source.code, name=source.title, provider_id=org.id, reject_threshold=0.5,
            current_schema_version="1.0", status=ResourceStatus.PUBLISHED,
            sharing_type=SharingType.CONDITIONAL,
        )  # fmt: skip
        session.add(resource)
        session.flush()
        session.add(
            ResourceSchema(resource_id=resource.id, version="1.0", descriptor=descriptor,
                           change="initial", created_by="test")
        )  # fmt: skip
        steward = Principal(
            kind="user", name=f"steward-{source.code}", organization_id=org.id,
            roles=frozenset({Role.STEWARD}),
        )  # fmt: skip
    return source.code, steward


@functools.cache
def _trained_person_model() -> dict[str, Any]:
    from minyun.subjects import linkage
    from tests.subjects.test_linkage import _records

    records, _ = _records(300, seed=21)
    return linkage.train(linkage.features(records, "person"), "person").settings_json


@functools.cache
def _trained_enterprise_model() -> dict[str, Any]:
    from minyun.subjects import linkage
    from tests.subjects.test_enterprises import _records

    tables, _ = enterprise_sources(400, seed=21)
    return linkage.train(
        linkage.features(_records(tables), "enterprise"), "enterprise"
    ).settings_json


def seed_model(node: Platform, kind: str = "person") -> None:
    """A model trained once per test process, stored as the node's (saves training)."""
    trained = _trained_person_model() if kind == "person" else _trained_enterprise_model()
    with unit_of_work(node.factory) as session:
        session.add(SubjectModel(kind=kind, settings=trained, trained_on=0))


def finished(node: Platform, job: jobs.Job, timeout: float = 120) -> jobs.Job:
    """The job once it has finished (a node that runs jobs itself runs them in a thread)."""
    deadline = time.monotonic() + timeout
    while job.state not in jobs.FINISHED and time.monotonic() < deadline:
        time.sleep(0.1)
        with node.factory() as session:
            job = jobs.get_job(session, job.id)
    return job


def write_csv(table: pa.Table, path: Path) -> Path:
    pacsv.write_csv(table, path)
    return path


def load_population(
    node: Platform, work: Path, n: int, *, seed: int = 7, model: bool = True
) -> tuple[dict[str, pa.Table], pa.Table, dict[str, Principal]]:
    """The sources loaded as resources; their tables, the truth, and each one's steward.
    With `model`, the node gets a trained model (`seed_model`), so runs do not train."""
    if model:
        seed_model(node)
    tables, truth = person_sources(n, seed=seed)
    stewards = {}
    for source in SOURCES:
        code, steward = make_source(node, source)
        stewards[code] = steward
        job = finished(
            node, load(node, steward, code, write_csv(tables[code], work / f"{code}.csv"))
        )
        assert job.state == "succeeded", (job.state, job.error, job.result)
    return tables, truth, stewards


def load_enterprises(
    node: Platform, work: Path, n: int, *, seed: int = 7, model: bool = True
) -> tuple[dict[str, pa.Table], pa.Table, dict[str, Principal]]:
    """The enterprise sources loaded as resources; their tables, the truth, each one's steward.
    With `model`, the node gets a trained enterprise model, so runs do not train."""
    if model:
        seed_model(node, "enterprise")
    tables, truth = enterprise_sources(n, seed=seed)
    stewards = {}
    for source in ENTERPRISE_SOURCES:
        code, steward = make_source(node, source)
        stewards[code] = steward
        job = finished(
            node, load(node, steward, code, write_csv(tables[code], work / f"{code}.csv"))
        )
        assert job.state == "succeeded", (job.state, job.error, job.result)
    return tables, truth, stewards
