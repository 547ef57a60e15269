"""Open data (公共信息资源统一开放平台): opening a resource as open datasets, and reading them.

A steward opens a published resource of their department according to its open type
(unconditional: released at once after the release check; conditional: listed, its rows
read only through an approved application's grant, as in `minyun.exchange`; none: refused).
An open dataset is a view of one lake version of its resource — fields, a row filter and
optionally an aggregation — with its own version history: every new version of the
resource is checked again and released as the dataset's next version (`refresh`), or
suspends it when it no longer passes.

The release check (`release_problems`) blocks every field above public sensitivity unless
it is dropped, or used only inside count / sum / avg over groups of at least
`views.MIN_GROUP` rows. The access plan enforces the same in core: the open-data policy
(`core.policies.OpenData`) reads with clearance public, and `core.views` refuses a view
beyond the plan. Every read goes through `catalog.access_data` → `AccessPlan` → `core.views`
and is audited (`audit.record_read`) before its rows leave.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import OpenType, Resource, ResourceStatus
from minyun.catalog.themes import THEME_BY_CODE, theme_code
from minyun.core import audit, clock, events, policies, views
from minyun.core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    Unauthenticated,
)
from minyun.core.events import Event
from minyun.core.filters import parse_filter
from minyun.core.lake import Lake
from minyun.core.policies import AccessPlan, DataResource, OpenRelease
from minyun.core.security import Principal
from minyun.opendata.models import (
    ApplicationStatus,
    DatasetState,
    Frequency,
    OpenApplication,
    OpenDataset,
    OpenVersion,
)

PURPOSE = "open data"
APPLICATION_POLICY = "open-application"  # a developer's approved application (applications.py)
XLSX_ROWS = 1_048_575  # an Excel sheet's rows under its header
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,99}$")
LICENCES = {
    "cc-by-4.0": "Creative Commons Attribution 4.0",
    "cc0-1.0": "Creative Commons CC0 1.0",
    "odc-by": "Open Data Commons Attribution License",
    "gov-open": "政府数据开放许可",
}
ORDERED_FIELDS = ("fields", "row_filter", "aggregates", "min_group")


@dataclass(frozen=True)
class Problem:
    """One reason the release check refuses a view: the field and why."""

    field: str
    reason: str


def view_of(dataset: OpenDataset) -> views.View:
    """The dataset's view as core reads it."""
    return views.View(
        fields=tuple(dataset.fields),
        row_filter=dataset.row_filter,
        aggregates=tuple(
            views.Aggregate(str(a["fn"]), a.get("field"), str(a["name"]))
            for a in dataset.aggregates
        ),
        min_group=dataset.min_group,
    )


def release_problems(resource: DataResource, view: views.View) -> list[Problem]:
    """Why the view may not be opened; empty when it may (pure: the release check).

    Shown fields, group-by fields and fields in the row filter must be public; a field
    above public may appear only inside count / sum / avg over groups of at least
    `views.MIN_GROUP` rows, and a secret one not at all.
    """
    facts = {f.name: f for f in resource.fields}
    problems: list[Problem] = []
    try:
        node = parse_filter(view.row_filter or "")
    except Invalid as exc:
        return [Problem("row_filter", str(exc))]
    shown = list(view.fields) + sorted(policies.filter_fields(node) - set(view.fields))
    for name in shown:
        if name not in facts:
            problems.append(Problem(name, "no such field"))
        elif policies.level(facts[name].sensitivity) > 0:
            problems.append(Problem(name, f"{facts[name].sensitivity}: drop it or aggregate it"))
    for agg in view.aggregates:
        if agg.fn not in views.AGGREGATES:
            problems.append(Problem(agg.name, f"unknown aggregate {agg.fn}"))
        if agg.field is None:
            continue
        if agg.field not in facts:
            problems.append(Problem(agg.field, "no such field"))
            continue
        rank = policies.level(facts[agg.field].sensitivity)
        if rank == 0:
            continue
        if rank >= policies.level("secret"):
            problems.append(Problem(agg.field, "secret: never opened, not even aggregated"))
        elif agg.fn not in views.HIDDEN_VALUE_AGGREGATES:
            problems.append(Problem(agg.field, f"{agg.fn} would show one row's value"))
        elif view.min_group < views.MIN_GROUP:
            problems.append(
                Problem(agg.field, f"aggregates need groups of at least {views.MIN_GROUP} rows")
            )
    if not view.fields and not view.aggregates:
        problems.append(Problem("fields", "choose at least one field"))
    return problems


