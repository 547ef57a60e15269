"""Events API: the log by offset, and webhook subscriptions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from minyun.push import service
from minyun.push.models import EventDeadLetter, Subscription
from minyun.web.deps import INT32_MAX, ActorDep, PlatformDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["events"])


class EventPageRead(BaseModel):
    events: list[dict[str, Any]]
    next_after: int = Field(description="`after` of the next page")
    head: int = Field(description="the newest offset of the log")


class SubscriptionIn(BaseModel):
    url: str = Field(max_length=2000)
    kinds: list[str] = Field(min_length=1, max_length=20)
    max_attempts: int = Field(default=8, ge=1, le=20)


class SubscriptionRead(BaseModel):
    id: int
    url: str
    kinds: list[str]
    active: bool
    delivered_offset: int
    delivered_count: int
    failures: int
    last_error: str | None
    max_attempts: int
    created_at: datetime

    @classmethod
    def of(cls, s: Subscription) -> SubscriptionRead:
        return cls(id=s.id, url=s.url, kinds=list(s.kinds), active=s.active,
                   delivered_offset=s.delivered_offset, delivered_count=s.delivered_count,
                   failures=s.failures, last_error=s.last_error, max_attempts=s.max_attempts,
                   created_at=s.created_at)  # fmt: skip


class SubscriptionSecretRead(SubscriptionRead):
    secret: str = Field(description="the signing secret (Standard Webhooks), shown only once")


class DeadLetterRead(BaseModel):
    offset: int
    attempts: int
    error: str | None
    at: datetime

    @classmethod
    def of(cls, d: EventDeadLetter) -> DeadLetterRead:
        return cls(offset=d.offset, attempts=d.attempts, error=d.error, at=d.at)


@router.get("/events", response_model=EventPageRead)
def read_events(
    session: SessionDep,
    actor: ActorDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="the last offset already read")] = 0,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = service.DEFAULT_LIMIT,
) -> EventPageRead:
    """Events after an offset that this account may see, oldest first; audited."""
    page = service.read_events(session, actor, after=after, limit=limit)
    return EventPageRead(
        events=[e.payload() for e in page.events], next_after=page.next_after, head=page.head
    )


@router.post("/event-subscriptions", response_model=SubscriptionSecretRead, status_code=201)
def subscribe(
    body: SubscriptionIn, session: SessionDep, actor: ActorDep, platform: PlatformDep
) -> SubscriptionSecretRead:
    """A webhook subscription for the account's organisation; the secret is shown once."""
    subscription = service.subscribe(
        session, actor, url=body.url, kinds=body.kinds, max_attempts=body.max_attempts,
        allow_private=platform.settings.webhooks_allow_private,
    )  # fmt: skip
    read = SubscriptionRead.of(subscription)
    return SubscriptionSecretRead(**read.model_dump(), secret=subscription.secret)


@router.get("/event-subscriptions", response_model=list[SubscriptionRead])
def subscriptions(session: SessionDep, actor: ActorDep) -> list[SubscriptionRead]:
    """The webhook subscriptions of the account's organisation, with where delivery stands."""
    return [SubscriptionRead.of(s) for s in service.list_subscriptions(session, actor)]


@router.get(
    "/event-subscriptions/{subscription_id}/dead-letters", response_model=list[DeadLetterRead]
)
def dead_letters(
    subscription_id: Annotated[int, Path(ge=1, le=INT32_MAX)],
    session: SessionDep,
    actor: ActorDep,
) -> list[DeadLetterRead]:
    """The events the subscription's URL refused every time."""
    return [DeadLetterRead.of(d) for d in service.dead_letters(session, actor, subscription_id)]


@router.delete("/event-subscriptions/{subscription_id}", response_model=SubscriptionRead)
def unsubscribe(
    subscription_id: Annotated[int, Path(ge=1, le=INT32_MAX)],
    session: SessionDep,
    actor: ActorDep,
) -> SubscriptionRead:
    """Stop deliveries to a subscription of the account's organisation."""
    return SubscriptionRead.of(service.stop_subscription(session, actor, subscription_id))
