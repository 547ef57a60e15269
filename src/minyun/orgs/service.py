"""Divisions and organisations: loading GB/T 2260 codes, creating departments and units."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.core import audit, identifiers
from minyun.core.errors import Conflict, Invalid, NotFound
from minyun.core.security import Principal, authorize
from minyun.orgs.models import Division, Level, Organization, OrgKind

DIVISION_DIGITS = {
    Level.PROVINCE: 6,
    Level.CITY: 6,
    Level.COUNTY: 6,
    Level.TOWNSHIP: 9,
    Level.VILLAGE: 12,
}
ORG_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{1,31}$")


def packaged_divisions() -> list[dict[str, str]]:
    """The Fujian division table shipped with minyun (code, name, level, parent_code)."""
    text = resources.files("minyun.core").joinpath("data/divisions.csv").read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


def load_divisions(session: Session, rows: Iterable[dict[str, str]]) -> int:
    """Insert divisions not yet present, parents first; returns how many were added."""
    existing = set(session.scalars(select(Division.code)))
    added = 0
    ordered = sorted(rows, key=lambda r: list(Level).index(Level(r["level"])))
    for row in ordered:
        code, level = row["code"].strip(), Level(row["level"].strip())
        if len(code) != DIVISION_DIGITS[level] or not code.isdigit():
            raise Invalid(f"division {code}: a {level} code has {DIVISION_DIGITS[level]} digits")
        if code in existing:
            continue
        parent = (row.get("parent_code") or "").strip() or None
        if parent is not None and parent not in existing:
            raise Invalid(f"division {code}: parent {parent} is unknown")
        session.add(Division(code=code, name=row["name"].strip(), level=level, parent_code=parent))
        existing.add(code)
        added += 1
    session.flush()
    return added


def division_prefix(code: str) -> str:
    """The code prefix shared by a division and everything under it (GB/T 2260 layout)."""
    if len(code) == 6 and code.endswith("0000"):
        return code[:2]
    if len(code) == 6 and code.endswith("00"):
        return code[:4]
    return code


def get_division(session: Session, code: str) -> Division:
    """The division, or NotFound."""
    division = session.get(Division, code)
    if division is None:
        raise NotFound(f"no division {code}")
    return division


def child_divisions(session: Session, code: str | None) -> list[Division]:
    """The divisions directly under `code` (the province when None)."""
    query = select(Division).order_by(Division.code)
    query = (
        query.where(Division.parent_code == code)
        if code
        else query.where(Division.parent_code.is_(None))
    )
    return list(session.scalars(query))


NAME_MAX = 200


def create_organization(
    session: Session,
    actor: Principal,
    *,
    code: str,
    name: str,
    uscc: str,
    division_code: str,
    kind: OrgKind | None = None,
    parent_id: int | None = None,
    parent: str | None = None,
) -> Organization:
    """Register a department or unit under a shipped division; its credit code must be valid.

    `parent` (a code) or `parent_id` names the department a unit belongs to; the kind is a
    unit when a parent is given, else a department, unless `kind` says otherwise.
    """
    authorize(session, actor, "org.manage", target=code, target_type="organization")
    if not ORG_CODE.match(code):
        raise Invalid("code: 2–32 of a-z 0-9 -", field="code", code="org-code")
    name = _checked_name(name)
    _check_uscc(uscc)
    _check_division(session, division_code)
    above = _parent(session, parent, parent_id)
    if session.scalars(select(Organization.id).where(Organization.code == code)).first():
        raise Conflict(
            f"an organisation with the code {code} exists", field="code", code="org-code-taken"
        )
    _check_uscc_free(session, uscc, None)
    org = Organization(
        code=code,
        name=name,
        uscc=uscc,
        division_code=division_code,
        kind=kind or (OrgKind.UNIT if above is not None else OrgKind.DEPARTMENT),
        parent_id=above.id if above is not None else None,
    )
    session.add(org)
    session.flush()
    audit.record(
        session, actor, "org.create", target=code, target_type="organization",
        detail=_json(_facts(session, org)),
    )  # fmt: skip
    return org


def update_organization(
    session: Session,
    actor: Principal,
    code: str,
    *,
    name: str | None = None,
    uscc: str | None = None,
    division_code: str | None = None,
    kind: OrgKind | None = None,
    parent: str | None = None,
    clear_parent: bool = False,
) -> Organization:
    """Change an organisation's name, credit code, division, kind or parent (admins).

    The code is its identifier and never changes. A unit cannot sit under itself or under one
    of its own units. The audit record names each changed field before and after.
    """
    authorize(session, actor, "org.manage", target=code, target_type="organization")
    org = get_organization(session, code)
    before = _facts(session, org)
    if name is not None:
        org.name = _checked_name(name)
    if uscc is not None and uscc != org.uscc:
        _check_uscc(uscc)
        _check_uscc_free(session, uscc, org.id)
        org.uscc = uscc
    if division_code is not None and division_code != org.division_code:
        org.division = _check_division(session, division_code)
    if kind is not None:
        org.kind = kind
    if clear_parent:
        org.parent_id = None
    elif parent is not None:
        above = _parent(session, parent, None)
        if above is not None and code in _chain_up(session, above):
            raise Invalid(
                "an organisation cannot sit under itself or one of its own units",
                field="parent", code="parent-cycle",
            )  # fmt: skip
        org.parent_id = above.id if above is not None else None
    session.flush()
    after = _facts(session, org)
    changed = sorted(k for k in after if after[k] != before[k])
    if changed:
        audit.record(
            session, actor, "org.edit", target=code, target_type="organization",
            detail=_json({"fields": changed, "before": {k: before[k] for k in changed},
                          "after": {k: after[k] for k in changed}}),
        )  # fmt: skip
    return org


def _checked_name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > NAME_MAX:
        raise Invalid(f"name: 1–{NAME_MAX} characters", field="name", code="org-name")
    return name


def _check_uscc(uscc: str) -> None:
    try:
        identifiers.validate_uscc(uscc)
    except ValueError as exc:
        raise Invalid(f"uscc: {exc}", field="uscc", code="invalid-uscc") from exc


def _check_uscc_free(session: Session, uscc: str, own_id: int | None) -> None:
    holder = session.scalars(select(Organization).where(Organization.uscc == uscc)).first()
    if holder is not None and holder.id != own_id:
        raise Conflict(
            f"the credit code {uscc} belongs to {holder.code}", field="uscc", code="uscc-taken"
        )


def _check_division(session: Session, division_code: str) -> Division:
    division = session.get(Division, division_code)
    if division is None:
        raise Invalid(
            f"division {division_code} is not one of the shipped Fujian divisions (GB/T 2260)",
            field="division_code", code="unknown-division",
        )  # fmt: skip
    return division


def _parent(session: Session, parent: str | None, parent_id: int | None) -> Organization | None:
    if parent:
        found = session.scalars(select(Organization).where(Organization.code == parent)).first()
    elif parent_id is not None:
        found = session.get(Organization, parent_id)
    else:
        return None
    if found is None:
        raise Invalid("parent organisation does not exist", field="parent", code="unknown-parent")
    return found


def _chain_up(session: Session, org: Organization) -> set[str]:
    """The codes of `org` and every organisation above it."""
    seen: set[str] = set()
    current: Organization | None = org
    while current is not None and current.code not in seen:
        seen.add(current.code)
        current = session.get(Organization, current.parent_id) if current.parent_id else None
    return seen


def _facts(session: Session, org: Organization) -> dict[str, str | None]:
    parent = session.get(Organization, org.parent_id) if org.parent_id else None
    return {
        "name": org.name,
        "uscc": org.uscc,
        "division_code": org.division_code,
        "kind": str(org.kind),
        "parent": parent.code if parent else None,
    }


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def get_organization(session: Session, code: str) -> Organization:
    """The organisation with this code, or NotFound."""
    org = session.scalars(select(Organization).where(Organization.code == code)).first()
    if org is None:
        raise NotFound(f"no organisation {code}")
    return org


def find_organization(session: Session, code: str) -> Organization | None:
    """The organisation with this code, or None."""
    return session.scalars(select(Organization).where(Organization.code == code)).first()


def access_organization(session: Session, actor: Principal, code: str) -> Organization:
    """The organisation, if the actor may see it."""
    authorize(session, actor, "org.read", target=code, target_type="organization")
    return get_organization(session, code)


def list_organizations(
    session: Session, actor: Principal, *, division_code: str | None = None, q: str | None = None
) -> list[Organization]:
    """Organisations, optionally under one division (and its children) or matching a name."""
    authorize(session, actor, "org.read")
    query = select(Organization).order_by(Organization.division_code, Organization.code)
    if division_code:
        prefix = division_prefix(division_code)
        query = query.where(Organization.division_code.startswith(prefix))
    if q:
        query = query.where(Organization.name.contains(q))
    return list(session.scalars(query))


def organization_codes(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """The codes of the organisations with these ids (for showing parents)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    found = session.execute(
        select(Organization.id, Organization.code).where(Organization.id.in_(wanted))
    )
    return {int(i): str(c) for i, c in found}


