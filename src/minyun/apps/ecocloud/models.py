"""Eco-cloud tables: stations, hourly readings, dead letters, anomalies, alerts and their steps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime


class Source(StrEnum):
    MQTT = "mqtt"
    FILE = "file"
    API = "api"


class Station(Base):
    """A monitoring station (监测站点), as named in the data it sends."""

    __tablename__ = "eco_stations"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    city: Mapped[str] = mapped_column(String(50), index=True)
    division_code: Mapped[str | None] = mapped_column(String(12), index=True, default=None)
    longitude: Mapped[float] = mapped_column(Float)
    latitude: Mapped[float] = mapped_column(Float)
    control_point: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class Reading(Base):
    """One station-hour: 1-hour concentrations (µg/m³, CO mg/m³) and the AQI computed from them."""

    __tablename__ = "eco_readings"
    __table_args__ = (UniqueConstraint("station_code", "hour"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    station_code: Mapped[str] = mapped_column(ForeignKey("eco_stations.code"), index=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)  # end of the hour
    pm10: Mapped[float | None] = mapped_column(Float, default=None)
    pm2_5: Mapped[float | None] = mapped_column(Float, default=None)
    o3: Mapped[float | None] = mapped_column(Float, default=None)  # 1-hour O3
    no2: Mapped[float | None] = mapped_column(Float, default=None)
    so2: Mapped[float | None] = mapped_column(Float, default=None)
    co: Mapped[float | None] = mapped_column(Float, default=None)
    aqi: Mapped[int | None] = mapped_column(Integer, default=None)
    primary_pollutant: Mapped[str | None] = mapped_column(String(60), default=None)
    level: Mapped[int | None] = mapped_column(Integer, default=None)
    # Pollutants without a value this hour (aqi.MISSING_LABELS, comma-joined): the AQI is then
    # computed from the others, as CNEMC does, and the reading is partial.
    missing: Mapped[str | None] = mapped_column(String(60), default=None)
    flags: Mapped[str | None] = mapped_column(String(200), default=None)
    source: Mapped[str] = mapped_column(String(8))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    @property
    def missing_pollutants(self) -> list[str]:
        """The pollutants this hour lacks, e.g. ["CO"]; empty when all six are there."""
        return self.missing.split(",") if self.missing else []

    @property
    def partial(self) -> bool:
        """Whether the AQI was computed without some pollutants."""
        return self.aqi is not None and bool(self.missing)


class CityHour(Base):
    """A city's real-time AQI for one hour (HJ 663: mean of its stations but the control point)."""

    __tablename__ = "eco_city_hours"
    __table_args__ = (UniqueConstraint("city", "hour"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    city: Mapped[str] = mapped_column(String(50), index=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    aqi: Mapped[int | None] = mapped_column(Integer, default=None)
    primary_pollutant: Mapped[str | None] = mapped_column(String(60), default=None)
    level: Mapped[int | None] = mapped_column(Integer, default=None)
    pm2_5: Mapped[float | None] = mapped_column(Float, default=None)
    # Pollutants none of the city's stations measured this hour (comma-joined labels).
    missing: Mapped[str | None] = mapped_column(String(60), default=None)
    stations: Mapped[int] = mapped_column(Integer, default=0)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    @property
    def missing_pollutants(self) -> list[str]:
        """The pollutants this city-hour lacks; empty when all six are there."""
        return self.missing.split(",") if self.missing else []

    @property
    def partial(self) -> bool:
        """Whether the city AQI was computed without some pollutants."""
        return self.aqi is not None and bool(self.missing)


class DeadLetter(Base):
    """A reading refused with its reason; kept so nothing is silently dropped."""

    __tablename__ = "eco_dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    payload: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(8))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now, index=True)


class Anomaly(Base):
    """A station-hour a detection rule found suspicious (jump, stuck, spatial)."""

    __tablename__ = "eco_anomalies"
    __table_args__ = (UniqueConstraint("rule", "station_code", "hour"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(16), index=True)
    station_code: Mapped[str] = mapped_column(ForeignKey("eco_stations.code"), index=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    value: Mapped[float | None] = mapped_column(Float, default=None)
    detail: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class AlertState(StrEnum):
    OPEN = "open"
    CONSULTING = "consulting"
    RESPONDING = "responding"
    CLOSED = "closed"


class Alert(Base):
    """A regional pollution episode and the joint response (联防联控) it opened."""

    __tablename__ = "eco_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(12), index=True, default=AlertState.OPEN)
    cities: Mapped[list[str]] = mapped_column(JSON, default=list)
    stations: Mapped[list[str]] = mapped_column(JSON, default=list)
    org_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    start_hour: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    end_hour: Mapped[datetime] = mapped_column(UTCDateTime())
    peak_aqi: Mapped[int] = mapped_column(Integer)
    peak_station: Mapped[str | None] = mapped_column(String(16), default=None)
    threshold: Mapped[int] = mapped_column(Integer)
    response_level: Mapped[str | None] = mapped_column(String(20), default=None)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    steps: Mapped[list[AlertStep]] = relationship(
        back_populates="alert", order_by="AlertStep.id", lazy="selectin"
    )

    @property
    def seconds_to_response(self) -> float | None:
        """From detection to the chosen response level; None until a level is chosen."""
        if self.responded_at is None:
            return None
        return (self.responded_at - self.detected_at).total_seconds()

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "cities": self.cities,
            "start_hour": self.start_hour.isoformat(),
            "end_hour": self.end_hour.isoformat(),
            "peak_aqi": self.peak_aqi,
        }


class StepKind(StrEnum):
    DETECTED = "detected"
    ROUTED = "routed"
    CONSULTATION = "consultation"
    LEVEL = "level"
    ACTION = "action"
    CLOSED = "closed"


class AlertStep(Base):
    """One timestamped step of an alert's response: routed, consultation, level, action, closed."""

    __tablename__ = "eco_alert_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("eco_alerts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    organization_code: Mapped[str | None] = mapped_column(String(32), default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now, index=True)

    alert: Mapped[Alert] = relationship(back_populates="steps")
