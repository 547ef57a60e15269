"""Sharing (共享): a consumer department's applications for a resource and the grants they give."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minyun.catalog.models import Resource
from minyun.core import clock
from minyun.core.db import Base, UTCDateTime
from minyun.orgs.models import Organization


class ApplicationStatus(StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class GrantStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class Application(Base):
    """A consumer's request to use a resource (共享申请): purpose, legal basis, fields, rows."""

    __tablename__ = "applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    consumer_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    applicant: Mapped[str] = mapped_column(String(100))  # the actor's label
    purpose: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    fields: Mapped[list[str]] = mapped_column(JSON)
    row_filter: Mapped[str | None] = mapped_column(Text, default=None)  # core.filters language
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(12), default=ApplicationStatus.SUBMITTED, index=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(100), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    consumer: Mapped[Organization] = relationship(lazy="joined")
    resource: Mapped[Resource] = relationship(lazy="joined")


class Grant(Base):
    """What an approved application gives: fields, row filter, clearance, purpose, expiry."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    consumer_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    application_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id"), default=None)
    fields: Mapped[list[str]] = mapped_column(JSON)
    row_filter: Mapped[str | None] = mapped_column(Text, default=None)
    clearance: Mapped[str] = mapped_column(String(12), default="internal")
    purpose: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rate_limit: Mapped[int | None] = mapped_column(Integer, default=None)  # calls per minute
    status: Mapped[str] = mapped_column(String(12), default=GrantStatus.ACTIVE, index=True)
    granted_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    revoked_by: Mapped[str | None] = mapped_column(String(100), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoke_reason: Mapped[str | None] = mapped_column(Text, default=None)

    consumer: Mapped[Organization] = relationship(lazy="joined")
    resource: Mapped[Resource] = relationship(lazy="joined")


class ProxyService(Base):
    """A provider's own HTTP endpoint for a resource, called through minyun (代理服务)."""

    __tablename__ = "proxy_services"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), unique=True)
    endpoint: Mapped[str] = mapped_column(String(2000))  # the base URL calls are forwarded to
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    resource: Mapped[Resource] = relationship(lazy="joined")
