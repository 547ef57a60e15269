"""Resources with schemas made straight with the ORM, and a load that runs to its end."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import select

from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus
from minyun.core import identifiers, jobs
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.core.uow import unit_of_work
from minyun.ingest import service
from minyun.ingest.models import LoadMode, Version
from tests.factories import make_org

_n = itertools.count(1)

PERSON_SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "id", "type": "integer", "constraints": {"required": True}},
        {"name": "ric", "type": "string", "format": "cn-ric", "sensitivity": "sensitive",
         "mask": "partial", "constraints": {"required": True, "unique": True}},
        {"name": "name", "type": "string", "constraints": {"required": True, "maxLength": 10}},
        {"name": "sex", "type": "string", "constraints": {"enum": ["M", "F"]}},
        {"name": "birth", "type": "date", "constraints": {"minimum": "1900-01-01"}},
        {"name": "county", "type": "string", "codelist": "GB/T 2260"},
        {"name": "phone", "type": "string", "constraints": {"pattern": "1[0-9]{10}"}},
        {"name": "score", "type": "number", "constraints": {"minimum": 0, "maximum": 100}},
        {"name": "level", "type": "string", "codelist": ["A", "B", "C"]},
        {"name": "employer", "type": "string", "format": "cn-uscc"},
        {"name": "updated", "type": "datetime"},
    ],
    "primaryKey": ["id"],
}  # fmt: skip
COLUMNS = [f["name"] for f in PERSON_SCHEMA["fields"]]


def ric(n: int) -> str:
    return identifiers.make_ric(
        "350102", __import__("datetime").date(1980, 1, 1 + n % 28), n % 1000
    )


def uscc(n: int) -> str:
    return identifiers.make_uscc("9", "1", "350100", f"{n:08d}")


def person(n: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": n, "ric": ric(n), "name": f"人{n}", "sex": "MF"[n % 2], "birth": "1980-01-02",
        "county": "350102", "phone": f"138{n:08d}", "score": n % 100, "level": "ABC"[n % 3],
        "employer": uscc(n), "updated": f"2024-01-{1 + n % 28:02d} 08:00:00",
    }  # fmt: skip
    row.update(over)
    return row


def write_csv(path: Path, rows: list[dict[str, Any]], *, encoding: str = "utf-8",
              columns: list[str] | None = None, sep: str = ",") -> Path:  # fmt: skip
    cols = columns or COLUMNS
    lines = [sep.join(cols)]
    for r in rows:
        lines.append(sep.join("" if r.get(c) is None else str(r[c]) for c in cols))
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def persons_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{c: (None if r.get(c) is None else str(r[c])) for c in COLUMNS} for r in rows]
    )


def make_resource(node: Platform, *, descriptor: dict[str, Any] | None = None,
                  threshold: float = 0.5, status: str = ResourceStatus.PUBLISHED,
                  ) -> tuple[str, Principal]:  # fmt: skip
    """A resource of a new department with a schema, and a steward of that department."""
    with unit_of_work(node.factory) as session:
        org = make_org(session)
        code = f"res-{next(_n)}-{org.id}"
        resource = Resource(code=code, name=f"测试资源{code}", provider_id=org.id,
                            reject_threshold=threshold, current_schema_version="1.0", status=status)  # fmt: skip
        session.add(resource)
        session.flush()
        session.add(ResourceSchema(resource_id=resource.id, version="1.0",
                                   descriptor=descriptor or PERSON_SCHEMA, change="initial",
                                   created_by="test"))  # fmt: skip
        steward = Principal(kind="user", name=f"steward-{code}", organization_id=org.id,
                            roles=frozenset({Role.STEWARD}))  # fmt: skip
    return code, steward


def load(node: Platform, actor: Principal, code: str, source: str | Path,
         mode: LoadMode = LoadMode.FULL, **kw: Any) -> jobs.Job:  # fmt: skip
    """Submit a load and run its job here to its end, then the quality report it queued."""
    with unit_of_work(node.factory) as session:
        job = service.submit_load(session, actor, code, str(source), mode=mode,
                                  settings=node.settings, **kw)  # fmt: skip
        job_id = job.id
    done = jobs.run(node.factory, job_id)
    run_quality_jobs(node)
    return done


def run_quality_jobs(node: Platform) -> list[jobs.Job]:
    """Run the queued quality reports (this node runs no jobs by itself)."""
    with node.factory() as session:
        queued = session.scalars(
            select(jobs.Job.id).where(
                jobs.Job.kind == service.QUALITY_KIND, jobs.Job.state == jobs.JobState.QUEUED
            )
        ).all()
    return [jobs.run(node.factory, job_id) for job_id in queued]


def versions(node: Platform, code: str) -> list[Version]:
    with node.factory() as session:
        resource = service.get_resource(session, code)
        return list(
            session.scalars(
                select(Version).where(Version.resource_id == resource.id).order_by(Version.id)
            )
        )


def rejects(node: Platform, actor: Principal, code: str, **kw: Any) -> list[dict[str, Any]]:
    """The refused rows of a resource as `actor` may read them."""
    with unit_of_work(node.factory) as session:
        return service.read_rejects(session, node.lake, actor, code, **kw).to_pylist()


def rows(node: Platform, code: str, **kw: Any) -> pa.Table:
    with unit_of_work(node.factory) as session:
        return service.read_rows(session, node.lake, Principal.system(), code, **kw)
