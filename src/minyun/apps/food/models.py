"""Food traceability tables: capture jobs, the EPCIS event index, named queries, pull sources.

The events themselves are kept append-only in the lake (`food.lake`); these tables are the
control plane's index over them (decision 0015): one `FoodEvent` row per event with the
columns the standard queries compare, its body as captured (served back by queries, like
the serving index of core.serving), and `FoodEventTerm` rows for the repeated facts
(identifiers, business transactions, sensor readings, …).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime


class CaptureJob(Base):
    """One `POST /epcis/capture`: all of its document's events are stored, or none."""

    __tablename__ = "food_captures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capture_id: Mapped[str] = mapped_column(String(40), unique=True)
    actor: Mapped[str] = mapped_column(String(120))
    organization_id: Mapped[int | None] = mapped_column(Integer, default=None)
    source: Mapped[str] = mapped_column(String(20), default="capture")  # capture, pull, upload
    running: Mapped[bool] = mapped_column(Boolean, default=True)
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    error_behaviour: Mapped[str] = mapped_column(String(10), default="rollback")
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    lake_version: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


_PAIRED = ("event_type", "biz_step", "disposition", "read_point", "biz_location")
_SPARSE = ("transformation_id", "error_time")


class FoodEvent(Base):
    """One captured EPCIS event in the query index."""

    __tablename__ = "food_events"
    __table_args__ = (
        Index("ix_food_events_time", "event_time", "id"),
        Index("ix_food_events_record", "record_time", "id"),
        # A compared column with the time: a query names the value and pages in time order.
        *(Index(f"ix_food_events_{c}", c, "event_time", "id") for c in _PAIRED),
        *(Index(f"ix_food_events_{c}", c, postgresql_where=text(f"{c} IS NOT NULL"),
                sqlite_where=text(f"{c} IS NOT NULL")) for c in _SPARSE),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(300), unique=True)
    event_type: Mapped[str] = mapped_column(String(24))
    event_time: Mapped[datetime] = mapped_column(UTCDateTime())
    record_time: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str | None] = mapped_column(String(8), default=None)
    biz_step: Mapped[str | None] = mapped_column(String(300), default=None)
    disposition: Mapped[str | None] = mapped_column(String(300), default=None)
    read_point: Mapped[str | None] = mapped_column(String(300), default=None)
    biz_location: Mapped[str | None] = mapped_column(String(300), default=None)
    transformation_id: Mapped[str | None] = mapped_column(String(300), default=None)
    error_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    error_reason: Mapped[str | None] = mapped_column(String(300), default=None)
    capture_id: Mapped[int] = mapped_column(ForeignKey("food_captures.id"))
    organization_id: Mapped[int | None] = mapped_column(Integer, index=True, default=None)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The namespace prefixes of the document's @context, for the event's extensions.
    context: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class FoodEventTerm(Base):
    """A repeated searchable fact of an event (`kind` as in `epcis.Term`)."""

    __tablename__ = "food_event_terms"
    __table_args__ = (
        Index("ix_food_terms_lookup", "kind", "value", "event_pk"),
        Index("ix_food_terms_event", "event_pk"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("food_events.id"))
    kind: Mapped[str] = mapped_column(String(120))
    value: Mapped[str] = mapped_column(String(500))
    number: Mapped[float | None] = mapped_column(Float, default=None)


class NamedQuery(Base):
    """A named query (`POST /epcis/queries`): its parameters, run by `GET …/events`."""

    __tablename__ = "food_queries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    query: Mapped[dict[str, Any]] = mapped_column(JSON)
    owner: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class PullSource(Base):
    """Another EPCIS 2.0 repository whose events this node pulls on a schedule."""

    __tablename__ = "food_pull_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    base_url: Mapped[str] = mapped_column(Text)
    token: Mapped[str | None] = mapped_column(Text, default=None)
    query: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_result: Mapped[str | None] = mapped_column(Text, default=None)
    organization_id: Mapped[int | None] = mapped_column(Integer, default=None)


class FoodName(Base):
    """A location's or party's name from a captured document's master data (epcisHeader)."""

    __tablename__ = "food_names"

    uri: Mapped[str] = mapped_column(String(300), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)


class QuerySubscription(Base):
    """A webhook subscription to a named query (`POST /epcis/queries/{name}/subscriptions`):
    its new events are sent to `dest` as they come (`stream`) or on a schedule."""

    __tablename__ = "food_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(40), unique=True)
    query_name: Mapped[str] = mapped_column(String(100), index=True)
    dest: Mapped[str] = mapped_column(Text)
    signature_token: Mapped[str | None] = mapped_column(Text, default=None)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    # The schedule's fields (second, minute, hour, dayOfMonth, month, dayOfWeek), each a
    # value or a comma-separated list; a field left out matches every value.
    schedule: Mapped[dict[str, str] | None] = mapped_column(JSON, default=None)
    report_if_empty: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str] = mapped_column(String(120))
    organization_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # The last event sent (its index key): the next delivery sends the events after it.
    watermark: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_result: Mapped[str | None] = mapped_column(Text, default=None)