def count_organizations(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Organization)) or 0)


# --- the directory pages' views -------------------------------------------------------

DIRECTORY_LIMIT = 200


@dataclass(frozen=True)
class DivisionNode:
    """A division with the number of organisations under it (its own and its children's)."""

    division: Division
    count: int
    children: list[DivisionNode]


@dataclass(frozen=True)
class Directory:
    """The division tree, the division chosen, and the organisations that match."""

    tree: list[DivisionNode]
    selected: Division | None
    q: str
    organizations: list[Organization]
    total: int


def directory(
    session: Session, actor: Principal, *, division_code: str | None = None, q: str | None = None
) -> Directory:
    """Province → cities → counties with organisation counts, and the matching organisations."""
    q = (q or "").strip()[:100]
    found = list_organizations(session, actor, division_code=division_code, q=q or None)
    selected = get_division(session, division_code) if division_code else None
    counts = dict(
        session.execute(
            select(Organization.division_code, func.count()).group_by(Organization.division_code)
        ).all()
    )
    shown = [Level.PROVINCE, Level.CITY, Level.COUNTY]
    divisions = session.scalars(
        select(Division).where(Division.level.in_(shown)).order_by(Division.code)
    ).all()
    by_parent: dict[str | None, list[Division]] = {}
    for division in divisions:
        by_parent.setdefault(division.parent_code, []).append(division)

    def node(division: Division) -> DivisionNode:
        children = [node(child) for child in by_parent.get(division.code, [])]
        prefix = division_prefix(division.code)
        own = sum(n for code, n in counts.items() if code.startswith(prefix))
        return DivisionNode(division, own, children)

    tree = [node(root) for root in by_parent.get(None, [])]
    return Directory(tree, selected, q, found[:DIRECTORY_LIMIT], len(found))


