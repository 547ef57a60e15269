"""Eco-cloud API shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class StationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    city: str
    division_code: str | None
    longitude: float
    latitude: float
    control_point: bool


class StationNow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    city: str
    longitude: float
    latitude: float
    aqi: int | None
    level: int | None
    primary_pollutant: str | None
    colour: str
    hour: datetime | None
    partial: bool = Field(
        False, description="The AQI was computed without some pollutants (a partial hour)."
    )
    missing: list[str] = Field(
        default_factory=list,
        validation_alias="missing_pollutants",
        description="Pollutants without a value this hour: SO2, NO2, PM10, CO, O3, PM2.5.",
    )
    outside_city: bool = Field(
        False, description="The station's source coordinates lie outside its city's outline."
    )


class ReadingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    station_code: str
    hour: datetime
    pm10: float | None
    pm2_5: float | None
    o3: float | None
    no2: float | None
    so2: float | None
    co: float | None
    aqi: int | None
    primary_pollutant: str | None
    level: int | None
    flags: str | None
    partial: bool = Field(
        False, description="The AQI was computed without some pollutants (a partial hour)."
    )
    missing: list[str] = Field(
        default_factory=list,
        validation_alias="missing_pollutants",
        description="Pollutants without a value this hour: SO2, NO2, PM10, CO, O3, PM2.5.",
    )
    source: str
    received_at: datetime


class CityHourRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    city: str
    hour: datetime
    aqi: int | None
    primary_pollutant: str | None
    level: int | None
    pm2_5: float | None
    stations: int
    partial: bool = Field(
        False, description="The AQI was computed without some pollutants (a partial hour)."
    )
    missing: list[str] = Field(
        default_factory=list,
        validation_alias="missing_pollutants",
        description="Pollutants without a value this hour: SO2, NO2, PM10, CO, O3, PM2.5.",
    )
    computed_at: datetime


class AnomalyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rule: str
    station_code: str
    hour: datetime
    value: float | None
    detail: str
    detected_at: datetime


class DeadLetterRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    payload: str
    reason: str
    source: str
    received_at: datetime


class AlertStepRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    actor: str
    organization_code: str | None
    note: str
    at: datetime


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    state: str
    cities: list[str]
    stations: list[str]
    org_codes: list[str]
    start_hour: datetime
    end_hour: datetime
    peak_aqi: int
    peak_station: str | None
    threshold: int
    response_level: str | None
    detected_at: datetime
    responded_at: datetime | None
    closed_at: datetime | None
    seconds_to_response: float | None
    steps: list[AlertStepRead]


class ConsultationIn(BaseModel):
    departments: list[str] = Field(min_length=1, max_length=50)
    note: str = Field("", max_length=2000)


class LevelIn(BaseModel):
    level: str = Field(max_length=20)
    note: str = Field("", max_length=2000)


class NoteIn(BaseModel):
    note: str = Field("", max_length=2000)


class ReadingIn(BaseModel):
    """One hourly reading; name, city and coordinates only for a station not yet known."""

    station: str = Field(max_length=16)
    hour: str = Field(max_length=40)
    pm10: float | None = None
    pm2_5: float | None = None
    o3: float | None = None
    no2: float | None = None
    so2: float | None = None
    co: float | None = None
    name: str | None = Field(None, max_length=100)
    city: str | None = Field(None, max_length=50)
    longitude: float | None = None
    latitude: float | None = None


class IngestRead(BaseModel):
    received: int
    inserted: int
    updated: int
    unchanged: int
    refused: int
    stations_added: int
    anomalies: int
    alerts_opened: list[int]
