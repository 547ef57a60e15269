"""The catalog's rules: create, edit, publish and retire resources; versioned schemas; search.

Who sees metadata is decided by the reader's audience (`core.policies.audience`): civil
servants see published (and retired) resources, their schemas, quality and lineage, and a
draft only when they are its provider's staff or admins; citizens, enterprises and
anonymous visitors see only published resources that are open (无条件/有条件开放), with their
public fields. Reads of data go through `access_data`, which returns the `AccessPlan`. Changes are for admins and data stewards, and a
steward only changes the resources of their own organisation. Every change writes its
audit record in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from minyun.catalog.models import (
    BaseLibrary,
    OpenType,
    Resource,
    ResourceSchema,
    ResourceStatus,
    SharingType,
    UpdateCycle,
    Version,
)
from minyun.catalog.themes import BASE_LIBRARY_BY_CODE, THEME_BY_CODE, THEMES, theme_code
from minyun.core import audit, clock, policies
from minyun.core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    Unauthenticated,
)
from minyun.core.policies import AccessPlan, DataResource, FieldFacts
from minyun.core.security import Principal, authorize, decide
from minyun.core.tableschema import TableSchema, check_loadable, compatibility, parse_schema
from minyun.orgs import service as orgs
from minyun.orgs.models import Organization

RESOURCE_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
RESTRICTED = {"conditional", "none"}
CHINA_TIME = dt.timezone(dt.timedelta(hours=8))
# Metadata an edit may change; the code and the provider are the resource's identity.
EDITABLE = (
    "name", "summary", "theme", "base_library", "format", "update_cycle", "sharing_type",
    "sharing_condition", "open_type", "open_condition", "legal_basis",
)  # fmt: skip
SEARCH_LIMIT = 500


# --- reading ---------------------------------------------------------------------------


def find_resource(session: Session, code: str) -> Resource | None:
    """The resource with this code, or None."""
    return session.scalars(select(Resource).where(Resource.code == code)).first()


def get_resource(session: Session, code: str) -> Resource:
    """The resource with this code, or NotFound."""
    resource = find_resource(session, code)
    if resource is None:
        raise NotFound(f"no resource {code}")
    return resource


OPEN_TYPES = (OpenType.UNCONDITIONAL, OpenType.CONDITIONAL)


def _visible(actor: Principal, resource: Resource) -> bool:
    if policies.audience(actor) == "open":
        return resource.status == ResourceStatus.PUBLISHED and resource.open_type in OPEN_TYPES
    return resource.status != ResourceStatus.DRAFT or policies.manages(actor, resource.provider_id)


def access_resource(session: Session, actor: Principal, code: str) -> Resource:
    """The resource if the actor may see it; the same NotFound for missing and hidden."""
    authorize(session, actor, "catalog.read", target=code, target_type="resource")
    resource = find_resource(session, code)
    if resource is not None and _visible(actor, resource):
        return resource
    # Same error for missing and hidden: don't reveal that someone's draft exists. An
    # anonymous caller is told to sign in, whether the resource exists or not.
    error: DomainError = (
        NotFound(f"no resource {code}")
        if actor.authenticated
        else Unauthenticated("sign in first: without an account only open data is shown")
    )
    if resource is not None:
        error.audit = audit.Pending(
            actor, "catalog.read", target=code, target_type="resource",
            outcome=audit.Outcome.DENIED, detail="not visible to this reader",
        )  # fmt: skip
    raise error


def _visibility(actor: Principal) -> ColumnElement[bool]:
    if policies.audience(actor) == "open":
        return and_(
            Resource.status == ResourceStatus.PUBLISHED,
            Resource.open_type.in_([str(t) for t in OPEN_TYPES]),
        )
    if actor.kind == "system" or actor.has_role("admin"):
        return Resource.id.is_not(None)
    shown = Resource.status != ResourceStatus.DRAFT
    if actor.organization_id is None:
        return shown
    return or_(shown, Resource.provider_id == actor.organization_id)


def data_resource(session: Session, resource: Resource) -> DataResource:
    """What the access policies need of a resource: provider, types, fields and their keys."""
    row = current_schema(session, resource)
    descriptor: Mapping[str, Any] = row.descriptor if row is not None else {}
    fields = tuple(
        FieldFacts(
            str(f["name"]),
            str(f.get("sensitivity") or policies.DEFAULT_SENSITIVITY),
            str(f["mask"]) if f.get("mask") else None,
        )
        for f in descriptor.get("fields") or []
        if isinstance(f, Mapping) and f.get("name")
    )
    pk = descriptor.get("primaryKey") or ()
    return DataResource(
        id=resource.id,
        code=resource.code,
        provider_id=resource.provider_id,
        status=resource.status,
        sharing_type=resource.sharing_type,
        open_type=resource.open_type,
        fields=fields,
        primary_key=(pk,) if isinstance(pk, str) else tuple(str(c) for c in pk),
        schema_version=resource.current_schema_version,
        lake_version=resource.lake_version,
    )


def access_data(
    session: Session, actor: Principal, code: str, action: str, *, purpose: str | None = None
) -> AccessPlan:
    """The plan of a read of a resource's data (rows, rejects, quality); refused and audited."""
    resource = access_resource(session, actor, code)
    return authorize(
        session, actor, action, resource=data_resource(session, resource), purpose=purpose
    )


