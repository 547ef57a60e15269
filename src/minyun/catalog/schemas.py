"""API shapes of catalog resources and their schemas."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from minyun.catalog.models import OpenType, SharingType, UpdateCycle


class ResourceCreate(BaseModel):
    code: str = Field(min_length=2, max_length=64)
    name: str = Field(min_length=2, max_length=200)
    provider: str = Field(description="code of the providing organisation")
    summary: str = Field(default="", max_length=4000)
    theme: str | None = None
    base_library: str | None = None
    format: str = Field(default="table", max_length=32)
    update_cycle: UpdateCycle = UpdateCycle.IRREGULAR
    sharing_type: SharingType = SharingType.CONDITIONAL
    sharing_condition: str | None = Field(default=None, max_length=4000)
    open_type: OpenType = OpenType.NONE
    open_condition: str | None = Field(default=None, max_length=4000)
    legal_basis: str | None = Field(default=None, max_length=4000)
    table_schema: dict[str, Any] | None = Field(
        default=None, alias="schema", description="Frictionless Table Schema with minyun keys"
    )

    model_config = ConfigDict(populate_by_name=True)


class ResourceUpdate(BaseModel):
    """Only the fields sent are changed; the code and provider never change."""

    name: str | None = Field(default=None, min_length=2, max_length=200)
    summary: str | None = Field(default=None, max_length=4000)
    theme: str | None = None
    base_library: str | None = None
    format: str | None = Field(default=None, max_length=32)
    update_cycle: UpdateCycle | None = None
    sharing_type: SharingType | None = None
    sharing_condition: str | None = Field(default=None, max_length=4000)
    open_type: OpenType | None = None
    open_condition: str | None = Field(default=None, max_length=4000)
    legal_basis: str | None = Field(default=None, max_length=4000)


class ReasonIn(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


class ProviderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str


class ResourceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    provider: ProviderRead
    summary: str
    theme: str | None
    base_library: str | None
    format: str
    update_cycle: str
    publish_date: date | None
    sharing_type: str
    sharing_condition: str | None
    open_type: str
    open_condition: str | None
    legal_basis: str | None
    status: str
    current_schema_version: str | None
    lake_version: int | None
    row_count: int | None
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None


class SchemaIn(BaseModel):
    descriptor: dict[str, Any] = Field(description="Frictionless Table Schema with minyun keys")
    major: bool = Field(
        default=False, description="allow an incompatible change (a new major version)"
    )


class SchemaRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: str
    change: str
    descriptor: dict[str, Any]
    created_by: str
    created_at: datetime
