"""Per-grant rate limits of online calls: in memory by default, Redis in production.

A grant may carry a rate limit (calls per minute). Every online call read through such a
plan counts one hit on the grant's window (`limits`' sliding-window counter, kept in the
node's `rate_limit_uri`: `memory://` in the embedded default, `redis://…` shared by every
worker in production). A call beyond the limit is refused with `TooManyRequests` (429) and
audited; a flood of refusals is recorded through a `DenialBudget` (the first ones one by
one, then counted), so it cannot flood the audit chain yet still leaves its trace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from limits import RateLimitItemPerMinute, storage, strategies
from sqlalchemy.orm import Session

from minyun.core.errors import TooManyRequests
from minyun.core.throttle import DenialBudget

if TYPE_CHECKING:
    from minyun.core.policies import AccessPlan

# Refusals of one grant recorded one by one per minute; the rest are counted.
DENIALS_RECORDED = "10/minute"
SESSION_KEY = "quotas"


@dataclass(frozen=True)
class Refusal:
    """A call over its grant's limit: the error to raise, and whether to audit it now."""

    error: TooManyRequests
    record: bool
    detail: str


class GrantQuotas:
    """The rate-limit windows of grants, in one limits storage."""

    def __init__(self, storage_uri: str, *, namespace: str = "minyun-grant") -> None:
        self.storage_uri = storage_uri
        # Nodes sharing one Redis keep their windows apart (grant ids repeat across nodes).
        self.namespace = namespace
        self.local = storage_uri.startswith("memory://")
        self._limiter = strategies.SlidingWindowCounterRateLimiter(
            storage.storage_from_string(storage_uri)
        )
        self._denials = DenialBudget(storage_uri, DENIALS_RECORDED)

    def hit(self, plan: AccessPlan) -> Refusal | None:
        """Count one call of the plan; a Refusal once its grant's limit is reached."""
        if plan.rate_limit is None or plan.quota is None:
            return None
        item = RateLimitItemPerMinute(plan.rate_limit)
        if self._limiter.hit(item, self.namespace, plan.quota):
            return None
        reset, _ = self._limiter.get_window_stats(item, self.namespace, plan.quota)
        retry = max(1, int(reset - time.time()))
        detail = f"over the rate limit of {plan.rate_limit} calls per minute"
        error = TooManyRequests(
            f"{detail}; try again in {retry} s", code="rate-limited", retry_after=retry
        )
        admission = self._denials.admit(f"{self.namespace}/{plan.quota}")
        if admission.verdict == "announce":
            detail += "; further refusals this minute are counted, not recorded one by one"
        elif admission.counted:
            detail += f"; {admission.counted} refusals counted before this one"
        return Refusal(error, admission.verdict != "count", f"{detail}; {plan.reason}")

    def clear(self, plan: AccessPlan) -> None:
        """Forget the grant's window (tests)."""
        if plan.rate_limit is not None and plan.quota is not None:
            item = RateLimitItemPerMinute(plan.rate_limit)
            self._limiter.clear(item, self.namespace, plan.quota)


@lru_cache(maxsize=8)
def quotas_for(storage_uri: str, node: str = "") -> GrantQuotas:
    """This process's grant windows of node `node` in `storage_uri`."""
    return GrantQuotas(storage_uri, namespace=f"minyun-grant/{node}" if node else "minyun-grant")


def of_session(session: Session) -> GrantQuotas:
    """The node's grant windows (the session's `quotas`), or this process's memory ones."""
    found = session.info.get(SESSION_KEY)
    return found if isinstance(found, GrantQuotas) else quotas_for("memory://")


def admit(session: Session, plan: AccessPlan) -> None:
    """Count one online call of the plan; over its grant's limit, TooManyRequests (audited)."""
    refusal = of_session(session).hit(plan)
    if refusal is None:
        return
    if refusal.record:
        from minyun.core import audit

        refusal.error.audit = audit.Pending(
            actor=plan.actor, action=plan.action, target=plan.code, target_type="resource",
            purpose=plan.purpose, outcome=audit.Outcome.DENIED, detail=refusal.detail,
        )  # fmt: skip
    raise refusal.error
