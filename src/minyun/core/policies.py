"""Who may read what: the named access policies and the plan of one read (`AccessPlan`).

Every read of resource data is planned here. `core.security.authorize` asks the policies in
order; the first that answers decides, none refuses (deny by default). A policy's answer,
a `Verdict`, names the policy, the reader's clearance, the fields it opens (all, or a
subset), a row filter and a row limit. The plan then gives every field of the schema one
treatment: shown in clear up to the clearance, masked above it when the field has a mask,
dropped otherwise. The `core` readers (`core.lake`, `core.serving`) take nothing else.

Metadata has its audience too: civil servants (staff and the departments' API clients) see
the internal catalog, schemas, quality and lineage; citizens, enterprises and anonymous
visitors see what is open.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import BigInteger, Integer, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from minyun.core.db import Base
from minyun.core.errors import DomainError, Forbidden, Invalid
from minyun.core.filters import BoolOp, Node, Not, Test, parse_filter

if TYPE_CHECKING:
    from minyun.core.security import Principal

# Sensitivity levels, lowest first. A field without one is internal.
LEVELS = ("public", "internal", "sensitive", "secret")
DEFAULT_SENSITIVITY = "internal"

# Actions that read resource data; each is planned field by field.
READ = "resource.read"  # rows, key lookups, downloads, previews
REJECTS = "resource.rejects.read"  # the raw records a load refused
QUALITY = "resource.quality.read"  # a version's quality report
DATA_READS = frozenset({READ, REJECTS, QUALITY})


def level(sensitivity: str) -> int:
    """The rank of a sensitivity (public 0 … secret 3); unknown names rank as secret."""
    try:
        return LEVELS.index(sensitivity)
    except ValueError:
        return len(LEVELS) - 1


class Treatment(StrEnum):
    CLEAR = "clear"
    MASK = "mask"
    DROP = "drop"
    # Usable only inside an aggregate of an open dataset's view (count, sum, avg over groups
    # of a minimum size); never selected as a value by any reader.
    AGGREGATE = "aggregate"


@dataclass(frozen=True)
class FieldFacts:
    """What a plan needs of one schema field."""

    name: str
    sensitivity: str = DEFAULT_SENSITIVITY
    mask: str | None = None


@dataclass(frozen=True)
class DataResource:
    """What a plan needs of a resource (the catalog builds it from `Resource` and its schema)."""

    id: int
    code: str
    provider_id: int | None
    status: str
    sharing_type: str
    open_type: str
    fields: tuple[FieldFacts, ...]
    primary_key: tuple[str, ...] = ()
    schema_version: str | None = None
    lake_version: int | None = None  # the newest committed load


@dataclass(frozen=True)
class Verdict:
    """A policy's answer: who opened the read and how far."""

    policy: str
    clearance: str
    fields: frozenset[str] | None = None  # None: every field of the schema
    row_filter: str | None = None  # in the query filter language
    row_limit: int | None = None
    reason: str = ""
    valid_until: datetime | None = None  # a grant's expiry: a cached plan is stale after it
    rate_limit: int | None = None  # calls per minute (a grant's), counted under `quota`
    quota: str | None = None  # the key of the calls' window, e.g. "grant:5"
    purpose: str | None = None  # the purpose a read has when its caller names none
    aggregate: frozenset[str] = frozenset()  # fields above the clearance usable in aggregates


@dataclass(frozen=True)
class FieldPlan:
    name: str
    treatment: Treatment
    sensitivity: str = DEFAULT_SENSITIVITY
    mask: str | None = None


