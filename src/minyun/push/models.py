"""Webhook subscriptions, their dead letters, and the relays' positions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime


class Subscription(Base):
    """An organisation's standing order for events pushed to its URL (Standard Webhooks)."""

    __tablename__ = "event_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int | None] = mapped_column(Integer, index=True, default=None)
    # The subscriber as it was when it subscribed (kind, name, roles, ...): events are
    # filtered with its rights, so a subscription never sees more than its owner could read.
    owner: Mapped[dict[str, Any]] = mapped_column(JSON)
    url: Mapped[str] = mapped_column(String(2000))
    kinds: Mapped[list[str]] = mapped_column(JSON)
    # Kept to sign with (Standard Webhooks are HMAC-signed): shown once to the subscriber.
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Every event up to here was delivered, dead-lettered or not for this subscription.
    delivered_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # of the event now tried
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # The one runner delivering for this subscription (deliveries stay in order).
    lease: Mapped[str | None] = mapped_column(String(32), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class EventDeadLetter(Base):
    """An event a subscription's URL refused `max_attempts` times; delivery moved past it."""

    __tablename__ = "event_dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("event_subscriptions.id", ondelete="CASCADE"), index=True
    )
    offset: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class RelayPosition(Base):
    """How far a relay (e.g. to NATS JetStream) has carried the log."""

    __tablename__ = "event_relays"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
