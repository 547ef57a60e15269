"""The file (档案) of one subject: every source row linked to it, assembled on demand.

Each source is read through the viewer's own access plan (`query.service.query_rows`, with
the linked rows' keys as its filter, audited with those keys): a department sees what its
role and grants allow, masked as the plan says; a source the viewer may not read is counted,
not shown. Values of one linking kind that differ between sources are the file's conflicts,
shown side by side with their provenance (department, resource, lake version).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource
from minyun.core import audit, policies
from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden, NotFound
from minyun.core.lake import Lake
from minyun.core.reading import RowsPage, reader_secret
from minyun.core.security import Principal, authorize
from minyun.query import service as query
from minyun.subjects.models import SubjectChange, SubjectLink
from minyun.subjects.policy import own_subjects

__all__ = [
    "Conflict",
    "Look",
    "SourceRecord",
    "SubjectFile",
    "own_file",
    "subject_file",
    "who_looked",
]

PURPOSE = "subject file"
_MAX_KEYS = 200  # rows of one source shown in a file


@dataclass(frozen=True)
class SourceRecord:
    """One source row as the viewer may see it, with where it comes from."""

    resource: str
    resource_name: str
    department: str
    lake_version: int
    row_key: str
    values: dict[str, Any]  # the linking fields by link kind ("name", "ric", ...)
    fields: dict[str, Any]  # every visible field by column name


@dataclass(frozen=True)
class Conflict:
    """A linking field whose sources disagree: each value with the sources that hold it."""

    link: str
    values: list[tuple[str, list[SourceRecord]]]


@dataclass
class SubjectFile:
    """The 360° view of one subject."""

    subject_id: str
    kind: str
    records: list[SourceRecord]
    hidden_sources: int
    conflicts: list[Conflict]
    history: list[SubjectChange] = field(default_factory=list)

    @property
    def departments(self) -> list[str]:
        return sorted({r.department for r in self.records})


def subject_file(session: Session, lake: Lake, actor: Principal, subject_id: str) -> SubjectFile:
    """The subject's file as `actor` may see it; NotFound for an unknown id."""
    own = subject_id in own_subjects(session, actor)
    if not own:  # one's own file needs no capability
        authorize(session, actor, "subjects.read", target=subject_id, target_type="subject")
    links = session.scalars(
        select(SubjectLink)
        .where(SubjectLink.subject_id == subject_id)
        .order_by(SubjectLink.resource, SubjectLink.row_key)
    ).all()
    if not links:
        raise NotFound(f"no subject {subject_id}")
    by_resource: dict[str, list[SubjectLink]] = defaultdict(list)
    for link in links:
        by_resource[link.resource].append(link)
    records: list[SourceRecord] = []
    hidden = 0
    for code, rows in by_resource.items():
        try:
            records.extend(_read_source(session, lake, actor, code, rows[:_MAX_KEYS], own=own))
        except (Forbidden, NotFound):
            hidden += 1  # not open to this viewer: counted, never shown
    history = list(
        session.scalars(
            select(SubjectChange)
            .where(
                or_(SubjectChange.subject_id == subject_id, SubjectChange.other_id == subject_id)
            )
            .order_by(SubjectChange.at.desc(), SubjectChange.id.desc())
            .limit(50)
        )
    )
    return SubjectFile(subject_id, links[0].kind, records, hidden, _conflicts(records), history)


def _read_source(
    session: Session, lake: Lake, actor: Principal, code: str, links: list[SubjectLink],
    *, own: bool,
) -> list[SourceRecord]:  # fmt: skip
    resource = catalog.get_resource(session, code)
    schema = catalog.current_table_schema(session, resource)
    if schema is None or not schema.primary_key:
        return []
    keys = [link.row_key.split("|") for link in links]
    where = _key_filter(list(schema.primary_key), keys)
    if own:
        page = _read_own(session, lake, actor, resource, where, len(keys))
    else:
        page = query.query_rows(
            session, lake, actor, code, filter=where, limit=len(keys), purpose=PURPOSE
        )
    kinds = {name: link.split(".", 1)[1] for link, name in schema.links.items()}
    out = []
    for row in page.table.to_pylist():
        key = "|".join(str(row.get(k)) for k in schema.primary_key)
        out.append(
            SourceRecord(
                resource=code,
                resource_name=resource.name,
                department=resource.provider.name,
                lake_version=page.version if page.version is not None else -1,
                row_key=key,
                values={kinds[n]: _text(v) for n, v in row.items() if n in kinds},
                fields={n: _text(v) for n, v in row.items()},
            )
        )
    return out


