"""Webhook delivery (Standard Webhooks), and the verifier consumers run on their side.

Every publishing transaction makes sure each active subscription that asked for its
events' kinds has one `events.deliver` job waiting (a waiting job is reused, not
duplicated: a job sends all its subscription's pending events). Deliveries of a subscription stay in order: one
runner at a time holds the subscription's lease and sends every pending event, oldest
first; a job that finds the lease freshly held leaves its event to the holder, which looks
again for new events after letting go. A failed send is retried with exponential backoff;
after `max_attempts` failures the event goes to the dead-letter list and delivery moves on.
The cursor moves only past events the receiver answered 2xx (or dead-lettered), and is
saved every `SAVE_EVERY` seconds while events flow, before each retry and at the end of a
batch; a runner that dies sends the events since its last save once more, with the same
`webhook-id`, which `Verifier` recognises (Standard Webhooks receivers dedupe on it).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from minyun.core import clock, events, jobs
from minyun.core.events import Event, EventOut
from minyun.core.security import Principal
from minyun.push.models import EventDeadLetter, Subscription
from minyun.push.service import Visibility, current_owner

log = logging.getLogger(__name__)

KIND = "events.deliver"
LEASE_FOR = timedelta(seconds=60)
BATCH = 100
TIMEOUT = 10.0
# Seconds between saves of a subscription's delivered offset while events flow.
SAVE_EVERY = 0.05


@dataclass(frozen=True)
class Backoff:
    """Seconds before retry n (1-based): base · 2^(n-1), at most `cap`."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, attempt - 1)))


