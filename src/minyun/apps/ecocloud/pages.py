"""Eco-cloud pages: station map, city ranking, time series, alert inbox and timeline; public /air."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from minyun.apps.ecocloud import service
from minyun.apps.ecocloud.aqi import LEVELS
from minyun.apps.ecocloud.models import CityHour, Reading
from minyun.web.deps import CsrfDep, IdPath, SessionDep
from minyun.web.templating import CHINA_TIME, PageActorDep, render

router = APIRouter(include_in_schema=False)

LEGEND = [
    {"name": lv.category, "colour": lv.colour, "low": lv.low, "high": lv.high} for lv in LEVELS
]


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
    cities = service.public_city_aqi(session)
    return render(
        request,
        "eco/air.html",
        cities=cities,
        hour=cities[0].hour if cities else None,
        colour_of=service.colour_of,
        legend=LEGEND,
    )


@router.get("/eco")
def station_map(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """Stations on a blank map, coloured by their AQI level, with each city's outline."""
    stations = service.station_map(session, actor)
    data = {
        "stations": [s.as_dict() for s in stations],
        "outlines": service.hulls(stations),
    }
    hour = next((s.hour for s in stations if s.hour is not None), None)
    return render(request, "eco/map.html", data=data, stations=stations, hour=hour, legend=LEGEND)


@router.get("/eco/cities")
def cities(
    request: Request, session: SessionDep, actor: PageActorDep, city: str | None = None
) -> HTMLResponse:
    """City ranking of the latest hour, and one city's hourly AQI."""
    ranking = service.city_ranking(session, actor)
    chosen = city or (ranking[0].city if ranking else None)
    series = service.city_series(session, actor, chosen) if chosen else []
    return render(
        request,
        "eco/cities.html",
        ranking=ranking,
        chosen=chosen,
        chart={"title": chosen or "", **_series(series, ("aqi", "pm2_5"))},
        colour_of=service.colour_of,
    )


@router.get("/eco/stations/{code}")
def station(request: Request, code: str, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """One station: its readings and AQI over time."""
    found = service.get_station(session, actor, code)
    readings = service.station_series(session, actor, code)
    chart = {"title": found.name, **_series(readings, ("aqi", "pm2_5", "pm10", "no2", "o3"))}
    return render(
        request,
        "eco/station.html",
        station=found,
        readings=list(reversed(readings))[:24],
        chart=chart,
        colour_of=service.colour_of,
    )


@router.get("/eco/alerts")
def alerts(request: Request, session: SessionDep, actor: PageActorDep) -> HTMLResponse:
    """The alert inbox of the viewer's department, and the latest data-quality findings."""
    return render(
        request,
        "eco/alerts.html",
        alerts=service.list_alerts(session, actor),
        anomalies=service.anomalies(session, actor, limit=20),
        dead_letters=service.dead_letters(session, actor, limit=20),
    )


@router.get("/eco/alerts/{alert_id}")
def alert(
    request: Request, alert_id: IdPath, session: SessionDep, actor: PageActorDep
) -> HTMLResponse:
    """An episode's timeline: detection, routing, consultation, level, actions, close."""
    found = service.access_alert(session, actor, alert_id)
    ok, why = service.readings_back_under(session, found)
    return render(
        request,
        "eco/alert.html",
        alert=found,
        levels=[(lv.value, service.RESPONSE_NAMES[lv]) for lv in service.ResponseLevel],
        suggested=service.suggested_level(found.peak_aqi).value,
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
    service.start_consultation(session, actor, alert_id, departments=codes, note=note.strip())
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
    service.set_response_level(session, actor, alert_id, level=level, note=note.strip())
    return _back(alert_id)


@router.post("/eco/alerts/{alert_id}/actions", dependencies=[CsrfDep])
def action(
    alert_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Record an action."""
    service.record_action(session, actor, alert_id, note=note)
    return _back(alert_id)


@router.post("/eco/alerts/{alert_id}/close", dependencies=[CsrfDep])
def close(
    alert_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Close the response (only once readings are back under the threshold)."""
    service.close_alert(session, actor, alert_id, note=note.strip())
    return _back(alert_id)
