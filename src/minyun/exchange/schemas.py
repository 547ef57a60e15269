"""API shapes of sharing applications and grants."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

Clearance = Literal["public", "internal", "sensitive", "secret"]


class ApplicationCreate(BaseModel):
    resource: str = Field(max_length=64, description="code of the resource applied for")
    purpose: str = Field(min_length=1, max_length=2000)
    legal_basis: str = Field(min_length=1, max_length=2000, description="法律法规依据")
    fields: list[str] = Field(min_length=1, max_length=500)
    row_filter: str | None = Field(
        default=None, max_length=2000, description="row scope, in the query filter language"
    )
    expires_at: datetime = Field(description="when the grant ends (ISO 8601 with time zone)")


class ApproveIn(BaseModel):
    fields: list[str] | None = Field(
        default=None, max_length=500, description="fewer fields than asked; none: all asked"
    )
    row_filter: str | None = Field(
        default=None, max_length=2000, description="narrows the asked rows (ANDed)"
    )
    clearance: Clearance = "internal"
    reason: str | None = Field(default=None, max_length=2000)
    rate_limit: int | None = Field(
        default=None, ge=1, le=1_000_000, description="calls per minute; none: unlimited"
    )


class RateLimitIn(BaseModel):
    rate_limit: int | None = Field(
        ge=1, le=1_000_000, description="calls per minute; null lifts the limit"
    )


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class ApplicationRead(BaseModel):
    id: int
    resource: str
    resource_name: str
    consumer: str
    provider: str
    applicant: str
    purpose: str
    legal_basis: str
    fields: list[str]
    row_filter: str | None
    expires_at: datetime
    status: str
    decision_reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _from_model(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        return {
            **{k: getattr(value, k) for k in _APPLICATION},
            "resource": value.resource.code,
            "resource_name": value.resource.name,
            "consumer": value.consumer.code,
            "provider": value.resource.provider.code,
        }


class GrantRead(BaseModel):
    id: int
    resource: str
    resource_name: str
    consumer: str
    provider: str
    application_id: int | None
    fields: list[str]
    row_filter: str | None
    clearance: str
    purpose: str
    expires_at: datetime
    rate_limit: int | None
    status: str
    granted_by: str
    created_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None
    revoke_reason: str | None

    @model_validator(mode="before")
    @classmethod
    def _from_model(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        return {
            **{k: getattr(value, k) for k in _GRANT},
            "resource": value.resource.code,
            "resource_name": value.resource.name,
            "consumer": value.consumer.code,
            "provider": value.resource.provider.code,
        }


_APPLICATION = (
    "id", "applicant", "purpose", "legal_basis", "fields", "row_filter", "expires_at", "status",
    "decision_reason", "decided_by", "decided_at", "created_at",
)  # fmt: skip
_GRANT = (
    "id", "application_id", "fields", "row_filter", "clearance", "purpose", "expires_at",
    "rate_limit", "status", "granted_by", "created_at", "revoked_by", "revoked_at",
    "revoke_reason",
)  # fmt: skip


class UsageDay(BaseModel):
    day: date
    calls: int
    rows: int
    denials: int


class UsageRead(BaseModel):
    grant: int
    calls: int
    rows: int
    denials: int
    days: list[UsageDay]
