"""Query subscriptions (EPCIS 2.0 REST binding, `/epcis/queries/{name}/subscriptions`).

A client subscribes to one of its named queries with a webhook `dest`, an optional
`signatureToken`, and either `stream: true` (sent whenever new events match) or a
`schedule` (cron-like fields: second, minute, hour, dayOfMonth, month, dayOfWeek; a field
left out matches every value). A delivery runs the named query for the events after the
subscription's watermark (the index key of the last event sent), POSTs them page by page
as an EPCISQueryDocument to `dest` — signed with HMAC-SHA-256 of the body under the
client's `signatureToken` in the `GS1-Signature` header, as the binding leaves the
signature's kind to the implementation — and moves the watermark after each page the
receiver acknowledged (2xx); a failed page is sent again next time. An empty run is sent
only with `reportIfEmpty`. The `food.subscriptions` job delivers every due subscription;
`submit` keys it by minute, so a timer may ask as often as it likes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from minyun.apps.food import epcis
from minyun.apps.food import query as food_query
from minyun.apps.food import service as svc
from minyun.apps.food.models import FoodEvent, QuerySubscription
from minyun.core import audit, clock, jobs
from minyun.core.errors import Invalid, NotFound
from minyun.core.security import Principal, authorize

KIND = "food.subscriptions"
PER_PAGE = 1000
MAX_PAGES = 100
# A schedule's fields; deliveries run once a minute, so `second` is accepted and not used.
_FIELDS = ("second", "minute", "hour", "dayOfMonth", "month", "dayOfWeek")


def subscribe(
    session: Session,
    actor: Principal,
    query_name: str,
    *,
    dest: str,
    signature_token: str | None = None,
    stream: bool = False,
    schedule: dict[str, Any] | None = None,
    report_if_empty: bool = False,
    initial_record_time: str | None = None,
) -> QuerySubscription:
    """Subscribe to a named query: streamed or scheduled (one of them, as the binding says),
    from the events recorded since `initial_record_time` (default: from now on)."""
    svc.get_query(session, actor, query_name)  # NoSuchNameException; the query right
    if not dest.startswith(("http://", "https://")):
        raise food_query.refuse("dest: an http(s) URL to send the events to")
    if stream == bool(schedule):
        raise food_query.refuse("give either stream: true or a schedule")
    plan = _schedule(schedule) if schedule else None
    subscription = QuerySubscription(
        subscription_id="sub_" + secrets.token_hex(8), query_name=query_name, dest=dest,
        signature_token=signature_token, stream=stream, schedule=plan,
        report_if_empty=report_if_empty, owner=actor.label[:120],
        organization_id=actor.organization_id,
        watermark=_start(session, initial_record_time),
    )  # fmt: skip
    session.add(subscription)
    session.flush()
    audit.record(session, actor, "epcis.subscribe", target=subscription.subscription_id,
                 target_type="epcis-subscription",
                 detail=json.dumps({"query": query_name, "dest": dest, "stream": stream,
                                    "schedule": plan}))  # fmt: skip
    return subscription


def _schedule(schedule: dict[str, Any]) -> dict[str, str]:
    unknown = set(schedule) - set(_FIELDS)
    if unknown:
        raise food_query.refuse(f"schedule: unknown field {sorted(unknown)[0]}")
    plan = {k: str(v) for k, v in schedule.items()}
    for key, value in plan.items():
        if not all(part.strip().isdigit() for part in value.split(",")):
            raise food_query.refuse(f"schedule.{key}: a number or a comma-separated list of them")
    return plan


def _start(session: Session, initial: str | None) -> int:
    """The watermark of a new subscription: before the first event recorded since
    `initial`, or after the newest event stored."""
    if initial is None:
        return int(session.scalar(select(FoodEvent.id).order_by(FoodEvent.id.desc())) or 0)
    try:
        since = epcis.parse_time(initial)
    except ValueError as exc:
        raise food_query.refuse(f"initialRecordTime: {exc}") from exc
    first = session.scalar(
        select(FoodEvent.id).where(FoodEvent.record_time >= since).order_by(FoodEvent.id)
    )
    return int(first) - 1 if first is not None else _start(session, None)


def list_subscriptions(
    session: Session, actor: Principal, query_name: str
) -> list[QuerySubscription]:
    """The subscriptions to a named query."""
    svc.get_query(session, actor, query_name)
    stmt = select(QuerySubscription).where(QuerySubscription.query_name == query_name)
    return list(session.scalars(stmt.order_by(QuerySubscription.id)))


def get_subscription(
    session: Session, actor: Principal, query_name: str, subscription_id: str
) -> QuerySubscription:
    """One subscription to a named query, or NoSuchSubscriptionException (404)."""
    svc.get_query(session, actor, query_name)
    found = session.scalars(
        select(QuerySubscription).where(
            QuerySubscription.query_name == query_name,
            QuerySubscription.subscription_id == subscription_id,
        )
    ).first()
    if found is None:
        raise NotFound(f"no subscription {subscription_id}", code="NoSuchResourceException")
    return found


def unsubscribe(session: Session, actor: Principal, query_name: str, subscription_id: str) -> None:
    """End a subscription."""
    found = get_subscription(session, actor, query_name, subscription_id)
    session.execute(delete(QuerySubscription).where(QuerySubscription.id == found.id))
    audit.record(session, actor, "epcis.unsubscribe", target=subscription_id,
                 target_type="epcis-subscription")  # fmt: skip


def as_dict(subscription: QuerySubscription) -> dict[str, Any]:
    """A subscription as the binding shows it (the signature token is never shown)."""
    out: dict[str, Any] = {
        "subscriptionID": subscription.subscription_id, "queryName": subscription.query_name,
        "dest": subscription.dest, "stream": subscription.stream,
        "reportIfEmpty": subscription.report_if_empty,
        "createdAt": subscription.created_at.isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    if subscription.schedule:
        out["schedule"] = subscription.schedule
    return out


def due(subscription: QuerySubscription, now: datetime) -> bool:
    """Whether a subscription is to be delivered at `now` (a streamed one always)."""
    if subscription.stream:
        return True
    values = {"second": now.second, "minute": now.minute, "hour": now.hour,
              "dayOfMonth": now.day, "month": now.month, "dayOfWeek": now.isoweekday() % 7}  # fmt: skip
    plan = subscription.schedule or {}
    return all(
        values[k] in {int(p) for p in v.split(",")} for k, v in plan.items() if k != "second"
    )


@dataclass
class Delivery:
    pages: int = 0
    events: int = 0


def deliver(session: Session, subscription_id: int, http: httpx.Client) -> Delivery:
    """Send a subscription's new events to its `dest`, page by page; the watermark moves
    with each page the receiver acknowledged."""
    sub = session.get(QuerySubscription, subscription_id)
    if sub is None:
        raise NotFound(f"no subscription {subscription_id}")
    actor = Principal(kind="system", name="minyun", organization_id=sub.organization_id,
                      on_behalf_of=f"subscription:{sub.subscription_id}")  # fmt: skip
    saved = svc.get_query(session, actor, sub.query_name)
    done = Delivery()
    while done.pages < MAX_PAGES:
        page = svc.query_events(
            session, actor, {**saved.query, "orderBy": ["recordTime"]}, per_page=PER_PAGE,
            extra=[FoodEvent.id > sub.watermark], query_name=sub.query_name,
            purpose=f"subscription {sub.subscription_id}",
        )  # fmt: skip
        if not page.events and (done.pages or not sub.report_if_empty):
            break
        _post(http, sub, svc.query_document(page))
        done.pages, done.events = done.pages + 1, done.events + len(page.events)
        if not page.events:
            break
        sub.watermark = max(page.keys)
    sub.last_run_at = clock.now()
    sub.last_result = json.dumps(done.__dict__)
    return done


def _post(http: httpx.Client, sub: QuerySubscription, document: dict[str, Any]) -> None:
    body = json.dumps(document, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/ld+json", "GS1-EPCIS-Version": epcis.EPCIS_VERSION,
               "GS1-Query-Name": sub.query_name, "GS1-Subscription-ID": sub.subscription_id}  # fmt: skip
    if sub.signature_token:
        digest = hmac.new(sub.signature_token.encode(), body, hashlib.sha256).hexdigest()
        headers["GS1-Signature"] = f"sha256={digest}"
    answer = http.post(sub.dest, content=body, headers=headers)
    if not 200 <= answer.status_code < 300:
        raise Invalid(f"{sub.dest} answered {answer.status_code}")


def submit(session: Session, actor: Principal, *, now: datetime | None = None) -> jobs.Job:
    """Queue a delivery of every due subscription, at most one per minute."""
    authorize(session, actor, "food.pull", target="subscriptions", target_type="epcis-subscription")
    at = (now or clock.now()).replace(second=0, microsecond=0)
    return jobs.submit(session, actor, KIND, {"at": at.isoformat()}, key=f"{KIND}@{at.isoformat()}")


@jobs.handler(KIND)
def run_deliveries(ctx: jobs.JobContext) -> dict[str, Any]:
    """Deliver every due subscription; one receiver's failure is reported, the others run."""
    at = datetime.fromisoformat(ctx.params["at"])
    with ctx.factory() as session:
        subs = [s.id for s in session.scalars(select(QuerySubscription)) if due(s, at)]
    done: dict[str, Any] = {}
    with httpx.Client(timeout=30) as http:
        for n, sub_id in enumerate(subs):
            ctx.progress(n, len(subs))
            try:
                with ctx.factory.begin() as session:
                    done[str(sub_id)] = deliver(session, sub_id, http).__dict__
            except (Invalid, NotFound, httpx.HTTPError) as exc:
                done[str(sub_id)] = {"error": str(exc)[:300]}
    return {"subscriptions": done}
