"""Accounts of civil servants, citizens and enterprises; API clients of organisations."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime


class AccountKind(StrEnum):
    STAFF = "staff"  # civil servant of an organisation
    CITIZEN = "citizen"  # natural person, real-name by identity number
    ENTERPRISE = "enterprise"  # legal person, real-name by credit code


class User(Base):
    """One real-name account, used everywhere (一网通办 single sign-on)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(12))
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id"), index=True, default=None
    )
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    password_hash: Mapped[str] = mapped_column(String(200))
    ric: Mapped[str | None] = mapped_column(String(18), unique=True, default=None)
    uscc: Mapped[str | None] = mapped_column(String(18), unique=True, default=None)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Browser sessions signed in before this moment are refused (revoked by the user or an admin).
    sessions_valid_after: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ApiClient(Base):
    """An organisation's machine client for the OAuth2 client-credentials grant."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class WebSession(Base):
    """A browser session kept on the server; the cookie holds only a random id.

    `id` is the SHA-256 of that cookie value, so reading this table gives no usable cookie.
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, default=None
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
