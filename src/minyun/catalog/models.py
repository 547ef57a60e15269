"""The catalog (政务信息资源目录): resources with GB/T 21063 metadata and versioned schemas."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime
from minyun.orgs.models import Organization


class ResourceStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


class SharingType(StrEnum):
    """国发〔2016〕51号: 无条件共享 / 有条件共享 / 不予共享."""

    UNCONDITIONAL = "unconditional"
    CONDITIONAL = "conditional"
    NONE = "none"


class OpenType(StrEnum):
    """无条件开放 / 有条件开放 / 不予开放."""

    UNCONDITIONAL = "unconditional"
    CONDITIONAL = "conditional"
    NONE = "none"


class BaseLibrary(StrEnum):
    """The base resource libraries (基础资源库)."""

    POPULATION = "population"  # 人口
    LEGAL_PERSON = "legal-person"  # 法人
    GEOSPATIAL = "geospatial"  # 自然资源和空间地理
    LICENCE = "licence"  # 电子证照


class UpdateCycle(StrEnum):
    REALTIME = "realtime"
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"
    IRREGULAR = "irregular"


class Resource(Base):
    """One government information resource (政务信息资源): a dataset in the catalog."""

    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)  # 资源代码
    name: Mapped[str] = mapped_column(String(200), index=True)  # 资源名称
    provider_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    summary: Mapped[str] = mapped_column(Text, default="")  # 资源摘要
    theme: Mapped[str | None] = mapped_column(String(32), index=True, default=None)  # 21 domains
    base_library: Mapped[str | None] = mapped_column(String(32), default=None)
    format: Mapped[str] = mapped_column(String(32), default="table")  # 资源格式
    update_cycle: Mapped[str] = mapped_column(String(16), default=UpdateCycle.IRREGULAR)
    publish_date: Mapped[date | None] = mapped_column(Date, default=None)  # 发布日期
    sharing_type: Mapped[str] = mapped_column(String(16), default=SharingType.CONDITIONAL)
    sharing_condition: Mapped[str | None] = mapped_column(Text, default=None)
    open_type: Mapped[str] = mapped_column(String(16), default=OpenType.NONE)
    open_condition: Mapped[str | None] = mapped_column(Text, default=None)
    legal_basis: Mapped[str | None] = mapped_column(Text, default=None)  # 不予共享/开放的依据
    status: Mapped[str] = mapped_column(String(12), default=ResourceStatus.DRAFT, index=True)
    reject_threshold: Mapped[float] = mapped_column(Float, default=0.05)
    current_schema_version: Mapped[str | None] = mapped_column(String(16), default=None)
    lake_version: Mapped[int | None] = mapped_column(Integer, default=None)  # newest committed
    row_count: Mapped[int | None] = mapped_column(Integer, default=None)
    search_text: Mapped[str] = mapped_column(Text, default="")  # name+summary+fields, for search
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    provider: Mapped[Organization] = relationship(lazy="joined")


class ResourceSchema(Base):
    """One version of a resource's schema (Frictionless Table Schema + minyun keys)."""

    __tablename__ = "resource_schemas"
    __table_args__ = (UniqueConstraint("resource_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    version: Mapped[str] = mapped_column(String(16))  # "1.0", "1.1", "2.0"
    descriptor: Mapped[dict[str, Any]] = mapped_column(JSON)
    change: Mapped[str] = mapped_column(String(12))  # initial, compatible, major
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


# --- loads -------------------------------------------------------------------------------
# A resource's versions are catalog facts (its page lists them); `minyun.ingest` makes them.


class LoadMode(StrEnum):
    FULL = "full"  # replace the table
    APPEND = "append"
    UPSERT = "upsert"  # MERGE on the primary key
    DELETE = "delete"  # delete the rows whose keys are in the input


class LoadState(StrEnum):
    RUNNING = "running"
    COMMITTED = "committed"
    REJECTED = "rejected"  # too many bad rows: nothing committed
    FAILED = "failed"  # the input could not be read: nothing committed
    NOOP = "noop"  # the same input as an earlier committed load


class Version(Base):
    """One load of a resource; `lake_version` is the Delta table version it committed."""

    __tablename__ = "resource_versions"
    __table_args__ = (UniqueConstraint("resource_id", "lake_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    lake_version: Mapped[int | None] = mapped_column(Integer, default=None)
    state: Mapped[str] = mapped_column(String(12), default=LoadState.RUNNING)
    mode: Mapped[str] = mapped_column(String(12))
    source: Mapped[str] = mapped_column(Text)  # file name, URL (no credentials) or DSN table
    source_kind: Mapped[str] = mapped_column(
        String(16)
    )  # csv, xlsx, jsonl, parquet, url, postgres, mariadb
    sha256: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    schema_version: Mapped[str | None] = mapped_column(String(16), default=None)
    watermark: Mapped[str | None] = mapped_column(String(64), default=None)
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # What the load says beside its counts, e.g. "extra columns ignored: a, b".
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    job_id: Mapped[str | None] = mapped_column(String(32), default=None)
    loaded_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