BACKOFF = Backoff()


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signed(
    secret: str, event: EventOut, *, at: datetime | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and the Standard Webhooks headers of one delivery of `event`."""
    body = json.dumps(event.payload(), ensure_ascii=False, separators=(",", ":")).encode()
    now = at or clock.now()
    signature = Webhook(secret).sign(event.id, now, body)
    headers = {
        "content-type": "application/json",
        "webhook-id": event.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    return body, headers


class WebhookRejected(Exception):
    """A webhook that the verifying side must not act on (bad signature, stale, replayed)."""


class Verifier:
    """What a consumer runs on each webhook: signature and age (standardwebhooks), and no
    `webhook-id` accepted twice (a replay, or a redelivery of an event already taken)."""

    def __init__(self, secret: str, *, remember: int = 100_000) -> None:
        self._hook = Webhook(secret)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def verify(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """The event, or WebhookRejected."""
        try:
            payload = self._hook.verify(body, dict(headers))
        except WebhookVerificationError as exc:
            raise WebhookRejected(str(exc)) from exc
        msg_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        with self._lock:
            if msg_id in self._seen:
                raise WebhookRejected(f"webhook {msg_id} was already received")
            self._seen[msg_id] = None
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        if not isinstance(payload, dict) or payload.get("id") != msg_id:
            raise WebhookRejected("the body is not the event its webhook-id names")
        return payload


# --- queuing ---------------------------------------------------------------------------------


def queue_deliveries(session: Session, event: Event) -> None:
    """In the publishing transaction: make sure each subscription of this kind has a delivery
    job waiting to run after the commit.

    One waiting job per subscription is enough, since a delivery job sends every pending
    event of its subscription: a job still queued is taken over (its row updated, so on
    PostgreSQL a runner claiming it waits for this transaction and then sees this event)
    instead of queuing one more. Only when none waits (or its runner took it already) is a
    job submitted. Within one transaction this is asked once per subscription.
    """
    subscriptions, woken = _publishing_state(session)
    for subscription_id, kinds, organization_id in subscriptions:
        if event.kind not in kinds or subscription_id in woken:
            continue
        params = {"subscription_id": subscription_id, "offset": event.offset}
        waiting = session.execute(
            update(jobs.Job)
            .where(jobs.Job.kind == KIND, jobs.Job.state == jobs.JobState.QUEUED)
            .where(jobs.Job.key.like(f"{KIND}:{subscription_id}:%"))
            .values(params=params)
        )
        if not _rowcount(waiting):
            jobs.submit(
                session, Principal.system(), KIND, params,
                key=f"{KIND}:{subscription_id}:{event.offset}",
                organization_id=organization_id,
            )  # fmt: skip
        woken.add(subscription_id)


_PUBLISHING = "minyun.push.publishing"


def _publishing_state(
    session: Session,
) -> tuple[list[tuple[int, frozenset[str], int | None]], set[int]]:
    """This transaction's active subscriptions and those already woken, read once."""
    transaction = session.get_transaction()
    known = session.info.get(_PUBLISHING)
    if known is None or known[0] is not transaction:
        active = session.scalars(select(Subscription).where(Subscription.active.is_(True)))
        subscriptions = [(s.id, frozenset(s.kinds), s.organization_id) for s in active]
        known = session.info[_PUBLISHING] = (transaction, subscriptions, set())
    return known[1], known[2]


events.ON_PUBLISH.append(queue_deliveries)


# --- delivering ------------------------------------------------------------------------------


class _LeaseLost(Exception):
    pass


@jobs.handler(KIND)
def deliver(ctx: jobs.JobContext) -> dict[str, Any]:
    """Deliver, in order, the subscription's pending events (this job's among them)."""
    subscription_id = int(ctx.params["subscription_id"])
    sent = 0
    while _pending(ctx.factory, subscription_id):
        lease = _claim(ctx.factory, subscription_id)
        if lease is None:
            # The holder sends this event too: it looks for new ones after letting go.
            return {"sent": sent, "left_to": "the runner holding the subscription"}
        try:
            sent += _drain(ctx, subscription_id, lease)
        except _LeaseLost:
            return {"sent": sent, "left_to": "the runner that took the subscription over"}
        finally:
            _release(ctx.factory, subscription_id, lease)
    return {"sent": sent}


def _pending(factory: sessionmaker[Session], subscription_id: int) -> bool:
    with factory() as session:
        subscription = session.get(Subscription, subscription_id)
        if subscription is None or not subscription.active:
            return False
        return (
            session.scalar(
                select(Event.offset)
                .where(Event.offset > subscription.delivered_offset)
                .where(Event.kind.in_(subscription.kinds))
                .limit(1)
            )
            is not None
        )


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0) if isinstance(result, CursorResult) else 0


def _claim(factory: sessionmaker[Session], subscription_id: int) -> str | None:
    lease = uuid.uuid4().hex
    now = clock.now()
    with factory.begin() as session:
        taken = session.execute(
            update(Subscription)
            .where(Subscription.id == subscription_id)
            .where(or_(Subscription.lease.is_(None), Subscription.lease_until < now))
            .values(lease=lease, lease_until=now + LEASE_FOR)
        )
    return lease if _rowcount(taken) else None


def _release(factory: sessionmaker[Session], subscription_id: int, lease: str) -> None:
    with factory.begin() as session:
        session.execute(
            update(Subscription)
            .where(Subscription.id == subscription_id, Subscription.lease == lease)
            .values(lease=None, lease_until=None)
        )


def _held(session: Session, subscription_id: int, lease: str, **values: Any) -> None:
    """Update the subscription if this runner still holds it; else stop the runner."""
    values["lease_until"] = clock.now() + LEASE_FOR
    moved = session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id, Subscription.lease == lease)
        .values(**values)
    )
    if not _rowcount(moved):
        raise _LeaseLost(subscription_id)


@dataclass(frozen=True)
class _Target:
    id: int
    url: str
    secret: str
    max_attempts: int


