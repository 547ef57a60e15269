"""Grid governance tables: areas (street, community, grid), services, rules, reports and keys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime


class AreaLevel(StrEnum):
    STREET = "street"  # 街道 / 镇 (township division, 9 digits)
    COMMUNITY = "community"  # 社区 (village division, 12 digits)
    GRID = "grid"  # 网格 (community code + two digits)


class Area(Base):
    """A street, community or grid with its outline (a GeoJSON polygon, WGS-84)."""

    __tablename__ = "grid_areas"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(10), index=True)
    parent_code: Mapped[str | None] = mapped_column(String(16), index=True, default=None)
    district_code: Mapped[str] = mapped_column(String(12), index=True)
    geometry: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The outline's bounding box: a point lookup asks the database for the few candidates.
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    # The street office (街道办) that routes a street's reports; on street rows only.
    office_org_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), default=None)
    # The grid worker (网格员) on duty; on grid rows only.
    worker_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id"), index=True, default=None
    )


class GridService(Base):
    """An Open311 service (a report category) with its attributes and time limits."""

    __tablename__ = "grid_services"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    group: Mapped[str] = mapped_column(String(60), default="")
    keywords: Mapped[str] = mapped_column(String(200), default="")
    # Open311 attributes: [{code, datatype, required, description, order, values:[{key,name}]}]
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    arrive_minutes: Mapped[int] = mapped_column(Integer, default=30)  # accept (arrive) within
    close_hours: Mapped[float] = mapped_column(Float, default=24.0)  # close within
    notice: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class RoutingRule(Base):
    """Category × place → a responsible department; the most specific place's rules win."""

    __tablename__ = "grid_routing_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("grid_services.code"), index=True)
    # A district, street, community or grid code; the rule covers everything inside it.
    area_code: Mapped[str] = mapped_column(String(16), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))


class ReportState(StrEnum):
    ROUTED = "routed"  # sent to its departments
    IN_PROGRESS = "in_progress"  # at least one department accepted
    CLOSED = "closed"  # every department closed


class Report(Base):
    """One reported issue (an Open311 service request) and where it stands."""

    __tablename__ = "grid_reports"

    id: Mapped[int] = mapped_column(primary_key=True)  # the Open311 service_request_id
    token: Mapped[str] = mapped_column(String(40), unique=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("grid_services.code"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lat: Mapped[float] = mapped_column(Float)
    long: Mapped[float] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(300), default="")
    grid_code: Mapped[str | None] = mapped_column(String(16), index=True, default=None)
    community_code: Mapped[str | None] = mapped_column(String(16), default=None)
    street_code: Mapped[str | None] = mapped_column(String(16), index=True, default=None)
    district_code: Mapped[str] = mapped_column(String(12), index=True)
    state: Mapped[str] = mapped_column(String(12), index=True, default=ReportState.ROUTED)
    status_notes: Mapped[str] = mapped_column(Text, default="")
    # Who reported: a user, or an Open311 client on behalf of a person (contact kept private).
    reporter_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id"), index=True, default=None
    )
    reporter: Mapped[str] = mapped_column(String(120))
    contact: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("grid_api_keys.id"), default=None)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    expected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    tasks: Mapped[list[Task]] = relationship(
        back_populates="report", order_by="Task.id", lazy="selectin"
    )
    photos: Mapped[list[Photo]] = relationship(order_by="Photo.id", lazy="selectin")
    steps: Mapped[list[Step]] = relationship(order_by="Step.id", lazy="selectin")

    @property
    def open311_status(self) -> str:
        return "closed" if self.state == ReportState.CLOSED else "open"


class TaskState(StrEnum):
    ROUTED = "routed"
    ACCEPTED = "accepted"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"  # rerouted away by the street office


class Task(Base):
    """One department's share of a report: routed → accepted (arrived) → closed with a photo."""

    __tablename__ = "grid_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("grid_reports.id"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    state: Mapped[str] = mapped_column(String(12), index=True, default=TaskState.ROUTED)
    routed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    arrive_by: Mapped[datetime] = mapped_column(UTCDateTime())
    close_by: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    result_photo_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # 0: the department; 1: escalated to the street office; 2: to the district centre.
    escalation: Mapped[int] = mapped_column(Integer, default=0)

    report: Mapped[Report] = relationship(back_populates="tasks")


class Photo(Base):
    """A photo of a report or of a result, stored stripped of its metadata, with a thumbnail."""

    __tablename__ = "grid_photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("grid_reports.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # "report" or "result"
    key: Mapped[str] = mapped_column(String(200))  # object key of the stripped JPEG
    thumb_key: Mapped[str] = mapped_column(String(200))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    had_location: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class Step(Base):
    """One entry of a report's timeline, as the reporter sees it."""

    __tablename__ = "grid_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("grid_reports.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"), default=None)
    actor: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class ApiKey(Base):
    """An Open311 client's api_key: kept as a SHA-256 hash, rate-limited, revocable."""

    __tablename__ = "grid_api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    rate_limit: Mapped[str] = mapped_column(String(40), default="60/minute")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
