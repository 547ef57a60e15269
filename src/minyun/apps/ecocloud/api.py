"""Eco-cloud API: stations, readings, city AQI, anomalies, dead letters, alerts and responses."""

from __future__ import annotations

import pyarrow as pa
from fastapi import APIRouter, Query

from minyun.apps.ecocloud import ingest, response, views
from minyun.apps.ecocloud.models import Source
from minyun.apps.ecocloud.schemas import (
    AlertRead,
    AnomalyRead,
    CityHourRead,
    ConsultationIn,
    DeadLetterRead,
    IngestRead,
    LevelIn,
    NoteIn,
    ReadingIn,
    ReadingRead,
    StationNow,
    StationRead,
)
from minyun.web.deps import ActorDep, IdPath, SessionDep

router = APIRouter(prefix="/api/v1/eco", tags=["eco-cloud"])


@router.get("/public/cities", response_model=list[CityHourRead])
def public_cities(session: SessionDep) -> list[CityHourRead]:
    """Current AQI per city; public, no sign-in."""
    return [CityHourRead.model_validate(c) for c in views.public_city_aqi(session)]


@router.get("/stations", response_model=list[StationNow])
def stations(session: SessionDep, actor: ActorDep) -> list[StationNow]:
    """Every station with its AQI of the latest hour."""
    return [StationNow.model_validate(s) for s in views.station_map(session, actor)]


@router.get("/stations/{code}", response_model=StationRead)
def station(code: str, session: SessionDep, actor: ActorDep) -> StationRead:
    """One station."""
    return StationRead.model_validate(views.get_station(session, actor, code))


@router.get("/stations/{code}/readings", response_model=list[ReadingRead])
def station_readings(
    code: str, session: SessionDep, actor: ActorDep, hours: int = Query(72, ge=1, le=24 * 31)
) -> list[ReadingRead]:
    """The station's latest hourly readings, oldest first."""
    found = views.station_series(session, actor, code, hours=hours)
    return [ReadingRead.model_validate(r) for r in found]


@router.post("/readings", response_model=IngestRead)
def post_readings(body: list[ReadingIn], session: SessionDep, actor: ActorDep) -> IngestRead:
    """Ingest hourly readings (idempotent per station-hour); refused ones become dead letters."""
    rows = pa.Table.from_pylist(
        [{**r.model_dump(exclude={"station"}), "station_code": r.station} for r in body]
    )
    report = ingest.ingest_readings(session, actor, rows, source=Source.API)
    return IngestRead(**report.as_dict())


@router.get("/cities", response_model=list[CityHourRead])
def cities(session: SessionDep, actor: ActorDep) -> list[CityHourRead]:
    """City ranking of the latest hour, cleanest first."""
    return [CityHourRead.model_validate(c) for c in views.city_ranking(session, actor)]


@router.get("/cities/{city}/hours", response_model=list[CityHourRead])
def city_hours(
    city: str, session: SessionDep, actor: ActorDep, hours: int = Query(72, ge=1, le=24 * 31)
) -> list[CityHourRead]:
    """The city's hourly AQI, oldest first."""
    found = views.city_series(session, actor, city, hours=hours)
    return [CityHourRead.model_validate(c) for c in found]


@router.get("/anomalies", response_model=list[AnomalyRead])
def anomalies(session: SessionDep, actor: ActorDep) -> list[AnomalyRead]:
    """The newest anomalies (jump, stuck, spatial)."""
    return [AnomalyRead.model_validate(a) for a in views.anomalies(session, actor)]


@router.get("/dead-letters", response_model=list[DeadLetterRead])
def dead_letters(session: SessionDep, actor: ActorDep) -> list[DeadLetterRead]:
    """The newest refused readings with their reasons."""
    return [DeadLetterRead.model_validate(d) for d in views.dead_letters(session, actor)]


@router.get("/alerts", response_model=list[AlertRead])
def alerts(session: SessionDep, actor: ActorDep, state: str | None = None) -> list[AlertRead]:
    """The caller's alert inbox, newest first."""
    return [AlertRead.model_validate(a) for a in response.list_alerts(session, actor, state=state)]


@router.get("/alerts/{alert_id}", response_model=AlertRead)
def alert(alert_id: IdPath, session: SessionDep, actor: ActorDep) -> AlertRead:
    """One alert with its timeline."""
    return AlertRead.model_validate(response.access_alert(session, actor, alert_id))


@router.post("/alerts/{alert_id}/consultation", response_model=AlertRead)
def consult(
    alert_id: IdPath, body: ConsultationIn, session: SessionDep, actor: ActorDep
) -> AlertRead:
    """Start the consultation (会商) with other departments."""
    found = response.start_consultation(
        session, actor, alert_id, departments=body.departments, note=body.note
    )
    return AlertRead.model_validate(found)


@router.post("/alerts/{alert_id}/level", response_model=AlertRead)
def level(alert_id: IdPath, body: LevelIn, session: SessionDep, actor: ActorDep) -> AlertRead:
    """Choose the response level."""
    found = response.set_response_level(session, actor, alert_id, level=body.level, note=body.note)
    return AlertRead.model_validate(found)


@router.post("/alerts/{alert_id}/actions", response_model=AlertRead)
def action(alert_id: IdPath, body: NoteIn, session: SessionDep, actor: ActorDep) -> AlertRead:
    """Record an action taken under the response."""
    found = response.record_action(session, actor, alert_id, note=body.note)
    return AlertRead.model_validate(found)


@router.post("/alerts/{alert_id}/close", response_model=AlertRead)
def close(alert_id: IdPath, body: NoteIn, session: SessionDep, actor: ActorDep) -> AlertRead:
    """Close the response once readings are back under the threshold."""
    found = response.close_alert(session, actor, alert_id, note=body.note)
    return AlertRead.model_validate(found)