def internal(actor: Principal) -> bool:
    """Whether the actor sees the internal catalog (schemas in full, quality, lineage)."""
    return policies.audience(actor) == "internal"


def normalize(text: str) -> str:
    """Text as search compares it: NFKC (full-width → half-width), case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def search_terms(q: str | None) -> list[str]:
    """The whitespace-separated terms of a query, normalised; each must occur."""
    return normalize(q or "").split()[:10]


@dataclass(frozen=True)
class Filters:
    """What the catalog is narrowed to; None means any."""

    q: str | None = None
    theme: str | None = None
    provider: str | None = None
    base_library: str | None = None
    status: str | None = None
    sharing_type: str | None = None
    open_type: str | None = None


def _filtered(actor: Principal, filters: Filters) -> Select[Any]:
    query = select(Resource).where(_visibility(actor))
    # Chinese has no spaces between words, so a term is matched as a substring (LIKE) of
    # the normalised search text rather than by a word tokenizer; see search_text().
    for term in search_terms(filters.q):
        query = query.where(Resource.search_text.contains(term, autoescape=True))
    if filters.theme:
        query = query.where(Resource.theme == filters.theme)
    if filters.base_library:
        query = query.where(Resource.base_library == filters.base_library)
    if filters.status:
        query = query.where(Resource.status == filters.status)
    if filters.sharing_type:
        query = query.where(Resource.sharing_type == filters.sharing_type)
    if filters.open_type:
        query = query.where(Resource.open_type == filters.open_type)
    if filters.provider:
        query = query.join(Organization, Organization.id == Resource.provider_id).where(
            Organization.code == filters.provider
        )
    return query


def list_resources(
    session: Session,
    actor: Principal,
    filters: Filters | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
) -> list[Resource]:
    """The visible resources that match, names matching the query first, then by code."""
    authorize(session, actor, "catalog.read")
    filters = filters or Filters()
    query = _filtered(actor, filters)
    terms = search_terms(filters.q)
    if terms:
        in_name = and_(*(func.lower(Resource.name).contains(t, autoescape=True) for t in terms))
        query = query.order_by(in_name.desc())
    query = query.order_by(Resource.code).limit(min(limit, SEARCH_LIMIT)).offset(max(offset, 0))
    return list(session.scalars(query))


def count_resources(session: Session, actor: Principal, filters: Filters | None = None) -> int:
    """How many visible resources match."""
    authorize(session, actor, "catalog.read")
    query = _filtered(actor, filters or Filters()).with_only_columns(func.count(Resource.id))
    return int(session.scalar(query) or 0)


# --- changing ----------------------------------------------------------------------------


def _refuse(actor: Principal, action: str, code: str, reason: str) -> Forbidden:
    error = Forbidden(reason)
    error.audit = audit.Pending(
        actor=actor,
        action=action,
        target=code,
        target_type="resource",
        outcome=audit.Outcome.DENIED,
        detail=reason,
    )
    return error


def _check_provider(actor: Principal, action: str, resource: Resource) -> None:
    if not policies.manages(actor, resource.provider_id):
        raise _refuse(actor, action, resource.code, "only the provider can change this resource")


# Changes a retired resource no longer takes (it stays in the catalog, read-only).
FROZEN_WHEN_RETIRED = frozenset({"resource.edit", "resource.load", "resource.retire"})


def access_managed(session: Session, actor: Principal, code: str, action: str) -> Resource:
    """The resource if the actor may do `action` on it (its provider's stewards, or admins);
    a refusal is audited; Conflict for a change a retired resource no longer takes. The forms
    of a change ask this before they are shown."""
    resource = access_resource(session, actor, code)
    authorize(session, actor, action, target=code, target_type="resource")
    _check_provider(actor, action, resource)
    if resource.status == ResourceStatus.RETIRED and action in FROZEN_WHEN_RETIRED:
        raise Conflict(f"resource {code} is retired; restore it first", code="retired")
    return resource


def providers_for(session: Session, actor: Principal) -> list[Organization]:
    """The organisations whose resources the actor may register: all for admins, else their own."""
    authorize(session, actor, "resource.create", target_type="resource")
    query = select(Organization).order_by(Organization.code)
    if not (actor.kind == "system" or actor.has_role("admin")):
        query = query.where(Organization.id == actor.organization_id)
    return [org for org in session.scalars(query) if policies.manages(actor, org.id)]


def _check_terms(values: Mapping[str, Any]) -> dict[str, Any]:
    """Code-table values checked and normalised (a theme may be given by its Chinese name)."""
    out = dict(values)
    theme = out.get("theme")
    if theme:
        try:
            out["theme"] = theme_code(str(theme))
        except KeyError:
            raise Invalid(f"unknown theme {theme!r}", field="theme") from None
    elif "theme" in out:
        out["theme"] = None
    library = out.get("base_library")
    if library:
        if library not in BASE_LIBRARY_BY_CODE:
            raise Invalid(f"unknown base library {library!r}", field="base_library")
        out["base_library"] = str(BaseLibrary(library))
    elif "base_library" in out:
        out["base_library"] = None
    for name, kind in (
        ("sharing_type", SharingType),
        ("open_type", OpenType),
        ("update_cycle", UpdateCycle),
    ):
        if name in out:
            try:
                out[name] = str(kind(out[name]))
            except ValueError:
                allowed = ", ".join(k.value for k in kind)
                raise Invalid(f"{name} must be one of {allowed}", field=name) from None
    if "name" in out:
        out["name"] = str(out["name"]).strip()
        if len(out["name"]) < 2:
            raise Invalid("name: at least 2 characters", field="name")
    for name in ("legal_basis", "sharing_condition", "open_condition"):
        if name in out:
            out[name] = (out[name] or "").strip() or None
    return out


def _check_restrictions(resource: Resource) -> None:
    """国发〔2016〕51号: a restriction on sharing or opening must name its legal basis."""
    restricted = [
        label
        for label, value in (("sharing", resource.sharing_type), ("open", resource.open_type))
        if value in RESTRICTED
    ]
    if restricted and not resource.legal_basis:
        raise Invalid(
            f"{' and '.join(restricted)} type {' / '.join(sorted(set(restricted)))} is "
            "restricted: give the legal basis (法律法规依据) for the restriction",
            field="legal_basis",
        )
    if resource.sharing_type == SharingType.NONE and resource.open_type != OpenType.NONE:
        raise Invalid(
            "a resource that is not shared with other departments cannot be opened to the public",
            field="open_type",
        )


def search_text(resource: Resource, schema: TableSchema | None = None) -> str:
    """The normalised text search matches: code, name, summary, provider, domain, fields."""
    parts = [resource.code, resource.name, resource.summary or "", resource.provider.name]
    theme = THEME_BY_CODE.get(resource.theme or "")
    if theme is not None:
        parts += [theme.zh, theme.en]
    library = BASE_LIBRARY_BY_CODE.get(resource.base_library or "")
    if library is not None:
        parts += [library.zh, library.en]
    if schema is not None:
        for f in schema.fields:
            parts += [f.name, f.title or "", f.description or ""]
    return normalize(" ".join(p for p in parts if p))


def create_resource(
    session: Session,
    actor: Principal,
    *,
    code: str,
    name: str,
    provider: str,
    summary: str = "",
    theme: str | None = None,
    base_library: str | None = None,
    format: str = "table",
    update_cycle: str = UpdateCycle.IRREGULAR,
    sharing_type: str = SharingType.CONDITIONAL,
    sharing_condition: str | None = None,
    open_type: str = OpenType.NONE,
    open_condition: str | None = None,
    legal_basis: str | None = None,
    schema: dict[str, Any] | None = None,
) -> Resource:
    """Register a draft resource of `provider` (its staff or an admin), with its first schema."""
    authorize(session, actor, "resource.create", target=code, target_type="resource")
    if not RESOURCE_CODE.match(code):
        raise Invalid("code: 2–64 of a-z 0-9 . _ -, starting with a letter or digit", field="code")
    org = orgs.get_organization(session, provider)
    if not policies.manages(actor, org.id):
        raise _refuse(
            actor, "resource.create", code, "stewards register resources of their own organisation"
        )
    if find_resource(session, code) is not None:
        raise Conflict(f"a resource with code {code} exists", field="code")
    values = _check_terms(
        {
            "name": name,
            "theme": theme,
            "base_library": base_library,
            "update_cycle": update_cycle,
            "sharing_type": sharing_type,
            "sharing_condition": sharing_condition,
            "open_type": open_type,
            "open_condition": open_condition,
            "legal_basis": legal_basis,
        }
    )
    parsed = check_loadable(parse_schema(schema)) if schema is not None else None
    now = clock.now()
    resource = Resource(
        code=code,
        provider_id=org.id,
        provider=org,
        summary=summary.strip(),
        format=format,
        status=ResourceStatus.DRAFT,
        created_at=now,
        updated_at=now,
        **values,
    )
    _check_restrictions(resource)
    resource.search_text = search_text(resource, parsed)
    session.add(resource)
    session.flush()
    audit.record(session, actor, "resource.create", target=code, target_type="resource")
    if schema is not None:
        set_schema(session, actor, code, schema)
    return resource


def update_resource(
    session: Session, actor: Principal, code: str, changes: Mapping[str, Any]
) -> Resource:
    """Change a resource's metadata (provider or admin); a retired resource stays as it was."""
    resource = access_resource(session, actor, code)
    authorize(session, actor, "resource.edit", target=code, target_type="resource")
    _check_provider(actor, "resource.edit", resource)
    if resource.status == ResourceStatus.RETIRED:
        raise Conflict(f"resource {code} is retired; it can no longer be changed")
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise Invalid(f"cannot change {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    values = _check_terms(changes)
    changed = sorted(k for k, v in values.items() if getattr(resource, k) != v)
    if not changed:
        return resource
    for key in changed:
        setattr(resource, key, values[key])
    _check_restrictions(resource)
    resource.updated_at = clock.now()
    resource.search_text = search_text(resource, current_table_schema(session, resource))
    policies.bump_epoch(session)  # cached plans of this resource are stale
    audit.record(
        session,
        actor,
        "resource.edit",
        target=code,
        target_type="resource",
        detail="changed: " + ", ".join(changed),
    )
    return resource


def publish_resource(
    session: Session, actor: Principal, code: str, *, reason: str | None = None
) -> Resource:
    """Make a draft visible in the catalog; provider or admin only, and it needs a schema."""
    resource = access_resource(session, actor, code)
    authorize(session, actor, "resource.publish", target=code, target_type="resource")
    _check_provider(actor, "resource.publish", resource)
    if resource.status == ResourceStatus.PUBLISHED:
        return resource
    if resource.status == ResourceStatus.RETIRED:
        raise Conflict(f"resource {code} is retired; register a new resource instead")
    if resource.current_schema_version is None:
        raise Invalid("publish needs a schema", field="schema")
    _check_restrictions(resource)
    now = clock.now()
    resource.status = ResourceStatus.PUBLISHED
    resource.publish_date = now.astimezone(CHINA_TIME).date()
    resource.updated_at = now
    policies.bump_epoch(session)  # cached plans of this resource are stale
    audit.record(
        session, actor, "resource.publish", target=code, target_type="resource", purpose=reason
    )
    return resource


def retire_resource(
    session: Session, actor: Principal, code: str, *, reason: str | None = None
) -> Resource:
    """Withdraw a resource from use; it stays in the catalog, with its versions, as retired."""
    resource = access_resource(session, actor, code)
    authorize(session, actor, "resource.retire", target=code, target_type="resource")
    _check_provider(actor, "resource.retire", resource)
    if resource.status == ResourceStatus.RETIRED:
        return resource
    now = clock.now()
    resource.status = ResourceStatus.RETIRED
    resource.retired_at = now
    resource.updated_at = now
    policies.bump_epoch(session)  # cached plans of this resource are stale
    audit.record(
        session, actor, "resource.retire", target=code, target_type="resource", purpose=reason
    )
    return resource


def restore_resource(
    session: Session, actor: Principal, code: str, *, reason: str | None = None
) -> Resource:
    """Bring a retired resource back into use: published again if it had been, else a draft."""
    resource = access_resource(session, actor, code)
    authorize(session, actor, "resource.restore", target=code, target_type="resource")
    _check_provider(actor, "resource.restore", resource)
    if resource.status != ResourceStatus.RETIRED:
        return resource
    resource.status = (
        ResourceStatus.PUBLISHED if resource.publish_date is not None else ResourceStatus.DRAFT
    )
    resource.retired_at = None
    resource.updated_at = clock.now()
    policies.bump_epoch(session)  # cached plans of this resource are stale
    audit.record(
        session, actor, "resource.restore", target=code, target_type="resource",
        purpose=reason, detail=f"status: retired -> {resource.status}",
    )  # fmt: skip
    return resource


# --- schemas -------------------------------------------------------------------------------


def current_schema(session: Session, resource: Resource) -> ResourceSchema | None:
    """The schema version in force, or None before the first."""
    if resource.current_schema_version is None:
        return None
    return session.scalars(
        select(ResourceSchema).where(
            ResourceSchema.resource_id == resource.id,
            ResourceSchema.version == resource.current_schema_version,
        )
    ).first()


def current_table_schema(session: Session, resource: Resource) -> TableSchema | None:
    """The schema in force, parsed."""
    row = current_schema(session, resource)
    return parse_schema(row.descriptor) if row is not None else None


def schema_history(session: Session, resource: Resource) -> list[ResourceSchema]:
    """Every schema version of the resource, oldest first."""
    rows = session.scalars(
        select(ResourceSchema).where(ResourceSchema.resource_id == resource.id)
    ).all()
    return sorted(rows, key=lambda r: _version_tuple(r.version))


def access_schema(
    session: Session, actor: Principal, code: str, *, version: str | None = None
) -> ResourceSchema:
    """A schema version (the current one by default) of a resource the actor may see."""
    resource = access_resource(session, actor, code)
    wanted = version or resource.current_schema_version
    row = None
    if wanted is not None:
        row = session.scalars(
            select(ResourceSchema).where(
                ResourceSchema.resource_id == resource.id, ResourceSchema.version == wanted
            )
        ).first()
    if row is None:
        raise NotFound(f"resource {code} has no schema {version or ''}".rstrip())
    if internal(actor):
        return row
    # The public sees the public fields only: a copy outside the session, never saved.
    view = ResourceSchema(**{c.key: getattr(row, c.key) for c in ResourceSchema.__table__.columns})
    view.descriptor = visible_descriptor(actor, row.descriptor)
    return view


def _version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def set_schema(
    session: Session,
    actor: Principal,
    code: str,
    descriptor: dict[str, Any],
    *,
    major: bool = False,
) -> ResourceSchema:
    """Record a new schema version: 1.0 first, a minor step for a compatible change, a major
    step for an incompatible one (dropped field, narrower type), which must be asked for."""
    resource = access_resource(session, actor, code)
    authorize(session, actor, "resource.edit", target=code, target_type="resource")
    _check_provider(actor, "resource.edit", resource)
    if resource.status == ResourceStatus.RETIRED:
        raise Conflict(f"resource {code} is retired; its schema can no longer change")
    new = check_loadable(parse_schema(descriptor))
    old_row = current_schema(session, resource)
    if old_row is None:
        version, change = "1.0", "initial"
    else:
        kind = compatibility(parse_schema(old_row.descriptor), new)
        if kind == "same" and not major:
            return old_row
        if kind == "major" and not major:
            raise Conflict(
                f"the new schema of {code} is incompatible with {old_row.version} (a field was "
                "dropped or its type narrowed); send it as a new major version (major=true)",
                code="schema-incompatible",
                current_version=old_row.version,
            )
        m, n = _version_tuple(old_row.version)
        version, change = (f"{m + 1}.0", "major") if major else (f"{m}.{n + 1}", "compatible")
    row = ResourceSchema(
        resource_id=resource.id,
        version=version,
        descriptor=descriptor,
        change=change,
        created_by=actor.label,
        created_at=clock.now(),
    )
    session.add(row)
    resource.current_schema_version = version
    resource.updated_at = clock.now()
    resource.search_text = search_text(resource, new)
    session.flush()
    policies.bump_epoch(session)  # cached plans of this resource are stale
    audit.record(
        session,
        actor,
        "resource.schema",
        target=code,
        target_type="resource",
        detail=f"schema {version} ({change})",
    )
    return row


# --- the catalog pages' views ----------------------------------------------------------------


@dataclass(frozen=True)
class Facet:
    """One value to narrow the catalog by, with how many visible resources have it."""

    code: str
    zh: str
    en: str
    count: int

    def name(self, locale: str) -> str:
        return self.zh if locale == "zh" else self.en


@dataclass(frozen=True)
class CatalogView:
    """The browse page: facets by theme, department and base library, and the matches."""

    filters: Filters
    themes: list[Facet]
    departments: list[Facet]
    libraries: list[Facet]
    resources: list[Resource]
    total: int


BROWSE_LIMIT = 100


def browse(session: Session, actor: Principal, filters: Filters) -> CatalogView:
    """The catalog narrowed by `filters`, with counts of the visible resources per facet."""
    q = (filters.q or "").strip()[:100] or None
    filters = replace(filters, q=q)
    found = list_resources(session, actor, filters, limit=BROWSE_LIMIT)
    total = count_resources(session, actor, filters)
    visible = _visibility(actor)
    by_theme = dict(
        session.execute(
            select(Resource.theme, func.count()).where(visible).group_by(Resource.theme)
        ).all()
    )
    by_library = dict(
        session.execute(
            select(Resource.base_library, func.count())
            .where(visible)
            .group_by(Resource.base_library)
        ).all()
    )
    by_org = session.execute(
        select(Organization.code, Organization.name, func.count())
        .join(Resource, Resource.provider_id == Organization.id)
        .where(visible)
        .group_by(Organization.code, Organization.name)
        .order_by(Organization.code)
    ).all()
    themes = [Facet(t.code, t.zh, t.en, int(by_theme.get(t.code, 0))) for t in THEMES]
    libraries = [
        Facet(t.code, t.zh, t.en, int(by_library.get(t.code, 0)))
        for t in BASE_LIBRARY_BY_CODE.values()
    ]
    departments = [Facet(c, n, n, int(k)) for c, n, k in by_org]
    return CatalogView(filters, themes, departments, libraries, found, total)


@dataclass(frozen=True)
class FieldQuality:
    """One field's figures from a load's quality profile (None when not computed).

    `uniqueness` only for a field whose values must not repeat (`unique` says why: its
    primary key or its unique constraint); `validity` is the share of the version's rows
    that keep the field's rules, `rejected` the rows its load refused for the field.
    """

    name: str
    completeness: float | None
    validity: float | None
    uniqueness: float | None
    distinct: int | None
    minimum: Any
    maximum: Any
    rejected: int | None = None
    unique: str | None = None


@dataclass(frozen=True)
class ResourcePage:
    """A resource's page: metadata, schema in force and its history, loads, quality."""

    resource: Resource
    schema: ResourceSchema | None
    table_schema: TableSchema | None
    schemas: list[ResourceSchema]
    versions: list[Version]
    quality: list[FieldQuality]
    quality_version: Version | None
    may_change: bool
    theme: Any = None
    base_library: Any = None
    internal: bool = True  # loads, quality and lineage are shown
    may_see_jobs: bool = False
    manages: bool = False  # the reader changes this resource (provider's steward, admin)


def quality_fields(quality: Mapping[str, Any] | None) -> list[FieldQuality]:
    """The per-field figures of a Version.quality document, in field order."""
    if not quality:
        return []
    fields: Any = quality.get("fields", quality)
    if isinstance(fields, Mapping):
        items = [(str(k), v) for k, v in fields.items() if isinstance(v, Mapping)]
    elif isinstance(fields, list):
        items = [(str(v.get("name", "")), v) for v in fields if isinstance(v, Mapping)]
    else:
        return []

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, int | float) else None

    def count(value: Any) -> int | None:
        return int(value) if isinstance(value, int | float) else None

    out = []
    for name, v in items:
        # A report that does not say a field must be unique (older ones gave every field a
        # "uniqueness") shows none: a low share of a categorical field is not a defect.
        unique = v.get("unique") if isinstance(v.get("unique"), str) else None
        out.append(
            FieldQuality(
                name=name,
                completeness=number(v.get("completeness")),
                validity=number(v.get("validity")),
                uniqueness=number(v.get("uniqueness")) if unique else None,
                distinct=count(v.get("distinct")),
                minimum=v.get("min"),
                maximum=v.get("max"),
                rejected=count(v.get("rejected")),
                unique=unique,
            )
        )
    return out


def resource_page(session: Session, actor: Principal, code: str) -> ResourcePage:
    """Everything the resource page shows, for an actor who may see the resource.

    Loads, quality and lineage are for civil servants; the quality figures come through the
    reader's quality plan (values such as minimum and maximum only of fields it shows in
    clear); the public sees the metadata and the public fields of open resources.
    """
    resource = access_resource(session, actor, code)
    schema = current_schema(session, resource)
    versions: list[Version] = []
    if internal(actor):
        versions = list(
            session.scalars(
                select(Version)
                .where(Version.resource_id == resource.id)
                .order_by(Version.started_at.desc(), Version.id.desc())
                .limit(50)
            )
        )
    latest = next((v for v in versions if v.quality), None)
    try:
        parsed = parse_schema(visible_descriptor(actor, schema.descriptor)) if schema else None
    except DomainError:
        parsed = None
    manages = policies.manages(actor, resource.provider_id) and actor.has_role("admin", "steward")
    may_change = resource.status != ResourceStatus.RETIRED and manages
    return ResourcePage(
        resource=resource,
        schema=schema,
        table_schema=parsed,
        schemas=schema_history(session, resource),
        versions=versions,
        quality=planned_quality(
            quality_plan(session, actor, resource) if latest else None,
            latest.quality if latest else None,
        ),
        quality_version=latest,
        may_change=may_change,
        theme=THEME_BY_CODE.get(resource.theme or ""),
        base_library=BASE_LIBRARY_BY_CODE.get(resource.base_library or ""),
        internal=internal(actor),
        may_see_jobs=policies.manages(actor, resource.provider_id)
        and decide(session, actor, "jobs.read").allowed,
        manages=manages,
    )


def visible_descriptor(actor: Principal, descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """A schema as its reader may see it: whole for civil servants, public fields for others."""
    if internal(actor):
        return dict(descriptor)
    fields = [
        f
        for f in descriptor.get("fields") or []
        if isinstance(f, Mapping) and f.get("sensitivity") == "public"
    ]
    names = {f["name"] for f in fields}
    shown = {k: v for k, v in descriptor.items() if k not in ("fields", "primaryKey")}
    pk = descriptor.get("primaryKey")
    keys = [pk] if isinstance(pk, str) else list(pk or [])
    if keys and all(k in names for k in keys):
        shown["primaryKey"] = pk
    return {**shown, "fields": fields}


def quality_plan(session: Session, actor: Principal, resource: Resource) -> AccessPlan | None:
    """The reader's plan for quality reports of `resource`, or None: no figures for them."""
    try:
        return authorize(
            session, actor, policies.QUALITY, resource=data_resource(session, resource)
        )
    except DomainError:
        return None


def planned_quality_doc(
    plan: AccessPlan | None, quality: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """A stored quality document as the reader's quality plan shows it (None without a plan)."""
    if not quality or plan is None:
        return None
    fields = quality.get("fields")
    shown: dict[str, Any] = {}
    if isinstance(fields, Mapping):
        for name, figures in fields.items():
            if not isinstance(figures, Mapping):
                continue
            values = name in plan.clear
            shown[name] = {k: v for k, v in figures.items() if values or k not in ("min", "max")}
    return {**{k: v for k, v in quality.items() if k != "fields"}, "fields": shown}


def planned_quality(
    plan: AccessPlan | None, quality: Mapping[str, Any] | None
) -> list[FieldQuality]:
    """A quality report as the reader's quality plan shows it (nothing without a plan).

    Completeness, validity and distinct counts reveal no value: they are shown for every
    field (civil servants see the whole schema anyway); minimum and maximum are values,
    shown only for fields the plan shows in clear.
    """
    if not quality or plan is None:
        return []
    return [
        q if q.name in plan.clear else replace(q, minimum=None, maximum=None)
        for q in quality_fields(quality)
    ]
