"""Who sees which event, reading the log by offset, and webhook subscriptions.

An event is shown only to those who may see what it is about, decided from the reader's
own rights and denied by default: a resource's events to whoever the access policies let
read the resource's data; enterprise registration events to civil servants; anything
else to nobody. Webhook subscriptions are filtered the same way, with their owner's rights.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts.models import ApiClient, User
from minyun.accounts.service import principal_for
from minyun.catalog.service import data_resource, find_resource
from minyun.core import audit, events, policies
from minyun.core.errors import Invalid, NotFound
from minyun.core.events import EventOut
from minyun.core.security import Principal, authorize, decide
from minyun.push.models import EventDeadLetter, Subscription

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# How many log entries one page may pass over looking for visible ones.
SCAN_FACTOR = 10


@dataclass
class Visibility:
    """Decides, for one reader, which events it may see (resource answers are remembered)."""

    actor: Principal
    session: Session
    _resources: dict[str, bool] = field(default_factory=dict)

    def sees(self, event: EventOut) -> bool:
        """Deny by default: only the kinds with a rule are ever shown."""
        if not self.actor.authenticated:
            return False
        if event.kind.startswith("resource."):
            return self._reads_resource(event.subject)
        if event.kind.startswith("enterprise."):
            return policies.audience(self.actor) == "internal"
        if event.kind.startswith("grid."):  # grid reports: every civil servant follows them
            return decide(self.session, self.actor, "grid.read").allowed
        return False

    def _reads_resource(self, code: str) -> bool:
        known = self._resources.get(code)
        if known is None:
            known = self._resources[code] = self._plan_allows(code)
        return known

    def _plan_allows(self, code: str) -> bool:
        resource = find_resource(self.session, code)
        if resource is None:
            return False
        facts = data_resource(self.session, resource)
        verdict = policies.evaluate(self.session, self.actor, policies.READ, facts)
        if verdict is None:
            return False
        plan = policies.plan_for(self.actor, policies.READ, facts, verdict, purpose="events")
        return not facts.fields or bool(plan.visible)


@dataclass(frozen=True)
class EventPage:
    events: list[EventOut]
    # Where the next page starts: past every entry this page looked at, shown or not.
    next_after: int
    head: int


def read_events(
    session: Session, actor: Principal, *, after: int = 0, limit: int = DEFAULT_LIMIT
) -> EventPage:
    """The events after `after` the reader may see, oldest first; the read is audited."""
    authorize(session, actor, "events.read", target_type="events")
    limit = max(1, min(limit, MAX_LIMIT))
    page = _visible_page(session, Visibility(actor, session), after, limit)
    audit.record_read(
        session, actor, "events.read", target_type="events", count=len(page.events),
        keys=[str(e.offset) for e in page.events][:50],
        detail=f"after {after}, up to {page.next_after}",
    )  # fmt: skip
    return page


def _visible_page(session: Session, seen: Visibility, after: int, limit: int) -> EventPage:
    scanned = events.read_after(session, after, limit=limit * SCAN_FACTOR)
    shown: list[EventOut] = []
    next_after = after
    for event in scanned:
        if len(shown) == limit:
            break
        next_after = event.offset
        if seen.sees(event):
            shown.append(event)
    return EventPage(shown, next_after, events.head(session))


# --- subscriptions ---------------------------------------------------------------------------


def owner_facts(actor: Principal) -> dict[str, Any]:
    """What a subscription keeps of its owner to filter events with the owner's rights."""
    return {
        "kind": actor.kind,
        "name": actor.name,
        "user_id": actor.user_id,
        "organization_id": actor.organization_id,
        "roles": sorted(actor.roles),
        "scopes": sorted(actor.scopes),
        "account_kind": actor.account_kind,
    }


def current_owner(session: Session, subscription: Subscription) -> Principal | None:
    """The owner with its rights of now, or None once its account is disabled or revoked:
    a user's roles as they are, a client's scopes as they were granted and are still held."""
    snapshot = owner_of(subscription)
    if snapshot.kind == "user":
        user = session.get(User, snapshot.user_id) if snapshot.user_id is not None else None
        if user is None or not user.active:
            return None
        return principal_for(user)
    if snapshot.kind == "client" and not snapshot.name.startswith("subscription:"):
        client = session.scalars(
            select(ApiClient).where(ApiClient.client_id == snapshot.name)
        ).first()
        if client is None or not client.active:
            return None
        held = frozenset(client.scopes or ()) & snapshot.scopes
        return replace(snapshot, organization_id=client.organization_id, scopes=held)
    return snapshot


