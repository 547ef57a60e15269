"""API shapes of accounts and tokens."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from minyun.accounts.models import AccountKind


class UserCreate(BaseModel):
    username: str = Field(min_length=3, max_length=64)
    password: str = Field(min_length=10, max_length=200)
    display_name: str = Field(min_length=1, max_length=100)
    kind: AccountKind = AccountKind.STAFF
    organization: str | None = Field(default=None, description="organisation code (staff)")
    roles: list[str] = []
    ric: str | None = None
    uscc: str | None = None


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    kind: str
    organization_id: int | None
    roles: list[str]
    verified: bool


class MeRead(BaseModel):
    kind: str
    name: str
    roles: list[str]
    scopes: list[str]
    organization_id: int | None


class TokenRead(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str
