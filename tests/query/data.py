"""Resources with lake tables for the query tests, made with the ORM and deltalake directly."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake
from sqlalchemy.orm import Session

from minyun.catalog.models import Resource, ResourceSchema, ResourceStatus
from minyun.core.lake import Lake
from minyun.core.security import Principal

CITIES = ["福州市", "厦门市", "泉州市", None]
_TYPES = {"int64": "integer", "string": "string", "date32[day]": "date", "double": "number"}


def people(n: int, *, seed: int = 1, first_id: int = 1) -> pa.Table:
    """Residents with many ties and NULLs in city and age, so paging order is tested hard."""
    rng = random.Random(seed)
    ids = list(range(first_id, first_id + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": [f"居民{i:05d}" for i in ids],
            "city": [rng.choice(CITIES) for _ in ids],
            "age": pa.array([rng.choice([None, *range(18, 30)]) for _ in ids], pa.int64()),
            "born": [date(1960, 1, 1) + timedelta(days=rng.randrange(20000)) for _ in ids],
            "score": [round(rng.random() * 100, 2) for _ in ids],
        }
    )


def add_resource(
    session: Session,
    lake: Lake,
    *,
    provider_id: int,
    code: str,
    versions: list[pa.Table],
    primary_key: list[str] | None = None,
    status: str = ResourceStatus.PUBLISHED,
) -> Resource:
    """A resource whose Delta table has one version per table given (each replaces the last)."""
    resource = Resource(
        code=code,
        name=f"人口 {code}",
        provider_id=provider_id,
        status=status,
        current_schema_version="1.0",
    )
    session.add(resource)
    session.flush()
    descriptor: dict[str, Any] = {
        "fields": [{"name": f.name, "type": _TYPES[str(f.type)]} for f in versions[0].schema]
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
    for table in versions:
        write_deltalake(lake.table_uri(code), table, mode="overwrite")
    resource.lake_version = len(versions) - 1
    session.flush()
    return resource


def steward(organization_id: int | None, name: str = "steward") -> Principal:
    return Principal(
        kind="user", name=name, organization_id=organization_id, roles=frozenset({"steward"})
    )


ADMIN = Principal(kind="user", name="admin", roles=frozenset({"admin"}))
