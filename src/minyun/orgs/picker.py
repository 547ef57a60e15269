"""Organisations grouped for a department picker: the province's own first, then by city."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.core.security import Principal
from minyun.orgs import service
from minyun.orgs.models import Division


@dataclass(frozen=True)
class PickerGroup:
    """The organisations of one city (its counties' included), or of the province itself."""

    name: str
    organizations: list[tuple[str, str]]  # (code, name)


def picker_groups(session: Session, actor: Principal) -> list[PickerGroup]:
    """Every organisation the actor may see, grouped by the city it sits in, province first
    (GB/T 2260: a city's code ends in 00, the province's in 0000, so it sorts first)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for org in service.list_organizations(session, actor):
        groups.setdefault(org.division_code[:4] + "00", []).append((org.code, org.name))
    names = {
        code: name
        for code, name in session.execute(
            select(Division.code, Division.name).where(Division.code.in_(groups))
        )
    }
    return [PickerGroup(names.get(city, city), orgs) for city, orgs in sorted(groups.items())]
