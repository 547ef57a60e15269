"""What the pages and the API show: city ranking, the station map, series, anomalies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.apps.ecocloud import geo
from minyun.apps.ecocloud.aqi import LEVELS
from minyun.apps.ecocloud.models import Anomaly, CityHour, DeadLetter, Reading, Station
from minyun.core.errors import NotFound
from minyun.core.security import Principal, Role, authorize
from minyun.orgs.models import Division, Organization


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
    #: The source coordinates lie outside the station's city (e.g. a longitude typed wrong).
    outside_city: bool = False

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
            "outside": self.outside_city,
        }


NO_DATA_COLOUR = "#9e9e9e"


def colour_of(level: int | None) -> str:
    """The HJ 633 appendix A colour of a level 1–6; grey without an AQI."""
    return NO_DATA_COLOUR if level is None else LEVELS[level - 1].colour


def station_map(session: Session, actor: Principal) -> list[StationView]:
    """Every station with its reading of the latest hour, flagged when outside its city."""
    authorize(session, actor, "eco.read", target_type="eco-station")
    latest = session.scalar(select(func.max(Reading.hour)))
    rows = session.execute(
        select(Station, Reading)
        .outerjoin(Reading, (Reading.station_code == Station.code) & (Reading.hour == latest))
        .order_by(Station.city, Station.code)
    ).all()
    outside = geo.outside_their_city(
        geo.city_shapes(),
        [s.city for s, _ in rows],
        [s.longitude for s, _ in rows],
        [s.latitude for s, _ in rows],
    )
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
            outside_city=out,
        )
        for (s, r), out in zip(rows, outside, strict=True)
    ]


def station_outside_city(station: Station) -> bool:
    """Whether the station's source coordinates lie outside its city's outline."""
    return geo.outside_their_city(
        geo.city_shapes(), [station.city], [station.longitude], [station.latitude]
    )[0]


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


def station_scope(session: Session, actor: Principal) -> set[str] | None:
    """The stations whose findings the actor is shown; None for all of them.

    Admins and provincial departments see the whole province; a city's (or county's)
    department sees its own city's stations; an account of no department sees none.
    """
    if actor.kind == "system" or actor.has_role(Role.ADMIN):
        return None
    if actor.organization_id is None:
        return set()
    division = session.scalar(
        select(Division)
        .join(Organization, Organization.division_code == Division.code)
        .where(Organization.id == actor.organization_id)
    )
    if division is None:
        return set()
    if division.level == "county" and division.parent_code is not None:
        city = division.parent_code
    elif division.level == "city":
        city = division.code
    else:
        return None  # the province
    return set(session.scalars(select(Station.code).where(Station.division_code == city)))


def anomalies(session: Session, actor: Principal, *, limit: int = 200) -> list[Anomaly]:
    """The newest anomalies of the stations the actor is shown (their city's; admins all)."""
    authorize(session, actor, "eco.read", target_type="eco-anomaly")
    query = select(Anomaly).order_by(Anomaly.hour.desc(), Anomaly.id).limit(limit)
    scope = station_scope(session, actor)
    if scope is not None:
        query = query.where(Anomaly.station_code.in_(scope))
    return list(session.scalars(query))


def _station_of(payload: str) -> str | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    code = value.get("station_code") if isinstance(value, dict) else None
    return code if isinstance(code, str) else None


def dead_letters(session: Session, actor: Principal, *, limit: int = 200) -> list[DeadLetter]:
    """The newest refused readings with their reasons: of the actor's city's stations.

    A refused payload names its station in its JSON (there is no column for it), so a city
    department's view reads a few times `limit` of the newest and keeps those of its stations;
    what names no known station is shown to admins and the province only.
    """
    authorize(session, actor, "eco.read", target_type="eco-dead-letter")
    query = select(DeadLetter).order_by(DeadLetter.id.desc())
    scope = station_scope(session, actor)
    if scope is None:
        return list(session.scalars(query.limit(limit)))
    found = session.scalars(query.limit(limit * 5))
    return [d for d in found if _station_of(d.payload) in scope][:limit]