def _read_own(
    session: Session, lake: Lake, actor: Principal, resource: Resource, where: str, limit: int
) -> RowsPage:
    """A data subject's read of their own rows: planned by the policies (the data-subject
    policy opens only their linked rows) and audited like any read, but not through the
    catalog's visibility rule, which hides non-open resources from citizens' catalog."""
    plan = authorize(
        session, actor, policies.READ, resource=catalog.data_resource(session, resource),
        purpose=PURPOSE,
    )  # fmt: skip
    page = lake.read_rows(plan, secret=reader_secret(session), filter=where, limit=limit)
    audit.record_read(
        session, actor, policies.READ, target=resource.code, target_type="resource",
        keys=page.keys, count=page.table.num_rows, purpose=PURPOSE, detail="own file",
    )  # fmt: skip
    return page


def _key_filter(primary_key: list[str], keys: list[list[str]]) -> str:
    """The filter-language text that selects the rows with these keys."""

    def lit(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def name(field_name: str) -> str:
        return '"' + field_name.replace('"', '""') + '"'

    if len(primary_key) == 1:
        return f"{name(primary_key[0])} in ({', '.join(lit(k[0]) for k in keys)})"
    return " or ".join(
        "("
        + " and ".join(f"{name(f)} = {lit(v)}" for f, v in zip(primary_key, k, strict=True))
        + ")"
        for k in keys
    )


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value if value is None or isinstance(value, int | float | str) else str(value)


def _conflicts(records: list[SourceRecord]) -> list[Conflict]:
    """Each linking kind whose non-empty values differ between the records."""
    found = []
    kinds = sorted({k for r in records for k in r.values})
    for kind in kinds:
        groups: dict[str, list[SourceRecord]] = defaultdict(list)
        for r in records:
            value = r.values.get(kind)
            if value not in (None, ""):
                groups[str(value)].append(r)
        if len(groups) > 1:
            found.append(Conflict(kind, sorted(groups.items(), key=lambda g: -len(g[1]))))
    return found


@dataclass(frozen=True)
class Look:
    """One read of a subject's rows by someone: when, who, which resource, why."""

    at: datetime
    actor: str
    resource: str
    purpose: str | None
    rows: int


def own_file(session: Session, lake: Lake, actor: Principal) -> tuple[SubjectFile, list[Look]]:
    """A citizen's or enterprise's own file, every source in clear, and who looked at it."""
    subjects = own_subjects(session, actor)
    if not subjects:
        raise NotFound("no file is linked to this account yet")
    found = subject_file(session, lake, actor, subjects[0])
    return found, who_looked(session, actor, subjects[0])


def who_looked(session: Session, actor: Principal, subject_id: str) -> list[Look]:
    """The reads of the subject's rows by others, newest first (from the audit log)."""
    links = session.execute(
        select(SubjectLink.resource, SubjectLink.row_key).where(
            SubjectLink.subject_id == subject_id
        )
    ).all()
    keys: dict[str, set[str]] = defaultdict(set)
    for resource, row_key in links:
        keys[resource].add(row_key)
    records = session.scalars(
        select(AuditRecord)
        .where(AuditRecord.action == policies.READ, AuditRecord.object_id.in_(list(keys)))
        .order_by(AuditRecord.seq.desc())
        .limit(2000)
    )
    looks = []
    for r in records:
        seen = keys.get(r.object_id or "", set()) & set(r.record_keys or [])
        if seen and r.actor != actor.label and not r.actor.startswith("system"):
            looks.append(Look(r.at, r.actor, r.object_id or "", r.purpose, len(seen)))
    return looks[:100]