@dataclass(frozen=True)
class AccessPlan:
    """What one read may see: fields and their treatment, rows, purpose, limit, the audit entry."""

    action: str
    actor: Principal
    resource: DataResource
    policy: str
    clearance: str
    fields: tuple[FieldPlan, ...]
    row_filter: Node | None = None
    purpose: str | None = None
    row_limit: int | None = None
    reason: str = ""
    valid_until: datetime | None = None  # after it, a cached copy of the plan must be rebuilt
    rate_limit: int | None = None  # calls per minute under `quota` (core.quotas)
    quota: str | None = None

    @property
    def code(self) -> str:
        return self.resource.code

    @property
    def via(self) -> str:
        return self.policy

    @property
    def visible(self) -> list[str]:
        """The fields the reader receives (in clear or masked), in schema order."""
        return [f.name for f in self.fields if f.treatment in (Treatment.CLEAR, Treatment.MASK)]

    @property
    def aggregated(self) -> frozenset[str]:
        """The fields the reader may use only inside an aggregate (open data views)."""
        return frozenset(f.name for f in self.fields if f.treatment is Treatment.AGGREGATE)

    @property
    def clear(self) -> frozenset[str]:
        """The fields the reader receives in clear."""
        return frozenset(f.name for f in self.fields if f.treatment is Treatment.CLEAR)

    @property
    def masked(self) -> dict[str, str]:
        """Masked field → its mask spec."""
        return {
            f.name: f.mask
            for f in self.fields
            if f.treatment is Treatment.MASK and f.mask is not None
        }

    @property
    def consumer(self) -> str:
        """Who reads, for keyed pseudonyms: the reader's organisation, else the reader."""
        if self.actor.organization_id is not None:
            return f"org:{self.actor.organization_id}"
        return self.actor.label

    def fields_for(self, wanted: Sequence[str] | None) -> list[str]:
        """The fields a request asks for, all visible ones when it names none.

        A hidden field is refused with the same words as a missing one: a reader must not
        learn the names of fields its plan drops.
        """
        if not wanted:
            return self.visible
        shown = set(self.visible)
        for name in wanted:
            if name not in shown:
                raise self.refusal(Invalid(f"unknown field {name!r}", field="fields"))
        return list(wanted)

    def require_clear(self, names: Iterable[str], *, what: str) -> None:
        """Refuse filtering or sorting on a field the reader does not see in clear.

        Filtering on a hidden value leaks it (`ric like '3501%'` narrows a masked number).
        """
        shown = set(self.visible)
        for name in names:
            if name not in shown:
                raise self.refusal(Invalid(f"unknown field {name!r}", field=what))
            if name not in self.clear:
                raise self.refusal(
                    Forbidden(
                        f"{name} is masked for you; it cannot be used in {what}",
                        code="field-not-clear",
                    )
                )

    def refusal(self, error: DomainError) -> DomainError:
        """`error` carrying the audit entry of this plan's refused request."""
        from minyun.core import audit

        error.audit = audit.Pending(
            actor=self.actor,
            action=self.action,
            target=self.code,
            target_type="resource",
            purpose=self.purpose,
            outcome=audit.Outcome.DENIED,
            detail=str(error),
        )
        return error

    def cache_key(self) -> str:
        """A digest of everything the plan depends on (for caches keyed by plan)."""
        parts = [
            self.action,
            self.actor.label,
            str(self.actor.organization_id),
            self.resource.code,
            str(self.resource.schema_version),
            self.policy,
            self.clearance,
            repr(self.fields),
            repr(self.row_filter),
            str(self.row_limit),
        ]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


# --- the policies ------------------------------------------------------------------------------


class Policy(Protocol):
    """A named rule: a Verdict when it opens the read, None when it has nothing to say."""

    @property
    def name(self) -> str: ...

    def evaluate(
        self, session: Session, actor: Principal, action: str, resource: DataResource
    ) -> Verdict | None: ...


PolicyCheck = Callable[[Session, "Principal", str, DataResource], Verdict | None]


@dataclass(frozen=True)
class System:
    """minyun itself (jobs: quality reports, index refreshes): every field in clear."""

    name: str = "system"

    def evaluate(
        self, session: Session, actor: Principal, action: str, resource: DataResource
    ) -> Verdict | None:
        if actor.kind != "system":
            return None
        return Verdict(self.name, "secret", reason="minyun itself")


@dataclass(frozen=True)
class Admin:
    """A platform administrator reads every resource, in clear only up to `internal`."""

    name: str = "admin"
    clearance: str = "internal"

    def evaluate(
        self, session: Session, actor: Principal, action: str, resource: DataResource
    ) -> Verdict | None:
        if actor.kind != "user" or "admin" not in actor.roles or action not in DATA_READS:
            return None
        return Verdict(self.name, self.clearance, reason="administrator")


@dataclass(frozen=True)
class ProviderSteward:
    """A data steward of the providing organisation reads its resources in full.

    Membership alone opens nothing: a member of the department without a data role reads
    no rows.
    """

    name: str = "provider-steward"
    clearance: str = "secret"
    roles: frozenset[str] = frozenset({"steward"})

    def evaluate(
        self, session: Session, actor: Principal, action: str, resource: DataResource
    ) -> Verdict | None:
        if (
            actor.kind != "user"
            or resource.provider_id is None
            or actor.organization_id != resource.provider_id
            or not actor.roles & self.roles
            or action not in DATA_READS
        ):
            return None
        return Verdict(self.name, self.clearance, reason="steward of the providing department")


