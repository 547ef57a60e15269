"""Events: a durable, ordered log in the control plane, written with the change (an outbox).

`publish` adds an event inside the caller's transaction, so the event exists if and only
if the change committed. Offsets come from one counter row (`event_head`) that `publish`
moves in the same transaction: its row lock makes publishers take turns until they
commit, so offsets are gapless and appear in commit order — a reader that has seen offset
n never later finds an event below n. Readers (the events API, webhook deliveries, the
NATS relay) follow the log by offset; none of them deletes from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from minyun.core import clock
from minyun.core.db import Base, UTCDateTime
from minyun.core.errors import Invalid

KINDS = frozenset(
    {
        "enterprise.registered",
        "enterprise.changed",
        "enterprise.deregistered",
        "resource.updated",
        # Grid governance (apps.grid): a report's way through the departments.
        "grid.report.routed",
        "grid.report.rerouted",
        "grid.task.accepted",
        "grid.task.closed",
        "grid.task.escalated",
        "grid.report.closed",
    }
)
# Called in the publishing transaction with each new event (webhook deliveries queue their
# jobs here, so a job exists if and only if its event committed).
ON_PUBLISH: list[Callable[[Session, Event], None]] = []


class Event(Base):
    """One thing that happened, at its place in the log."""

    __tablename__ = "events"

    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    # What it is about: a resource code, an enterprise's credit code.
    subject: Mapped[str] = mapped_column(String(200), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EventHead(Base):
    """The log's last offset (one row): the counter publishers move in their transaction."""

    __tablename__ = "event_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(BigInteger, default=0)


@dataclass(frozen=True)
class EventOut:
    """An event as readers and consumers see it (CloudEvents-like names)."""

    offset: int
    kind: str
    subject: str
    time: datetime
    data: dict[str, Any]

    @property
    def id(self) -> str:
        """The event's stable id: the same in every delivery, webhook or NATS message."""
        return f"evt_{self.offset}"

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "offset": self.offset,
            "type": self.kind,
            "subject": self.subject,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "data": self.data,
        }

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(event.offset, event.kind, event.subject, event.time, dict(event.data or {}))


def publish(session: Session, *, kind: str, subject: str, data: dict[str, Any]) -> Event:
    """Add an event to the log in the caller's transaction; it is seen once that commits."""
    if kind not in KINDS:
        raise Invalid(f"unknown event kind {kind!r}", field="kind")
    if not subject or len(subject) > 200:
        raise Invalid("an event needs a subject of at most 200 characters", field="subject")
    offset = _next_offset(session)
    event = Event(offset=offset, kind=kind, subject=subject, time=clock.now(), data=data)
    session.add(event)
    session.flush()
    for hook in ON_PUBLISH:
        hook(session, event)
    return event


def _next_offset(session: Session) -> int:
    moved = session.execute(
        update(EventHead).where(EventHead.id == 1).values(last=EventHead.last + 1)
        .returning(EventHead.last)
    ).scalar_one_or_none()  # fmt: skip
    if moved is not None:
        return int(moved)
    # A database made without the migration's first row (create_all in a tool): start it.
    session.execute(insert(EventHead).values(id=1, last=1))
    return 1


def head(session: Session) -> int:
    """The newest committed offset (0 for an empty log)."""
    return int(session.scalar(select(EventHead.last).where(EventHead.id == 1)) or 0)


def read_after(
    session: Session, after: int, *, limit: int, kinds: frozenset[str] | None = None
) -> list[EventOut]:
    """Up to `limit` events after `after`, oldest first (no authorisation: callers filter)."""
    query = select(Event).where(Event.offset > after).order_by(Event.offset).limit(limit)
    if kinds is not None:
        query = query.where(Event.kind.in_(sorted(kinds)))
    return [EventOut.of(e) for e in session.scalars(query)]
