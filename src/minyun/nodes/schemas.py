"""Nodes API shapes: the registry, the cities' catalog, applications sent to another node."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class NodeCreate(BaseModel):
    node_id: str = Field(max_length=64)
    name: str = Field(max_length=200)
    division_code: str = Field(max_length=12)
    public_key: str = Field(max_length=2000, description="Ed25519: base64url raw bytes or PEM")
    base_url: str = Field(max_length=300)
    relation: Literal["parent", "child"]


class NodeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    node_id: str
    name: str
    division_code: str
    relation: str
    public_key: str
    base_url: str
    status: str
    created_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None
    published_at: datetime | None


class IdentityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    node_id: str
    base_url: str
    public_key: str


class ReasonIn(BaseModel):
    reason: str = Field(max_length=2000)


class NodeResourceRead(BaseModel):
    node: str
    node_name: str
    code: str
    name: str
    summary: str
    provider_code: str
    provider_name: str
    sharing_type: str
    update_cycle: str | None
    fields: list[dict[str, str]]
    synced_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _from_model(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        return {
            "node": value.node.node_id, "node_name": value.node.name, "code": value.code,
            "name": value.name, "summary": value.summary, "provider_code": value.provider_code,
            "provider_name": value.provider_name, "sharing_type": value.sharing_type,
            "update_cycle": value.update_cycle, "fields": value.fields,
            "synced_at": value.synced_at,
        }  # fmt: skip


class RemoteApplicationCreate(BaseModel):
    node: str = Field(max_length=64)
    resource: str = Field(max_length=64)
    purpose: str = Field(max_length=2000)
    legal_basis: str = Field(max_length=2000)
    fields: list[str] = Field(max_length=500)
    row_filter: str | None = Field(default=None, max_length=2000)
    expires_at: datetime


class RemoteApplicationRead(BaseModel):
    id: int
    node: str
    resource: str
    applicant: str
    purpose: str
    fields: list[str]
    remote_id: int
    status: str
    decision_reason: str | None
    granted_fields: list[str] | None
    checked_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _from_model(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        return {
            "id": value.id, "node": value.node.node_id, "resource": value.resource_code,
            "applicant": value.applicant, "purpose": value.purpose, "fields": value.fields,
            "remote_id": value.remote_id, "status": value.status,
            "decision_reason": value.decision_reason, "granted_fields": value.granted_fields,
            "checked_at": value.checked_at,
        }  # fmt: skip


class RemoteRowsRead(BaseModel):
    node: str
    resource: str
    fields: list[str]
    rows: list[dict[str, Any]]
    version: int | None


class PublishRead(BaseModel):
    sent: dict[str, int]
