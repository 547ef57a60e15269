"""Eco-cloud pages: station map, city ranking, time series, alert inbox and timeline; public /air."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from minyun.apps.ecocloud import geo, response, views
from minyun.apps.ecocloud.aqi import LEVELS
from minyun.apps.ecocloud.models import CityHour, Reading
from minyun.core import clock
from minyun.core.errors import Invalid
from minyun.core.security import Principal
from minyun.orgs.picker import picker_groups
from minyun.web.deps import CsrfDep, IdPath, SessionDep
from minyun.web.i18n import N_
from minyun.web.templating import CHINA_TIME, PageActorDep, render
from minyun.web.wording import sentence

router = APIRouter(include_in_schema=False)

# The eco-cloud's stored sentences (refusal reasons, anomaly details, alert notes) and its
# errors, as the pages say them (see minyun.web.wording).
for _pattern, _message in (
    (r"hour is missing or not an ISO 8601 time: (?P<value>.*)",
     N_("The hour is missing or not an ISO 8601 time: %(value)s")),
    (r"hour is not on the hour: (?P<value>.*)", N_("The hour is not on the hour: %(value)s")),
    (r"hour is in the future: (?P<value>.*)", N_("The hour is in the future: %(value)s")),
    (r"(?P<pollutant>[\w.]+) is not a number: (?P<value>.*)",
     N_("%(pollutant)s is not a number: %(value)s")),
    (r"negative concentration: (?P<pollutant>[\w.]+)=(?P<value>.*)",
     N_("Negative concentration: %(pollutant)s = %(value)s")),
    (r"absurd concentration: (?P<pollutant>[\w.]+)=(?P<value>.*)",
     N_("Impossible concentration: %(pollutant)s = %(value)s")),
    (r"unknown station (?P<station>.*)", N_("Unknown station %(station)s")),
    (r"payload of (?P<size>\d+) bytes is larger than (?P<limit>\d+)",
     N_("The message has %(size)s bytes, more than %(limit)s")),
    (r"malformed JSON: (?P<error>.*)", N_("The message is not valid JSON (%(error)s)")),
    (r"topic (?P<topic>\S+) does not name station (?P<station>.*)",
     N_("Topic %(topic)s does not name station %(station)s")),
    (r"(?P<field>\w+) is not a number", N_("%(field)s is not a number")),
    (r"(?P<field>\w+) is not a value", N_("%(field)s is not a single value")),
    (r"AQI (?P<aqi>[\d.]+) against a median of (?P<median>[\d.]+) over the previous "
     r"(?P<hours>\d+) hours",
     N_("AQI %(aqi)s against a median of %(median)s over the previous %(hours)s hours")),
    (r"PM10 (?P<pm10>\S+), PM2.5 (?P<pm25>\S+), NO2 (?P<no2>\S+), O3 (?P<o3>\S+) unchanged "
     r"for (?P<hours>\d+) hours",
     N_("PM10 %(pm10)s, PM2.5 %(pm25)s, NO2 %(no2)s, O3 %(o3)s unchanged for %(hours)s hours")),
    (r"AQI (?P<aqi>[\d.]+) against a median of (?P<median>[\d.]+) at (?P<count>\d+) stations "
     r"within the radius",
     N_("AQI %(aqi)s against a median of %(median)s at %(count)s stations nearby")),
    (r"(?P<count>\d+) stations in (?P<cities>.+) above AQI (?P<threshold>\d+) for "
     r"(?P<hours>\d+) consecutive hours; peak (?P<peak>\d+)",
     N_("%(count)s stations in %(cities)s above AQI %(threshold)s for %(hours)s consecutive "
        "hours; peak %(peak)s")),
    (r"(?P<city>[^:]+?): no environment department on file; left to the province",
     N_("%(city)s has no environment department on file; left to the province")),
    (r"(?P<city>[^:→]+) → (?P<org>\S+)", N_("%(city)s → %(org)s")),
    (r"会商 with (?P<orgs>[^:]+): (?P<note>.*)", N_("Consultation with %(orgs)s: %(note)s")),
    (r"会商 with (?P<orgs>[^:]+)", N_("Consultation with %(orgs)s")),
    (r"all (?P<count>\d+) stations at or under (?P<threshold>\d+) at (?P<time>\S+); "
     r"(?P<note>.*)",
     N_("All %(count)s stations at or under AQI %(threshold)s at %(time)s; %(note)s")),
    (r"all (?P<count>\d+) stations at or under (?P<threshold>\d+) at (?P<time>\S+)",
     N_("All %(count)s stations at or under AQI %(threshold)s at %(time)s")),
    (r"still above (?P<threshold>\d+) at (?P<time>\S+): (?P<stations>.*)",
     N_("Still above AQI %(threshold)s at %(time)s: %(stations)s")),
    (r"cannot close alert (?P<id>\d+): (?P<reason>.*)",
     N_("Alert %(id)s cannot be closed yet. %(reason)s")),
    (r"alert (?P<id>\d+) is (?P<state>\w+); this step needs it (?P<wanted>.*)",
     N_("Alert %(id)s has already moved on: reload the page to see where it stands.")),
    (r"unknown departments: (?P<orgs>.*)", N_("Unknown departments: %(orgs)s")),
    (r"no readings for city (?P<city>.*)", N_("No readings for %(city)s")),
):  # fmt: skip
    sentence(_pattern, _message)
ECO_MESSAGES = [
    N_("missing or malformed station code"),
    N_("no pollutant values"),
    N_("coordinates out of range"),
    N_("payload is not a JSON object"),
    N_("payload has no station code"),
    N_("no readings"),
    N_("a consultation needs at least one department"),
    N_("say what was done"),
]

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
    return _alert_page(request, session, actor, alert_id)


def _alert_page(
    request: Request,
    session: Session,
    actor: Principal,
    alert_id: int,
    *,
    form: str | None = None,
    error: Invalid | None = None,
    values: dict[str, Any] | None = None,
) -> HTMLResponse:
    """The alert page; after a refused form, that form keeps what was typed and says why
    next to the field (422)."""
    found = response.access_alert(session, actor, alert_id)
    ok, why = response.readings_back_under(session, found)
    groups = picker_groups(session, actor)
    return render(
        request,
        "eco/alert.html",
        status_code=422 if error is not None else 200,
        alert=found,
        levels=[(lv.value, response.RESPONSE_NAMES[lv]) for lv in response.ResponseLevel],
        suggested=response.suggested_level(found.peak_aqi).value,
        back_under=ok,
        back_under_why=why,
        departments=groups,
        org_names={code: name for g in groups for code, name in g.organizations},
        form=form,
        error={"field": error.extra.get("field"), "message": str(error)} if error else None,
        values=values or {},
    )


def _back(alert_id: int) -> Response:
    return RedirectResponse(f"/eco/alerts/{alert_id}", 303)


@router.post("/eco/alerts/{alert_id}/consultation", dependencies=[CsrfDep])
def consult(
    request: Request,
    alert_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    departments: Annotated[list[str] | None, Form(max_length=64)] = None,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Start the consultation with the departments picked (codes; one field each)."""
    codes = [c.strip() for c in departments or [] if c.strip()][:100]
    try:
        response.start_consultation(session, actor, alert_id, departments=codes, note=note.strip())
    except Invalid as exc:
        values = {"departments": codes, "note": note}
        return _alert_page(
            request, session, actor, alert_id, form="consult", error=exc, values=values
        )
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
    request: Request,
    alert_id: IdPath,
    session: SessionDep,
    actor: PageActorDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Record an action."""
    try:
        response.record_action(session, actor, alert_id, note=note)
    except Invalid as exc:
        return _alert_page(
            request, session, actor, alert_id, form="action", error=exc, values={"note": note}
        )
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
