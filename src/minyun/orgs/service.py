"""Divisions and organisations: loading GB/T 2260 codes, creating departments and units."""

from __future__ import annotations

import csv
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


def create_organization(
    session: Session,
    actor: Principal,
    *,
    code: str,
    name: str,
    uscc: str,
    division_code: str,
    kind: OrgKind = OrgKind.DEPARTMENT,
    parent_id: int | None = None,
) -> Organization:
    """Register a department or unit under a division; its credit code must be valid."""
    authorize(session, actor, "org.manage", target=code, target_type="organization")
    if not ORG_CODE.match(code):
        raise Invalid("code: 2–32 of a-z 0-9 -", field="code")
    try:
        identifiers.validate_uscc(uscc)
    except ValueError as exc:
        raise Invalid(f"uscc: {exc}", field="uscc") from exc
    get_division(session, division_code)
    if parent_id is not None and session.get(Organization, parent_id) is None:
        raise Invalid("parent organisation does not exist", field="parent")
    clash = session.scalars(
        select(Organization.code).where((Organization.code == code) | (Organization.uscc == uscc))
    ).first()
    if clash is not None:
        raise Conflict(f"an organisation with this code or credit code exists ({clash})")
    org = Organization(
        code=code, name=name, uscc=uscc, division_code=division_code, kind=kind, parent_id=parent_id
    )
    session.add(org)
    session.flush()
    audit.record(session, actor, "org.create", target=code, target_type="organization")
    return org


def get_organization(session: Session, code: str) -> Organization:
    """The organisation with this code, or NotFound."""
    org = session.scalars(select(Organization).where(Organization.code == code)).first()
    if org is None:
        raise NotFound(f"no organisation {code}")
    return org


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