def owner_of(subscription: Subscription) -> Principal:
    """The subscription's owner as a principal (its rights when it subscribed)."""
    facts = subscription.owner
    return Principal(
        kind=str(facts["kind"]),
        name=str(facts["name"]),
        user_id=facts.get("user_id"),
        organization_id=facts.get("organization_id"),
        roles=frozenset(facts.get("roles") or ()),
        scopes=frozenset(facts.get("scopes") or ()),
        account_kind=facts.get("account_kind"),
    )


def check_url(url: str, *, allow_private: bool) -> str:
    """An http(s) URL; loopback and private addresses only where the node allows them."""
    try:
        parts = urlsplit(url)
        hostname, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise Invalid("the webhook URL is not a valid URL", field="url") from exc
    if parts.scheme not in ("http", "https") or not hostname:
        raise Invalid("the webhook URL must be an http or https URL", field="url")
    if len(url) > 2000:
        raise Invalid("the webhook URL is too long", field="url")
    if not allow_private:
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            address = None
        if hostname == "localhost" or (
            address is not None and (address.is_private or address.is_loopback)
        ):
            raise Invalid("the webhook URL points inside this network", field="url")
    return url


def subscribe(
    session: Session,
    actor: Principal,
    *,
    url: str,
    kinds: list[str],
    allow_private: bool = False,
    max_attempts: int = 8,
    owner: Principal | None = None,
) -> Subscription:
    """A webhook subscription of the actor's organisation, from the log's head onwards.

    Events are filtered with the rights of `owner` (the actor unless given: the CLI gives
    the organisation's stand-in, `organization_reader`).
    """
    authorize(session, actor, "events.subscribe", target_type="event_subscription")
    owner = owner or actor
    wanted = sorted(set(kinds))
    unknown = [k for k in wanted if k not in events.KINDS]
    if not wanted or unknown:
        raise Invalid(f"unknown event kinds: {', '.join(unknown) or '(none given)'}", field="kinds")
    if not 1 <= max_attempts <= 20:
        raise Invalid("max_attempts must be between 1 and 20", field="max_attempts")
    from minyun.push.webhooks import new_secret

    subscription = Subscription(
        organization_id=owner.organization_id,
        owner=owner_facts(owner),
        url=check_url(url, allow_private=allow_private),
        kinds=wanted,
        secret=new_secret(),
        delivered_offset=events.head(session),
        max_attempts=max_attempts,
        created_by=actor.label,
    )
    session.add(subscription)
    session.flush()
    session.info.pop("minyun.push.publishing", None)  # publishers in this transaction see it
    audit.record(
        session, actor, "events.subscribe", target=str(subscription.id),
        target_type="event_subscription", detail=f"{url} {','.join(wanted)}",
    )  # fmt: skip
    return subscription


def organization_reader(organization_id: int, code: str) -> Principal:
    """An organisation's stand-in reader: what its own API client with `resource.read` and
    `events.read` would see (its own resources, its grants, enterprise events)."""
    return Principal(
        kind="client", name=f"subscription:{code}", organization_id=organization_id,
        scopes=frozenset({"resource.read", "events.read"}),
    )  # fmt: skip


def stop_subscription(session: Session, actor: Principal, subscription_id: int) -> Subscription:
    """No more deliveries to the subscription (its log position and dead letters are kept)."""
    subscription = access_subscription(session, actor, subscription_id)
    subscription.active = False
    audit.record(
        session, actor, "events.unsubscribe", target=str(subscription.id),
        target_type="event_subscription", detail=subscription.url,
    )  # fmt: skip
    return subscription


def access_subscription(session: Session, actor: Principal, subscription_id: int) -> Subscription:
    """The subscription if it is the actor's organisation's (or the actor is an admin)."""
    subscription = session.get(Subscription, subscription_id)
    # Same error for missing and someone else's.
    if subscription is None or not (
        _oversees(actor)
        or (
            actor.organization_id is not None
            and subscription.organization_id == actor.organization_id
        )
    ):
        raise NotFound(f"no subscription {subscription_id}")
    return subscription


def _oversees(actor: Principal) -> bool:
    return actor.kind == "system" or (actor.kind == "user" and actor.has_role("admin"))


def list_subscriptions(session: Session, actor: Principal) -> list[Subscription]:
    """The subscriptions of the actor's organisation (every one for admins)."""
    authorize(session, actor, "events.subscribe", target_type="event_subscription")
    query = select(Subscription).order_by(Subscription.id)
    if not _oversees(actor):
        if actor.organization_id is None:
            return []
        query = query.where(Subscription.organization_id == actor.organization_id)
    return list(session.scalars(query))


def dead_letters(session: Session, actor: Principal, subscription_id: int) -> list[EventDeadLetter]:
    """The events a subscription's URL never took."""
    subscription = access_subscription(session, actor, subscription_id)
    return list(
        session.scalars(
            select(EventDeadLetter)
            .where(EventDeadLetter.subscription_id == subscription.id)
            .order_by(EventDeadLetter.offset)
        )
    )