def _drain(ctx: jobs.JobContext, subscription_id: int, lease: str) -> int:
    sent = 0
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        while True:
            with ctx.factory() as session:
                subscription = session.get(Subscription, subscription_id)
                if subscription is None or not subscription.active:
                    return sent
                target = _Target(subscription.id, subscription.url, subscription.secret,
                                 subscription.max_attempts)  # fmt: skip
                batch = events.read_after(
                    session, subscription.delivered_offset, limit=BATCH,
                    kinds=frozenset(subscription.kinds),
                )  # fmt: skip
                owner = current_owner(session, subscription)
                if owner is None:
                    _held(session, subscription_id, lease, active=False,
                          last_error="stopped: the subscriber's account is disabled or revoked")  # fmt: skip
                    session.commit()
                    return sent
                # The owner's rights of now decide, as for its own reads of the log.
                seen = Visibility(owner, session)
                shown = [seen.sees(event) for event in batch]
            if not batch:
                return sent
            cursor = _Cursor(ctx, target.id, lease)
            for event, visible in zip(batch, shown, strict=True):
                ctx.check()
                error = _send(ctx, client, target, event, lease, cursor) if visible else None
                cursor.moved(event.offset, taken=visible and error is None)
                if error is not None:
                    cursor.save(dead=EventDeadLetter(subscription_id=target.id,
                                                     offset=event.offset,
                                                     attempts=target.max_attempts, error=error))  # fmt: skip
                elif cursor.due():
                    cursor.save()
                sent += int(visible and error is None)
            cursor.save()


class _Cursor:
    """The subscription's delivered offset, saved at most every `SAVE_EVERY` seconds, before
    a retry waits, on a dead letter and at the end of a batch: one transaction for many
    deliveries. A runner that dies sends the events since the last save once more, with the
    same `webhook-id`, which receivers recognise (`Verifier`)."""

    def __init__(self, ctx: jobs.JobContext, subscription_id: int, lease: str) -> None:
        self.ctx, self.subscription_id, self.lease = ctx, subscription_id, lease
        self.offset: int | None = None
        self.taken = 0
        self.saved_at = time.monotonic()

    def moved(self, offset: int, *, taken: bool) -> None:
        self.offset = offset
        self.taken += int(taken)

    def due(self) -> bool:
        return time.monotonic() - self.saved_at >= SAVE_EVERY

    def save(self, **values: Any) -> None:
        dead: EventDeadLetter | None = values.pop("dead", None)
        with self.ctx.factory.begin() as session:
            if dead is not None:
                session.add(dead)
            if self.offset is not None:
                values.setdefault("failures", 0)  # unless a failure of the next is saved
                values.update(delivered_offset=self.offset,
                              delivered_count=Subscription.delivered_count + self.taken)  # fmt: skip
            _held(session, self.subscription_id, self.lease, **values)
        self.offset, self.taken, self.saved_at = None, 0, time.monotonic()


def _send(
    ctx: jobs.JobContext,
    client: httpx.Client,
    target: _Target,
    event: EventOut,
    lease: str,
    cursor: _Cursor,
) -> str | None:
    """Send until the receiver takes it (None) or `max_attempts` failed (the last error)."""
    error = "not sent"
    for attempt in range(1, target.max_attempts + 1):
        body, headers = signed(target.secret, event)
        try:
            answer = client.post(target.url, content=body, headers=headers)
            if 200 <= answer.status_code < 300:
                return None
            error = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        log.info("webhook %s to subscription %s: attempt %s failed: %s",
                 event.id, target.id, attempt, error)  # fmt: skip
        cursor.save(failures=attempt, last_error=error)  # what was taken before it, too
        if attempt < target.max_attempts:
            _wait(ctx, target.id, lease, BACKOFF.delay(attempt))
    return error


def _wait(ctx: jobs.JobContext, subscription_id: int, lease: str, seconds: float) -> None:
    """Sleep before a retry, keeping the lease and seeing a cancellation."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))
        ctx.check()
        with ctx.factory.begin() as session:
            _held(session, subscription_id, lease)
