"""API shapes of divisions and organisations."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from minyun.orgs.models import OrgKind


class DivisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    level: str
    parent_code: str | None


class OrganizationCreate(BaseModel):
    code: str = Field(min_length=2, max_length=32)
    name: str = Field(min_length=2, max_length=200)
    uscc: str = Field(min_length=18, max_length=18)
    division_code: str
    kind: OrgKind | None = Field(default=None, description="default: unit with a parent")
    parent: str | None = Field(default=None, description="parent department's code (units)")


class OrganizationUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    uscc: str | None = Field(default=None, min_length=18, max_length=18)
    division_code: str | None = None
    kind: OrgKind | None = None
    parent: str | None = Field(default=None, description="parent's code; null: none")


class OrganizationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    uscc: str
    kind: str
    division_code: str
    level: str
    parent_id: int | None
