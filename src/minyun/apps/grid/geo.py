"""Where a point is: its grid, community, street and district (division codes), by shapely."""

from __future__ import annotations

from dataclasses import dataclass

from shapely.geometry import Point, shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.grid.models import Area, AreaLevel

# Fujian's extent (WGS-84) with a margin: a point outside it is not the province's to handle.
PROVINCE_BOUNDS = (115.8, 23.4, 120.8, 28.4)  # min long, min lat, max long, max lat


@dataclass(frozen=True)
class Placement:
    """A point's place in the grid hierarchy; codes are None where no grid covers it."""

    lat: float
    long: float
    district_code: str
    grid_code: str | None = None
    grid_name: str | None = None
    community_code: str | None = None
    community_name: str | None = None
    street_code: str | None = None
    street_name: str | None = None

    @property
    def address(self) -> str:
        """The place from most general to most specific, as Chinese addresses are written."""
        return "".join(n for n in (self.street_name, self.community_name, self.grid_name) if n)


def in_province(lat: float, long: float) -> bool:
    x0, y0, x1, y1 = PROVINCE_BOUNDS
    return x0 <= long <= x1 and y0 <= lat <= y1


def find_area(session: Session, lat: float, long: float, level: str) -> Area | None:
    """The area of `level` that covers the point (bounding boxes in SQL, then the outline)."""
    candidates = session.scalars(
        select(Area)
        .where(Area.level == level)
        .where(Area.min_lon <= long, Area.max_lon >= long)
        .where(Area.min_lat <= lat, Area.max_lat >= lat)
        .order_by(Area.code)
    )
    point = Point(long, lat)
    for area in candidates:
        if shape(area.geometry).covers(point):
            return area
    return None


def locate(session: Session, lat: float, long: float, *, district_code: str) -> Placement:
    """The grid, community and street covering the point, with their names."""
    grid = find_area(session, lat, long, AreaLevel.GRID)
    if grid is None:
        return Placement(lat, long, district_code)
    community = session.get(Area, grid.parent_code) if grid.parent_code else None
    street = (
        session.get(Area, community.parent_code) if community and community.parent_code else None
    )
    return Placement(
        lat,
        long,
        grid.district_code,
        grid.code,
        grid.name,
        community.code if community else None,
        community.name if community else None,
        street.code if street else None,
        street.name if street else None,
    )