@dataclass(frozen=True)
class OrganizationProfile:
    """An organisation with where it sits: its divisions from the province down, parent, units."""

    organization: Organization
    divisions: list[Division]
    parent: Organization | None
    units: list[Organization]


def organization_profile(session: Session, actor: Principal, code: str) -> OrganizationProfile:
    """One organisation's page: the organisation, its division path, parent and units."""
    org = access_organization(session, actor, code)
    path: list[Division] = []
    division: Division | None = org.division
    while division is not None:
        path.insert(0, division)
        division = session.get(Division, division.parent_code) if division.parent_code else None
    parent = session.get(Organization, org.parent_id) if org.parent_id is not None else None
    units = list(
        session.scalars(
            select(Organization).where(Organization.parent_id == org.id).order_by(Organization.code)
        )
    )
    return OrganizationProfile(org, path, parent, units)


# --- pickers: divisions and organisations grouped by city, for forms ------------------


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class ChoiceGroup:
    """Choices under one heading (a city, or the province itself)."""

    label: str
    choices: list[Choice]


def _city_of(code: str) -> str:
    """The city-level division code a division code lies in (the province's own for 35xx00 0000)."""
    if code.endswith("0000"):
        return code[:6]
    return code[:4] + "00"


def division_groups(session: Session, actor: Principal) -> list[ChoiceGroup]:
    """The shipped divisions to pick from: the province, then each city with its counties."""
    authorize(session, actor, "org.read")
    divisions = list(session.scalars(select(Division).order_by(Division.code)))
    names = {d.code: d.name for d in divisions}
    groups: dict[str, list[Choice]] = {}
    for d in divisions:
        label = (
            d.name if d.code == _city_of(d.code) else f"{names.get(_city_of(d.code), '')}{d.name}"
        )
        groups.setdefault(_city_of(d.code), []).append(Choice(d.code, label))
    return [ChoiceGroup(names.get(city, city), choices) for city, choices in groups.items()]


def organization_groups(session: Session, actor: Principal) -> list[ChoiceGroup]:
    """Every organisation to pick from, grouped by the city (or province) it sits in."""
    authorize(session, actor, "org.read")
    names = {str(c): str(n) for c, n in session.execute(select(Division.code, Division.name))}
    found = session.scalars(
        select(Organization).order_by(Organization.division_code, Organization.name)
    )
    groups: dict[str, list[Choice]] = {}
    for org in found:
        groups.setdefault(_city_of(org.division_code), []).append(Choice(org.code, org.name))
    return [ChoiceGroup(names.get(city, city), choices) for city, choices in sorted(groups.items())]
