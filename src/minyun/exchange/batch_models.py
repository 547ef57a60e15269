"""Batch exchange (批量交换): a consumer department's standing orders and their deliveries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minyun.catalog.models import Resource
from minyun.core import clock
from minyun.core.db import Base, UTCDateTime
from minyun.orgs.models import Organization


class DeliveryMode(StrEnum):
    FULL = "full"  # every delivery is the whole granted part at the newest version
    INCREMENTAL = "incremental"  # the net change since the last delivered version


class SinkKind(StrEnum):
    FILE = "file"  # a downloadable file kept by the node
    FOLDER = "folder"  # a file written into a folder of the node's file system
    POSTGRESQL = "postgresql"  # a table in the consumer's own PostgreSQL database
    MARIADB = "mariadb"  # a table in the consumer's own MariaDB / MySQL database


class FileFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"  # UTF-8 with a byte-order mark (Excel opens it as UTF-8)
    XLSX = "xlsx"


class DeliveryState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DELIVERED = "delivered"
    FAILED = "failed"
    REFUSED = "refused"  # the access plan said no when the job ran (grant revoked, expired)


class BatchSubscription(Base):
    """A consumer department's standing order for a resource: schedule, mode, sink."""

    __tablename__ = "batch_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consumer_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    # The subscriber as it was when it subscribed: deliveries read with its rights of now.
    owner: Mapped[dict[str, Any]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(12))
    every_minutes: Mapped[int | None] = mapped_column(Integer, default=None)  # None: on demand
    sink_kind: Mapped[str] = mapped_column(String(12))
    sink_format: Mapped[str | None] = mapped_column(String(8), default=None)
    # Where to: a folder, or a DSN without its credentials (they are sealed apart).
    sink_target: Mapped[str | None] = mapped_column(String(2000), default=None)
    sink_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    sink_table: Mapped[str | None] = mapped_column(String(128), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Every change up to this lake version was delivered (None: nothing yet).
    delivered_version: Mapped[int | None] = mapped_column(BigInteger, default=None)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    stopped_by: Mapped[str | None] = mapped_column(String(100), default=None)

    consumer: Mapped[Organization] = relationship(lazy="joined")
    resource: Mapped[Resource] = relationship(lazy="joined")


class BatchDelivery(Base):
    """One delivery of a subscription: the versions (from, to] it carries, once."""

    __tablename__ = "batch_deliveries"
    __table_args__ = (UniqueConstraint("subscription_id", "from_key", "to_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("batch_subscriptions.id", ondelete="CASCADE"), index=True
    )
    from_version: Mapped[int | None] = mapped_column(BigInteger, default=None)  # excluded
    # from_version, or -1 for none: a unique key counts NULLs as distinct.
    from_key: Mapped[int] = mapped_column(BigInteger)
    to_version: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str | None] = mapped_column(String(8), default=None)  # full or changes
    state: Mapped[str] = mapped_column(String(12), default=DeliveryState.QUEUED, index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), default=None)
    rows: Mapped[int | None] = mapped_column(BigInteger, default=None)
    checksum: Mapped[str | None] = mapped_column(String(64), default=None)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    signature: Mapped[str | None] = mapped_column(Text, default=None)
    file_name: Mapped[str | None] = mapped_column(String(200), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