@dataclass(frozen=True)
class ProviderClient:
    """An API client of the providing organisation: rows with the `resource.read` scope, and
    the rejects of its loads with the `resource.load` scope."""

    name: str = "provider-client"
    scopes: tuple[tuple[str, str], ...] = ((READ, "resource.read"), (REJECTS, "resource.load"))
    clearance: str = "sensitive"

    def evaluate(
        self, session: Session, actor: Principal, action: str, resource: DataResource
    ) -> Verdict | None:
        needed = dict(self.scopes).get(action)
        if (
            actor.kind != "client"
            or needed is None
            or needed not in actor.scopes
            or resource.provider_id is None
            or actor.organization_id != resource.provider_id
        ):
            return None
        return Verdict(self.name, self.clearance, reason=f"provider's client with {needed}")


@dataclass(frozen=True)
class CivilServantQuality:
    """Any civil servant sees a resource's quality report, values only of public fields."""

    name: str = "civil-servant-quality"

    def evaluate(
        self, session: Session, actor: Principal, action: str, resource: DataResource
    ) -> Verdict | None:
        if action != QUALITY or audience(actor) != "internal" or resource.status == "draft":
            return None
        return Verdict(self.name, "public", reason="quality report for civil servants")


@dataclass
class Registry:
    """A plug point: checks registered by a later issue (sharing grants, open data)."""

    name: str
    checks: list[PolicyCheck] = field(default_factory=list)

    def register(self, check: PolicyCheck) -> PolicyCheck:
        self.checks.append(check)
        return check

    def evaluate(
        self, session: Session, actor: Principal, action: str, resource: DataResource
    ) -> Verdict | None:
        for check in self.checks:
            verdict = check(session, actor, action, resource)
            if verdict is not None:
                return verdict
        return None


GRANTS = Registry("grant")  # the sharing issue registers approved grants here


@dataclass(frozen=True)
class OpenRelease:
    """What the released open datasets of a resource open, together (`minyun.opendata`).

    `fields` are shown in clear (the release check let only public ones through),
    `aggregate` only inside an aggregate of a view, `row_filter` is the union of the views'
    row filters (None: some view opens every row).
    """

    datasets: tuple[str, ...]
    fields: frozenset[str]
    aggregate: frozenset[str] = frozenset()
    row_filter: str | None = None


ReleaseFinder = Callable[[Session, DataResource], OpenRelease | None]


@dataclass
class OpenData:
    """Open data (公共数据开放): anyone, anonymous visitors too, reads what a release opened.

    Only `resource.read` of a published resource whose open type is unconditional, and only
    what its released open datasets open; the clearance is `public`, so a field above it
    reaches nobody in clear, whatever a release says (it is dropped, or usable only in an
    aggregate). Conditionally open resources are read through an approved application's grant
    (`GRANTS`); a resource not open is never answered here.
    """

    name: str = "open-data"
    clearance: str = "public"
    finders: list[ReleaseFinder] = field(default_factory=list)

    def register(self, finder: ReleaseFinder) -> ReleaseFinder:
        self.finders.append(finder)
        return finder

    def evaluate(
        self, session: Session, actor: Principal, action: str, resource: DataResource
    ) -> Verdict | None:
        if (
            action != READ
            or resource.status != "published"
            or resource.open_type != "unconditional"
        ):
            return None
        for finder in self.finders:
            release = finder(session, resource)
            if release is not None and release.datasets:
                return Verdict(
                    self.name,
                    self.clearance,
                    fields=release.fields,
                    row_filter=release.row_filter,
                    aggregate=release.aggregate,
                    reason=f"open dataset {','.join(release.datasets)}",
                )
        return None


OPEN_DATA = OpenData()  # minyun.opendata registers the finder of released open datasets
# A person or enterprise reading the rows linked to their own subject (minyun.subjects.policy).
DATA_SUBJECTS = Registry("data-subject")

POLICIES: tuple[Policy, ...] = (
    System(),
    Admin(),
    ProviderSteward(),
    ProviderClient(),
    GRANTS,
    OPEN_DATA,
    DATA_SUBJECTS,
    CivilServantQuality(),
)


