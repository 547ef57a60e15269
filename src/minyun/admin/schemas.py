"""API shapes of audit records, verification reports and jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditRecordRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    actor: str
    on_behalf_of: str | None
    action: str
    object_type: str | None
    object_id: str | None
    record_keys: list[str] | None
    record_count: int | None
    purpose: str | None
    outcome: str
    detail: str | None
    request_id: str | None
    prev_hash: str
    hash: str


class FindingRead(BaseModel):
    problem: str
    seq: int
    detail: str


class VerifyRead(BaseModel):
    ok: bool
    records: int
    checkpoints: int
    first_problem: FindingRead | None


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    state: str
    done: int
    total: int | None
    percent: float | None
    message: str | None
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    # Times a runner died holding the job; at the node's limit the job fails for good.
    crashes: int
    cancel_requested_at: datetime | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
