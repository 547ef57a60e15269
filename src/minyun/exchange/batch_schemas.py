"""What the batch exchange API takes and gives."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from minyun.exchange.batch_models import BatchDelivery, BatchSubscription


class SinkIn(BaseModel):
    kind: str = Field(max_length=20, description="file, folder, postgresql or mariadb")
    format: str | None = Field(default=None, max_length=10, description="parquet, csv or xlsx")
    folder: str | None = Field(default=None, max_length=1000)
    dsn: str | None = Field(default=None, max_length=2000, description="the database to write to")
    table: str | None = Field(default=None, max_length=63)


class SubscriptionCreate(BaseModel):
    resource: str = Field(max_length=100)
    mode: Literal["full", "incremental"] = "incremental"
    sink: SinkIn
    purpose: str = Field(max_length=2000)
    every_minutes: int | None = Field(default=None, ge=5, le=31 * 24 * 60)


class SinkRead(BaseModel):
    kind: str
    format: str | None
    target: str | None = Field(description="the folder, or the database without credentials")
    table: str | None


class BatchSubscriptionRead(BaseModel):
    id: int
    resource: str
    consumer: str
    mode: str
    purpose: str
    every_minutes: int | None
    sink: SinkRead
    active: bool
    delivered_version: int | None
    next_due_at: datetime | None
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, s: BatchSubscription) -> BatchSubscriptionRead:
        return cls(
            id=s.id, resource=s.resource.code, consumer=s.consumer.code, mode=s.mode,
            purpose=s.purpose, every_minutes=s.every_minutes,
            sink=SinkRead(kind=s.sink_kind, format=s.sink_format, target=s.sink_target,
                          table=s.sink_table),
            active=s.active, delivered_version=s.delivered_version, next_due_at=s.next_due_at,
            created_by=s.created_by, created_at=s.created_at,
        )  # fmt: skip


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subscription_id: int
    from_version: int | None = Field(description="excluded; none for a first delivery")
    to_version: int
    kind: str | None = Field(description="full or changes")
    state: str
    job_id: str | None
    rows: int | None
    checksum: str | None
    file_name: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, d: BatchDelivery) -> DeliveryRead:
        return cls.model_validate(d)


class SignedManifest(BaseModel):
    manifest: dict[str, Any]
    kid: str | None
    signature: str