def evaluate(
    session: Session, actor: Principal, action: str, resource: DataResource
) -> Verdict | None:
    """The first policy's verdict, or None: deny by default."""
    for policy in POLICIES:
        verdict = policy.evaluate(session, actor, action, resource)
        if verdict is not None:
            return verdict
    return None


def field_plans(resource: DataResource, verdict: Verdict) -> tuple[FieldPlan, ...]:
    """Each field's treatment: clear up to the clearance, masked above it, else dropped.

    A field the verdict opens for aggregates only (open data views) is usable in them alone.
    """
    ceiling = level(verdict.clearance)
    plans = []
    for f in resource.fields:
        granted = verdict.fields is None or f.name in verdict.fields
        if granted and level(f.sensitivity) <= ceiling:
            treatment = Treatment.CLEAR
        elif f.name in verdict.aggregate:
            treatment = Treatment.AGGREGATE
        elif not granted:
            treatment = Treatment.DROP
        elif f.mask is not None:
            treatment = Treatment.MASK
        else:
            treatment = Treatment.DROP
        mask = f.mask if treatment is Treatment.MASK else None
        plans.append(FieldPlan(f.name, treatment, f.sensitivity, mask))
    return tuple(plans)


def plan_for(
    actor: Principal,
    action: str,
    resource: DataResource,
    verdict: Verdict,
    *,
    purpose: str | None = None,
) -> AccessPlan:
    """The plan a verdict gives; its row filter may name only fields the plan shows in clear."""
    fields = field_plans(resource, verdict)
    row_filter = parse_filter(verdict.row_filter) if verdict.row_filter else None
    plan = AccessPlan(
        action=action,
        actor=actor,
        resource=resource,
        policy=verdict.policy,
        clearance=verdict.clearance,
        fields=fields,
        row_filter=row_filter,
        purpose=purpose or verdict.purpose,
        row_limit=verdict.row_limit,
        reason=verdict.reason,
        valid_until=verdict.valid_until,
        rate_limit=verdict.rate_limit,
        quota=verdict.quota,
    )
    return plan


def filter_fields(node: Node | None) -> set[str]:
    """Every field a filter tests."""
    names: set[str] = set()
    pending: list[Node | None] = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, BoolOp):
            pending.extend(item.items)
        elif isinstance(item, Not):
            pending.append(item.item)
        elif isinstance(item, Test):
            names.add(item.field.name)
    return names


def manages(actor: Principal, provider_id: int | None) -> bool:
    """Whether the actor changes the provider's resources and sees its drafts and loads.

    minyun itself, an administrator, a steward of the providing organisation, or the
    provider's own API client (its scopes decide what it may do). Membership alone is not
    enough: a member of the department without a data role manages nothing.
    """
    if actor.kind == "system" or (actor.kind == "user" and "admin" in actor.roles):
        return True
    if provider_id is None or actor.organization_id != provider_id:
        return False
    return actor.kind == "client" or bool(actor.roles & {"steward"})


# --- plan caches ---------------------------------------------------------------------------


class PlanEpoch(Base):
    """A counter every change that can alter a plan moves on (grants, roles, types, status).

    Plan caches key their entries by it, so a change invalidates every cached plan in every
    process at once: the hot path reads the counter in the same query as the row.
    """

    __tablename__ = "plan_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


def bump_epoch(session: Session) -> None:
    """Invalidate every cached plan when the caller's transaction commits."""
    session.execute(update(PlanEpoch).where(PlanEpoch.id == 1).values(value=PlanEpoch.value + 1))


def current_epoch(session: Session) -> int:
    """The counter as this transaction sees it."""
    return int(session.scalar(select(PlanEpoch.value).where(PlanEpoch.id == 1)) or 0)


# --- metadata --------------------------------------------------------------------------------


def audience(actor: Principal) -> str:
    """`internal` for civil servants (staff, departments' clients, minyun), else `open`.

    Citizens, enterprises and anonymous visitors see the open catalog only.
    """
    if actor.kind in ("system", "client"):
        return "internal"
    if actor.kind == "user" and actor.account_kind in (None, "staff"):
        return "internal"
    return "open"


def describe(plan: AccessPlan) -> dict[str, Any]:
    """The plan as structured data for its audit record."""
    return {
        "policy": plan.policy,
        "clear": sorted(plan.clear),
        "masked": sorted(plan.masked),
        "dropped": sorted(f.name for f in plan.fields if f.treatment is Treatment.DROP),
        "aggregated": sorted(plan.aggregated),
    }
