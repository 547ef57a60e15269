"""What the pages and the API show: city ranking, the station map, series, anomalies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.apps.ecocloud.aqi import LEVELS
from minyun.apps.ecocloud.models import Anomaly, CityHour, DeadLetter, Reading, Station
from minyun.core.errors import NotFound
from minyun.core.security import Principal, authorize


def _latest_hour(session: Session) -> datetime | None:
    return session.scalar(select(func.max(CityHour.hour)))


def public_city_aqi(session: Session) -> list[CityHour]:
    """Current AQI per city (latest hour): public data, shown without signing in."""
    latest = _latest_hour(session)
    if latest is None:
        return []
    return list(
        session.scalars(
            select(CityHour)
            .where(CityHour.hour == latest)
            .order_by(CityHour.aqi.is_(None), CityHour.aqi, CityHour.city)
        )
    )


def city_ranking(session: Session, actor: Principal) -> list[CityHour]:
    """Cities of the latest hour, cleanest first (the usual 城市排名)."""
    authorize(session, actor, "eco.read", target_type="eco-city")
    return public_city_aqi(session)


@dataclass(frozen=True)
class StationView:
    code: str
    name: str
    city: str
    longitude: float
    latitude: float
    control_point: bool
    aqi: int | None
    level: int | None
    primary_pollutant: str | None
    colour: str
    hour: datetime | None
    missing_pollutants: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        """Whether the station's AQI this hour was computed without some pollutants."""
        return self.aqi is not None and bool(self.missing_pollutants)

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "city": self.city,
            "lon": self.longitude,
            "lat": self.latitude,
            "aqi": self.aqi,
            "level": self.level,
            "primary": self.primary_pollutant or "",
            "colour": self.colour,
            "missing": list(self.missing_pollutants),
        }


NO_DATA_COLOUR = "#9e9e9e"


def colour_of(level: int | None) -> str:
    """The HJ 633 appendix A colour of a level 1–6; grey without an AQI."""
    return NO_DATA_COLOUR if level is None else LEVELS[level - 1].colour


def station_map(session: Session, actor: Principal) -> list[StationView]:
    """Every station with its reading of the latest hour."""
    authorize(session, actor, "eco.read", target_type="eco-station")
    latest = session.scalar(select(func.max(Reading.hour)))
    rows = session.execute(
        select(Station, Reading)
        .outerjoin(Reading, (Reading.station_code == Station.code) & (Reading.hour == latest))
        .order_by(Station.city, Station.code)
    ).all()
    return [
        StationView(
            code=s.code,
            name=s.name,
            city=s.city,
            longitude=s.longitude,
            latitude=s.latitude,
            control_point=s.control_point,
            aqi=r.aqi if r else None,
            level=r.level if r else None,
            primary_pollutant=r.primary_pollutant if r else None,
            colour=colour_of(r.level if r else None),
            hour=latest if r else None,
            missing_pollutants=tuple(r.missing_pollutants) if r else (),
        )
        for s, r in rows
    ]


def get_station(session: Session, actor: Principal, code: str) -> Station:
    """The station, or NotFound."""
    authorize(session, actor, "eco.read", target=code, target_type="eco-station")
    station = session.get(Station, code)
    if station is None:
        raise NotFound(f"no station {code}")
    return station


def station_series(
    session: Session, actor: Principal, code: str, *, hours: int = 72
) -> list[Reading]:
    """The station's readings of its latest `hours` hours, oldest first."""
    get_station(session, actor, code)
    rows = session.scalars(
        select(Reading)
        .where(Reading.station_code == code)
        .order_by(Reading.hour.desc())
        .limit(hours)
    )
    return list(reversed(list(rows)))


def city_series(
    session: Session, actor: Principal, city: str, *, hours: int = 72
) -> list[CityHour]:
    """The city's hourly AQI, oldest first."""
    authorize(session, actor, "eco.read", target=city, target_type="eco-city")
    rows = session.scalars(
        select(CityHour).where(CityHour.city == city).order_by(CityHour.hour.desc()).limit(hours)
    )
    found = list(reversed(list(rows)))
    if not found:
        raise NotFound(f"no readings for city {city}")
    return found


def anomalies(session: Session, actor: Principal, *, limit: int = 200) -> list[Anomaly]:
    """The newest anomalies."""
    authorize(session, actor, "eco.read", target_type="eco-anomaly")
    return list(
        session.scalars(select(Anomaly).order_by(Anomaly.hour.desc(), Anomaly.id).limit(limit))
    )


def dead_letters(session: Session, actor: Principal, *, limit: int = 200) -> list[DeadLetter]:
    """The newest refused readings with their reasons."""
    authorize(session, actor, "eco.read", target_type="eco-dead-letter")
    return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)))


def hulls(stations: Sequence[StationView]) -> dict[str, list[tuple[float, float]]]:
    """Per city, the convex hull of its stations (lat, lon): a rough outline without map tiles."""
    result: dict[str, list[tuple[float, float]]] = {}
    for city in sorted({s.city for s in stations}):
        points = np.array(sorted({(s.longitude, s.latitude) for s in stations if s.city == city}))
        result[city] = [(float(y), float(x)) for x, y in _convex_hull(points)]
    return result


def _convex_hull(points: np.ndarray) -> list[tuple[float, float]]:
    # Andrew's monotone chain; a handful of points per city.
    pts = [tuple(p) for p in points]
    if len(pts) <= 2:
        return pts

    def cross(o: tuple[float, ...], a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, ...]] = []
    upper: list[tuple[float, ...]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return [(float(p[0]), float(p[1])) for p in lower[:-1] + upper[:-1]]