def _check_release(resource: DataResource, view: views.View) -> None:
    problems = release_problems(resource, view)
    if problems:
        detail = "; ".join(f"{p.field}: {p.reason}" for p in problems)
        raise Invalid(
            f"the release check refused: {detail}",
            field="fields",
            code="release-check",
            problems=[{"field": p.field, "reason": p.reason} for p in problems],
        )


def _aggregates(raw: Sequence[Mapping[str, Any]] | None) -> tuple[views.Aggregate, ...]:
    found = []
    for item in raw or ():
        if not isinstance(item, Mapping) or "fn" not in item:
            raise Invalid("each aggregate needs fn, field and name", field="aggregates")
        fn = str(item["fn"]).lower()
        field = item.get("field")
        name = str(item.get("name") or (f"{fn}_{field}" if field else fn))
        found.append(views.Aggregate(fn, str(field) if field else None, name))
    return tuple(found)


def normalize(text: str) -> str:
    """Text as search compares it: NFKC, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _search_text(dataset: OpenDataset, resource: Resource) -> str:
    theme = THEME_BY_CODE.get(dataset.domain)
    parts = [dataset.name, dataset.title, dataset.description, " ".join(dataset.tags),
             resource.provider.name, theme.zh if theme else "", theme.en if theme else ""]  # fmt: skip
    return normalize(" ".join(p for p in parts if p))


def open_dataset(
    session: Session,
    actor: Principal,
    code: str,
    *,
    name: str,
    title: str,
    description: str = "",
    domain: str | None = None,
    tags: Sequence[str] = (),
    licence: str = "cc-by-4.0",
    frequency: str = Frequency.IRREGULAR,
    temporal_start: date | None = None,
    temporal_end: date | None = None,
    spatial: Sequence[str] = (),
    fields: Sequence[str] = (),
    row_filter: str | None = None,
    aggregates: Sequence[Mapping[str, Any]] | None = None,
    min_group: int = 1,
) -> OpenDataset:
    """Open a view of a resource (its provider's stewards); refused if the release check fails."""
    resource = catalog.access_managed(session, actor, code, "opendata.release")
    if resource.open_type == OpenType.NONE:
        raise Conflict(
            f"resource {code} is not open (不予开放); it cannot be opened", code="not-open"
        )
    if resource.status != ResourceStatus.PUBLISHED or resource.lake_version is None:
        raise Conflict(f"resource {code} is not published with data yet", code="not-ready")
    if not NAME.match(name):
        raise Invalid("name: 2-100 of a-z, 0-9, - and _", field="name")
    if session.scalar(select(OpenDataset.id).where(OpenDataset.name == name)) is not None:
        raise Conflict(f"an open dataset named {name} exists", code="name-taken", field="name")
    if licence not in LICENCES:
        raise Invalid(f"licence must be one of {', '.join(LICENCES)}", field="licence")
    try:
        frequency = str(Frequency(frequency))
        domain_code = theme_code(domain or resource.theme or "")
    except (ValueError, KeyError):
        raise Invalid("unknown domain or frequency", field="domain") from None
    if len(title.strip()) < 2:
        raise Invalid("title: at least 2 characters", field="title")
    if not 1 <= min_group <= 1000:
        raise Invalid("min_group must be between 1 and 1000", field="min_group")
    view = views.View(tuple(fields), row_filter or None, _aggregates(aggregates), min_group)
    facts = catalog.data_resource(session, resource)
    _check_release(facts, view)
    dataset = OpenDataset(
        key=str(uuid.uuid4()), name=name, resource_id=resource.id,
        publisher_id=resource.provider_id, title=title.strip(), description=description,
        domain=domain_code, tags=[t.strip() for t in tags if t.strip()][:20], licence=licence,
        frequency=frequency, temporal_start=temporal_start, temporal_end=temporal_end,
        spatial=list(spatial), fields=list(view.fields), row_filter=view.row_filter,
        aggregates=[{"fn": a.fn, "field": a.field, "name": a.name} for a in view.aggregates],
        min_group=min_group, state=DatasetState.PUBLISHED, version=1,
        lake_version=resource.lake_version, released_by=actor.label,
    )  # fmt: skip
    dataset.resource = resource
    dataset.search_text = _search_text(dataset, resource)
    session.add(dataset)
    session.flush()
    session.add(_version_row(dataset, facts, actor, state="released", note="opened"))
    policies.bump_epoch(session)
    audit.record(
        session, actor, "opendata.release", target=name, target_type="open-dataset",
        detail=json.dumps({"resource": code, "fields": list(view.fields),
                           "row_filter": view.row_filter, "aggregates": dataset.aggregates,
                           "min_group": min_group, "lake_version": dataset.lake_version},
                          ensure_ascii=False),
    )  # fmt: skip
    return dataset


def _version_row(
    dataset: OpenDataset, facts: DataResource, actor: Principal, *, state: str, note: str
) -> OpenVersion:
    return OpenVersion(
        dataset_id=dataset.id, number=dataset.version, lake_version=dataset.lake_version,
        schema_version=facts.schema_version, columns=view_of(dataset).columns, state=state,
        note=note, created_by=actor.label,
    )  # fmt: skip


def withdraw_dataset(session: Session, actor: Principal, name: str, *, reason: str) -> OpenDataset:
    """Take an open dataset down (its publisher's stewards); its history stays."""
    dataset = get_dataset(session, name)
    catalog.access_managed(session, actor, dataset.resource.code, "opendata.release")
    if not reason.strip():
        raise Invalid("give a reason", field="reason")
    dataset.state = DatasetState.WITHDRAWN
    dataset.updated_at = clock.now()
    policies.bump_epoch(session)
    audit.record(session, actor, "opendata.withdraw", target=name, target_type="open-dataset",
                 purpose=reason)  # fmt: skip
    return dataset


def refresh(session: Session, resource_id: int, *, actor: Principal | None = None) -> list[str]:
    """Bring the resource's open datasets to its newest version, each checked again.

    A version that passes the release check becomes the dataset's next version; one that
    does not (a field made sensitive, a field gone) is recorded as refused and suspends the
    dataset until a steward changes it. Returns the names of the datasets moved.
    """
    who = actor or Principal.system(on_behalf_of="opendata.refresh")
    resource = session.get(Resource, resource_id)
    if resource is None or resource.lake_version is None:
        return []
    facts = catalog.data_resource(session, resource)
    moved = []
    found = session.scalars(
        select(OpenDataset).where(
            OpenDataset.resource_id == resource_id,
            OpenDataset.state != DatasetState.WITHDRAWN,
            OpenDataset.lake_version < resource.lake_version,
        )
    )
    for dataset in found:
        problems = release_problems(facts, view_of(dataset))
        dataset.version += 1
        dataset.lake_version = resource.lake_version
        dataset.updated_at = clock.now()
        dataset.row_count = None
        if problems:
            dataset.state = DatasetState.SUSPENDED
            note = "; ".join(f"{p.field}: {p.reason}" for p in problems)
            session.add(_version_row(dataset, facts, who, state="refused", note=note))
        else:
            dataset.state = DatasetState.PUBLISHED
            session.add(_version_row(dataset, facts, who, state="released", note="refreshed"))
        audit.record(
            session, who, "opendata.refresh", target=dataset.name, target_type="open-dataset",
            detail=json.dumps({"version": dataset.version, "lake_version": dataset.lake_version,
                               "state": dataset.state}),
        )  # fmt: skip
        moved.append(dataset.name)
    if moved:
        policies.bump_epoch(session)
    return moved


def _on_event(session: Session, event: Event) -> None:
    """A committed load's `resource.updated` refreshes its open datasets in the same transaction."""
    if event.kind != "resource.updated":
        return
    resource_id = session.scalar(select(Resource.id).where(Resource.code == event.subject))
    if resource_id is not None:
        session.flush()
        refresh(session, resource_id)


def release_finder(session: Session, resource: DataResource) -> OpenRelease | None:
    """What the released, unconditional open datasets of a resource open together."""
    rows = session.execute(
        select(OpenDataset.name, OpenDataset.fields, OpenDataset.row_filter, OpenDataset.aggregates)
        .where(OpenDataset.resource_id == resource.id, OpenDataset.state == DatasetState.PUBLISHED)
        .order_by(OpenDataset.id)
    ).all()
    if not rows:
        return None
    return union_of([tuple(r) for r in rows])


def union_of(views_: Sequence[tuple[Any, ...]]) -> OpenRelease:
    """What views (name, fields, row filter, aggregates) open together: the plan's part."""
    fields: set[str] = set()
    aggregate: set[str] = set()
    filters: list[str] = []
    everything = False
    for _name, shown, row_filter, aggs in views_:
        fields.update(shown)
        if row_filter:
            fields.update(policies.filter_fields(parse_filter(row_filter)))
            filters.append(f"({row_filter})")
        else:
            everything = True
        aggregate.update(str(a["field"]) for a in aggs if a.get("field"))
    return OpenRelease(
        datasets=tuple(str(v[0]) for v in views_),
        fields=frozenset(fields),
        aggregate=frozenset(aggregate),
        row_filter=None if everything else " or ".join(filters),
    )


def approved_for(user_id: int) -> Any:
    """The condition of an account's applications in force: approved and not expired."""
    return and_(
        OpenApplication.user_id == user_id,
        OpenApplication.status == ApplicationStatus.APPROVED,
        OpenApplication.expires_at > clock.now(),
    )


# --- reading ----------------------------------------------------------------------------------


def find_dataset(session: Session, ident: str) -> OpenDataset | None:
    """The dataset with this key (UUID) or name, or None."""
    return session.scalars(
        select(OpenDataset).where(or_(OpenDataset.key == ident, OpenDataset.name == ident))
    ).first()


def get_dataset(session: Session, ident: str) -> OpenDataset:
    """The dataset with this key or name, or NotFound."""
    found = find_dataset(session, ident)
    if found is None:
        raise NotFound(f"no open dataset {ident}")
    return found


def listed() -> Any:
    """The condition of a dataset everyone sees: released, of a published open resource."""
    return and_(
        OpenDataset.state == DatasetState.PUBLISHED,
        Resource.status == ResourceStatus.PUBLISHED,
        Resource.open_type.in_([str(OpenType.UNCONDITIONAL), str(OpenType.CONDITIONAL)]),
    )


def access_dataset(session: Session, actor: Principal, ident: str) -> OpenDataset:
    """The dataset if the actor may see it; the same NotFound for missing and hidden."""
    dataset = find_dataset(session, ident)
    if dataset is not None:
        shown = (
            dataset.state == DatasetState.PUBLISHED
            and dataset.resource.status == ResourceStatus.PUBLISHED
            and dataset.resource.open_type != OpenType.NONE
        )
        if shown or policies.manages(actor, dataset.publisher_id):
            return dataset
    raise NotFound(f"no open dataset {ident}")


def read_plan(session: Session, actor: Principal, dataset: OpenDataset) -> AccessPlan:
    """The plan of a read of the dataset's rows (open data, an application, a grant, a steward).

    A developer's approved application opens its own dataset only, even when another dataset
    of the same resource was approved: the plan is the resource's, the approval the dataset's.
    """
    try:
        plan = catalog.access_data(
            session, actor, dataset.resource.code, policies.READ, purpose=PURPOSE
        )
    except (Forbidden, Unauthenticated):
        if dataset.resource.open_type == OpenType.CONDITIONAL:
            raise needs_application(actor, dataset) from None
        raise
    if plan.policy == APPLICATION_POLICY and actor.user_id is not None:
        approved = session.scalar(
            select(OpenApplication.id)
            .where(approved_for(actor.user_id), OpenApplication.dataset_id == dataset.id)
            .limit(1)
        )
        if approved is None:
            raise needs_application(actor, dataset)
    return plan


def needs_application(actor: Principal, dataset: OpenDataset) -> DomainError:
    """The refusal of a conditional dataset's rows without an approved application, audited."""
    reason = (
        f"{dataset.name} is open on conditions (有条件开放): apply for it at "
        f"/opendata/datasets/{dataset.name} and read it once approved"
    )
    error: DomainError = Forbidden(reason) if actor.authenticated else Unauthenticated(reason)
    error.audit = audit.Pending(
        actor=actor, action=policies.READ, target=dataset.resource.code, target_type="resource",
        purpose=PURPOSE, outcome=audit.Outcome.DENIED, detail=f"dataset={dataset.name}; {reason}",
    )  # fmt: skip
    return error


def _audit_read(
    session: Session,
    actor: Principal,
    plan: AccessPlan,
    dataset: OpenDataset,
    *,
    what: str,
    count: int | None,
    detail: str = "",
    key: str | None = None,
) -> None:
    parts = [f"dataset={dataset.name}", f"version={dataset.version}",
             f"lake_version={dataset.lake_version}", f"policy={plan.policy}", what]  # fmt: skip
    if key:
        parts.append(f"key={key}")
    if detail:
        parts.append(detail)
    audit.record_read(
        session, actor, policies.READ, target=dataset.resource.code, target_type="resource",
        count=count, purpose=PURPOSE, detail="; ".join(parts),
    )  # fmt: skip


@dataclass(frozen=True)
class Rows:
    """A page of a dataset's rows (datastore_search)."""

    dataset: OpenDataset
    table: pa.Table
    total: int | None
    columns: dict[str, str]


def search_rows(
    session: Session,
    lake: Lake,
    actor: Principal,
    ident: str,
    *,
    filters: Mapping[str, Any] | None = None,
    q: str | Mapping[str, str] | None = None,
    fields: Sequence[str] | None = None,
    sort: Sequence[tuple[str, bool]] = (),
    limit: int = 100,
    offset: int = 0,
    total: bool = True,
    key: str | None = None,
) -> Rows:
    """Rows of an open dataset as its view and the reader's plan show them; audited."""
    dataset = access_dataset(session, actor, ident)
    plan = read_plan(session, actor, dataset)
    found = views.search(
        lake, plan, view_of(dataset), version=dataset.lake_version, filters=filters, q=q,
        fields=fields, sort=sort, limit=limit, offset=offset, total=total,
    )  # fmt: skip
    what = "datastore_search"
    if filters:
        what += f" filters={json.dumps(filters, ensure_ascii=False)[:500]}"
    _audit_read(session, actor, plan, dataset, what=what, count=found.table.num_rows, key=key)
    return Rows(dataset, found.table, found.total, found.columns)


def row_count(session: Session, lake: Lake, actor: Principal, dataset: OpenDataset) -> int:
    """How many rows the dataset shows (counted once per version, kept on the dataset)."""
    if dataset.row_count is not None:
        return dataset.row_count
    plan = read_plan(session, actor, dataset)
    return views.count(lake, plan, view_of(dataset), version=dataset.lake_version)


@dataclass(frozen=True)
class Download:
    """A download about to stream: the dataset, the plan, the view, the batches."""

    dataset: OpenDataset
    batches: Iterator[pa.RecordBatch]
    schema: pa.Schema


def open_download(
    session: Session, lake: Lake, actor: Principal, ident: str, *, fmt: str, key: str | None = None
) -> Download:
    """The rows of a dataset for a download, audited before any leaves; read as they are sent."""
    dataset = access_dataset(session, actor, ident)
    plan = read_plan(session, actor, dataset)
    view = view_of(dataset)
    schema = views.schema(lake, plan, view, version=dataset.lake_version)
    if fmt == "xlsx" and views.count(lake, plan, view, version=dataset.lake_version) > XLSX_ROWS:
        # Refused before the first byte: a sheet that cannot hold the rows is no download.
        raise Invalid(
            "more rows than an Excel sheet holds: download CSV or Parquet", field="format"
        )
    _audit_read(session, actor, plan, dataset, what=f"download format={fmt}", count=None, key=key)
    batches = views.stream(lake, plan, view, version=dataset.lake_version)
    return Download(dataset, batches, schema)


@dataclass(frozen=True)
class SqlAnswer:
    table: pa.Table
    truncated: bool
    datasets: list[OpenDataset]


def run_sql(
    session: Session, lake: Lake, actor: Principal, sql: str, *, key: str | None = None
) -> SqlAnswer:
    """A read-only SELECT over open datasets (named by id, name or a distribution's id)."""
    names = views.referenced(sql)
    tables: dict[str, views.SqlTable] = {}
    used: list[tuple[OpenDataset, AccessPlan]] = []
    for name in names:
        dataset = find_dataset(session, dataset_ident(name))
        if dataset is None:
            raise Invalid(f"{name!r} is not an open dataset", field="sql")
        try:
            dataset = access_dataset(session, actor, dataset.key)
            plan = read_plan(session, actor, dataset)
        except (NotFound, Forbidden, Unauthenticated) as exc:
            if dataset.resource.open_type == OpenType.CONDITIONAL and not isinstance(exc, NotFound):
                raise  # listed to everyone: say that it needs an approved application
            # Same answer for a closed table as for a missing one.
            error = Invalid(f"{name!r} is not an open dataset", field="sql")
            error.audit = exc.audit
            raise error from None
        tables[name] = views.SqlTable(plan, view_of(dataset), dataset.lake_version)
        used.append((dataset, plan))
    answer = views.run_sql(lake, sql, tables)
    for dataset, plan in used:
        _audit_read(session, actor, plan, dataset, what="datastore_search_sql",
                    count=answer.table.num_rows, detail=f"sql={sql[:500]}", key=key)  # fmt: skip
    return SqlAnswer(answer.table, answer.truncated, [d for d, _ in used])


FORMATS = ("csv", "xlsx", "json", "parquet", "api")


def dataset_ident(resource_id: str) -> str:
    """The dataset a distribution id (`<dataset key>-<format>`) or dataset id names."""
    base, _, fmt = resource_id.rpartition("-")
    return base if fmt in FORMATS and base else resource_id


def versions(session: Session, dataset: OpenDataset) -> list[OpenVersion]:
    """The dataset's versions, newest first."""
    return list(
        session.scalars(
            select(OpenVersion)
            .where(OpenVersion.dataset_id == dataset.id)
            .order_by(OpenVersion.number.desc())
        )
    )


def count_listed(session: Session) -> int:
    """How many open datasets everyone sees (the portal's count)."""
    return int(session.scalar(select(func.count()).select_from(listed_query().subquery())) or 0)


def listed_query() -> Select[Any]:
    """Datasets everyone sees, with their resource joined."""
    return (
        select(OpenDataset).join(Resource, OpenDataset.resource_id == Resource.id).where(listed())
    )


if _on_event not in events.ON_PUBLISH:
    events.ON_PUBLISH.append(_on_event)
if release_finder not in policies.OPEN_DATA.finders:
    policies.OPEN_DATA.register(release_finder)
