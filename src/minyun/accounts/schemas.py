"""API shapes of accounts and tokens."""

from __future__ import annotations

from datetime import datetime

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


class UserAdminRead(BaseModel):
    """An account as administrators see it (never a password hash)."""

    id: int
    username: str
    display_name: str
    kind: str
    organization: str | None = Field(description="organisation code (staff)")
    roles: list[str]
    active: bool
    locked: bool = Field(description="sign-in refused for now after too many failed attempts")
    last_login_at: datetime | None


class RolesUpdate(BaseModel):
    roles: list[str] = Field(description="exactly the roles the account has from now on")


class PasswordReset(BaseModel):
    password: str | None = Field(
        default=None, max_length=200, description="the new password; omitted: one is generated"
    )


class PasswordResetRead(BaseModel):
    password: str | None = Field(description="the generated password, shown this once")


class ClientCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    organization: str = Field(description="code of the organisation the client belongs to")
    scopes: list[str] = Field(min_length=1)


class ClientRead(BaseModel):
    client_id: str
    name: str
    organization: str
    scopes: list[str]
    active: bool
    created_at: datetime


class ClientSecretRead(ClientRead):
    client_secret: str = Field(description="shown this once; only its hash is kept")
