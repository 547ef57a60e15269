"""Loads into the lake: each committed load is a `Version` with its lineage and quality."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime


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
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    job_id: Mapped[str | None] = mapped_column(String(32), default=None)
    loaded_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
