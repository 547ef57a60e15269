"""Open data (公共数据开放): open datasets — views of a resource's lake version — and their versions."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minyun.catalog.models import Resource
from minyun.core import clock
from minyun.core.db import Base, UTCDateTime
from minyun.orgs.models import Organization


class DatasetState(StrEnum):
    PUBLISHED = "published"  # released: readable by everyone (conditional: by grant holders)
    SUSPENDED = "suspended"  # a new version failed the release check: the last one stays shown
    WITHDRAWN = "withdrawn"  # taken down by its steward


class Frequency(StrEnum):
    REALTIME = "realtime"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"
    IRREGULAR = "irregular"


class OpenDataset(Base):
    """One open dataset: metadata, and the view of its resource it shows (fields, rows, sums)."""

    __tablename__ = "open_datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(36), unique=True)  # CKAN's package id (a UUID)
    name: Mapped[str] = mapped_column(String(100), unique=True)  # CKAN's package name (a slug)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    publisher_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    domain: Mapped[str] = mapped_column(String(32), index=True)  # one of the 21 (catalog.themes)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    licence: Mapped[str] = mapped_column(String(32), default="cc-by-4.0")
    frequency: Mapped[str] = mapped_column(String(16), default=Frequency.IRREGULAR)
    temporal_start: Mapped[date | None] = mapped_column(Date, default=None)
    temporal_end: Mapped[date | None] = mapped_column(Date, default=None)
    spatial: Mapped[list[str]] = mapped_column(JSON, default=list)  # division codes (GB/T 2260)
    # The view: projected (or group-by) fields, row filter, aggregates, smallest group.
    fields: Mapped[list[str]] = mapped_column(JSON)
    row_filter: Mapped[str | None] = mapped_column(Text, default=None)
    aggregates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    min_group: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(12), default=DatasetState.PUBLISHED, index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)  # the open version shown
    lake_version: Mapped[int] = mapped_column(Integer)  # the resource's version it shows
    row_count: Mapped[int | None] = mapped_column(Integer, default=None)
    search_text: Mapped[str] = mapped_column(Text, default="")
    released_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    resource: Mapped[Resource] = relationship(lazy="joined")
    publisher: Mapped[Organization] = relationship(lazy="joined")


class OpenVersion(Base):
    """One release of an open dataset: which lake version it showed, from when, what it said."""

    __tablename__ = "open_dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("open_datasets.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    lake_version: Mapped[int] = mapped_column(Integer)
    schema_version: Mapped[str | None] = mapped_column(String(16), default=None)
    columns: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(12))  # released, or refused by the release check
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class KeyState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class DeveloperKey(Base):
    """A developer's API key for the open data API: its owner, rate limit and state.

    Only a SHA-256 of the secret is kept (the secret is 24 random bytes: no guessing to slow
    down); the key is shown once, when it is made.
    """

    __tablename__ = "open_api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    per_minute: Mapped[int] = mapped_column(Integer, default=600)
    state: Mapped[str] = mapped_column(String(12), default=KeyState.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ApplicationStatus(StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class OpenApplication(Base):
    """A developer's application (开放申请) for a conditionally open dataset, with its purpose.

    The publisher's approvers approve it (until `expires_at`) or reject it with a reason;
    while approved, the account — and every API key of it — reads the dataset through the
    access plan (`opendata.applications.application_verdict`).
    """

    __tablename__ = "open_applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("open_datasets.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    applicant: Mapped[str] = mapped_column(String(100))  # the actor's label
    purpose: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default=ApplicationStatus.SUBMITTED, index=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(100), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    dataset: Mapped[OpenDataset] = relationship(lazy="joined")
