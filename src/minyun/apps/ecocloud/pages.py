"""Eco-cloud pages: station map, city ranking, time series, alert inbox and timeline; public /air."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from minyun.apps.ecocloud import geo, response, views
from minyun.apps.ecocloud.aqi import LEVELS
from minyun.apps.ecocloud.models import CityHour, Reading
from minyun.core import clock
from minyun.web.deps import CsrfDep, IdPath, SessionDep
from minyun.web.templating import CHINA_TIME, PageActorDep, render

router = APIRouter(include_in_schema=False)

LEGEND = [
    {"name": lv.category, "colour": lv.colour, "low": lv.low, "high": lv.high} for lv in LEVELS
]
#: Readings older than this are not called current: pages say "data as of" and that they are old.
CURRENT = timedelta(hours=3)


def as_of(hour: datetime | None) -> dict[str, Any]:
    """The hour the page's data ends at, and whether it is too old to be called current."""
    return {"hour": hour, "stale": hour is None or clock.now() - hour > CURRENT}


def _hour_label(hour: Any) -> str:
    return str(hour.astimezone(CHINA_TIME).strftime("%m-%d %H:%M"))


def _series(rows: list[Reading] | list[CityHour], columns: tuple[str, ...]) -> dict[str, Any]:
    """Chart data: hour labels and one list per column (nulls where there is no value)."""
    return {
        "hours": [_hour_label(r.hour) for r in rows],
        **{c: [getattr(r, c) for r in rows] for c in columns},
    }


@router.get("/air")
def public_air(request: Request, session: SessionDep) -> HTMLResponse:
    """Current AQI of every city, for everyone (no sign-in)."""
    cities = views.public_city_aqi(session)
    return render(
        request,
        "eco/air.html",
        cities=cities,
        as_of=as_of(cities[0].hour if cities else None),
        colour_of=views.colour_of,
        levels=LEVELS,
    )


@router.get("/eco")
def station_map(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """Stations coloured by their AQI level over Fujian's city and county outlines (no tiles)."""
    stations = views.station_map(session, actor)
    drawn = geo.city_shapes()
    data = {
        "stations": [s.as_dict() for s in stations],
        "boundaries": geo.BOUNDARIES_URL if drawn else None,
        "labels": geo.cached_label_spots(tuple((s.longitude, s.latitude) for s in stations))
        if drawn
        else [],
    }
    hour = next((s.hour for s in stations if s.hour is not None), None)
    return render(
        request,
        "eco/map.html",
        data=data,
        stations=stations,
        as_of=as_of(hour),
        legend=LEGEND,
        outlines=bool(drawn),
    )


@router.get("/eco/cities")
def cities(
    request: Request, session: SessionDep, actor: PageActorDep, city: str | None = None
) -> HTMLResponse:
    """City ranking of the latest hour, and one city's hourly AQI."""
    ranking = views.city_ranking(session, actor)
    chosen = city or (ranking[0].city if ranking else None)
    series = views.city_series(session, actor, chosen) if chosen else []
    return render(
        request,
        "eco/cities.html",
        ranking=ranking,
        chosen=chosen,
        chart={"title": chosen or "", **_series(series, ("aqi", "pm2_5"))},
        colour_of=views.colour_of,
        as_of=as_of(ranking[0].hour if ranking else None),
    )


@router.get("/eco/stations/{code}")
def station(request: Request, code: str, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """One station: its readings and AQI over time."""
    found = views.get_station(session, actor, code)
    readings = views.station_series(session, actor, code)
    chart = {"title": found.name, **_series(readings, ("aqi", "pm2_5", "pm10", "no2", "o3"))}
    return render(
        request,
        "eco/station.html",
        station=found,
        readings=list(reversed(readings))[:24],
        chart=chart,
        colour_of=views.colour_of,
        as_of=as_of(readings[-1].hour if readings else None),
        outside=views.station_outside_city(found),
    )


@router.get("/eco/alerts")
def alerts(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The alert inbox of the viewer's department, and the latest data-quality findings."""
    return render(
        request,
        "eco/alerts.html",
        alerts=response.list_alerts(session, actor),
        anomalies=views.anomalies(session, actor, limit=20),
        dead_letters=views.dead_letters(session, actor, limit=20),
    )


@router.get("/eco/alerts/{alert_id}")
def alert(
    request: Request, alert_id: IdPath, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """An episode's timeline: detection, routing, consultation, level, actions, close."""
    found = response.access_alert(session, actor, alert_id)
    ok, why = response.readings_back_under(session, found)
    return render(
        request,
        "eco/alert.html",
        alert=found,
        levels=[(lv.value, response.RESPONSE_NAMES[lv]) for lv in response.ResponseLevel],
        suggested=response.suggested_level(found.peak_aqi).value,
        back_under=ok,
        back_under_why=why,
    )


def _back(alert_id: int) -> Response:
    return RedirectResponse(f"/eco/alerts/{alert_id}", 303)


@router.post("/eco/alerts/{alert_id}/consultation", dependencies=[CsrfDep])
def consult(
    alert_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    departments: Annotated[str, Form(max_length=2000)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Start the consultation; departments are codes separated by commas or spaces."""
    codes = [c for c in departments.replace("，", ",").replace(",", " ").split() if c]
    response.start_consultation(session, actor, alert_id, departments=codes, note=note.strip())
    return _back(alert_id)


@router.post("/eco/alerts/{alert_id}/level", dependencies=[CsrfDep])
def level(
    alert_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    level: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Choose the response level."""
    response.set_response_level(session, actor, alert_id, level=level, note=note.strip())
    return _back(alert_id)


@router.post("/eco/alerts/{alert_id}/actions", dependencies=[CsrfDep])
def action(
    alert_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Record an action."""
    response.record_action(session, actor, alert_id, note=note)
    return _back(alert_id)


@router.post("/eco/alerts/{alert_id}/close", dependencies=[CsrfDep])
def close(
    alert_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Close the response (only once readings are back under the threshold)."""
    response.close_alert(session, actor, alert_id, note=note.strip())
    return _back(alert_id)
