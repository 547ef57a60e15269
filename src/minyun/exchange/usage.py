"""How a grant is used, from the audit log: calls per day, rows delivered, denials.

Both sides see it (the consumer holding the grant, the provider that gave it). Nothing is
counted twice or kept apart: the audit chain already holds every read and every refusal.

- a call through the grant is a successful `resource.read` of its resource whose record
  names the grant (`grant=<id>` in its detail: the key lookup, the row query, both paths);
  its `record_count` is the rows it delivered;
- a denial is a refused `resource.read` of the resource by an account of the consumer
  department (outside the grant's fields, over its rate limit, after revocation or expiry)
  since the grant was given.

Days are China time (UTC+8), counted in the database (`GROUP BY` the day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, String, and_, case, cast, func, literal, literal_column, or_, select
from sqlalchemy.orm import Session

from minyun.accounts.models import ApiClient, User
from minyun.core import clock
from minyun.core.audit import AuditRecord
from minyun.core.errors import Invalid
from minyun.core.policies import READ
from minyun.core.security import Principal
from minyun.exchange.models import Grant
from minyun.exchange.service import access_grant

MAX_DAYS = 366
CHINA = timedelta(hours=8)


@dataclass(frozen=True)
class DayUsage:
    day: date
    calls: int
    rows: int
    denials: int


@dataclass(frozen=True)
class Usage:
    """A grant's use over the last `days` days, oldest day first (days without use are 0)."""

    grant: Grant
    days: list[DayUsage]

    @property
    def calls(self) -> int:
        return sum(d.calls for d in self.days)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days)

    @property
    def denials(self) -> int:
        return sum(d.denials for d in self.days)

    def chart(self) -> dict[str, Any]:
        """The series the usage chart draws."""
        return {
            "days": [d.day.isoformat() for d in self.days],
            "calls": [d.calls for d in self.days],
            "rows": [d.rows for d in self.days],
            "denials": [d.denials for d in self.days],
        }


def grant_usage(session: Session, actor: Principal, grant_id: int, *, days: int = 30) -> Usage:
    """The grant's calls, rows and denials per day, for its holder and its provider."""
    grant = access_grant(session, actor, grant_id)
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(f"days must be between 1 and {MAX_DAYS}", field="days")
    today = (clock.now() + CHINA).date()
    first = today - timedelta(days=days - 1)
    since = max(datetime.combine(first, datetime.min.time(), clock.now().tzinfo) - CHINA,
                grant.created_at)  # fmt: skip
    found = _per_day(session, grant, since)
    return Usage(
        grant,
        [
            found.get(first + timedelta(days=n), DayUsage(first + timedelta(days=n), 0, 0, 0))
            for n in range(days)
        ],
    )


def _day(session: Session) -> Any:
    """The record's day in China time, as the database computes it."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(AuditRecord.at, "+8 hours")
    return cast(AuditRecord.at + literal_column("interval '8 hours'"), Date)


def _per_day(session: Session, grant: Grant, since: datetime) -> dict[date, DayUsage]:
    tag = f"grant={grant.id}"
    through = or_(AuditRecord.detail.like(f"%; {tag};%"), AuditRecord.detail.like(f"%; {tag}"))
    success = and_(AuditRecord.outcome == "success", through)
    denied = and_(AuditRecord.outcome == "denied", AuditRecord.actor.in_(_actors(grant)))
    day = _day(session).label("day")
    rows = session.execute(
        select(
            day,
            func.sum(case((success, 1), else_=0)),
            func.sum(case((success, func.coalesce(AuditRecord.record_count, 0)), else_=0)),
            func.sum(case((denied, 1), else_=0)),
        )
        .where(
            AuditRecord.action == READ,
            AuditRecord.object_id == grant.resource.code,
            AuditRecord.at >= since,
            or_(success, denied),
        )
        .group_by(day)
    ).all()
    out: dict[date, DayUsage] = {}
    for when, calls, delivered, denials in rows:
        key = when if isinstance(when, date) else date.fromisoformat(str(when))
        out[key] = DayUsage(key, int(calls or 0), int(delivered or 0), int(denials or 0))
    return out


def _actors(grant: Grant) -> Any:
    """The audit labels of the consumer department's accounts (users and API clients)."""
    users = select(literal("user:", String) + User.username).where(
        User.organization_id == grant.consumer_id
    )
    clients = select(literal("client:", String) + ApiClient.client_id).where(
        ApiClient.organization_id == grant.consumer_id
    )
    return users.union_all(clients)
