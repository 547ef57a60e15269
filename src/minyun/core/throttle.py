"""Rate limits (sign-in, token requests, audited refusals): in memory, or Redis in production."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse, storage, strategies

# How long an address's count of unrecorded refusals waits for its next recorded refusal.
COUNTED_FOR = 7 * 86400


class Throttle:
    """A moving-window limit per key, e.g. 5 login attempts per minute per account."""

    def __init__(self, storage_uri: str, limit: str) -> None:
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))
        self._item: RateLimitItem = parse(limit)

    def hit(self, *keys: str) -> bool:
        """Count one attempt; False once the limit is reached."""
        return self._limiter.hit(self._item, *keys)

    def allowed(self, *keys: str) -> bool:
        """Whether another attempt would be allowed, without counting one."""
        return self._limiter.test(self._item, *keys)

    def retry_after(self, *keys: str) -> int:
        """Seconds until the next attempt is allowed."""
        reset, _remaining = self._limiter.get_window_stats(self._item, *keys)
        return max(1, int(reset - time.time()))

    def clear(self, *keys: str) -> None:
        self._limiter.clear(self._item, *keys)


@lru_cache(maxsize=8)
def login_throttle(storage_uri: str, per_minute: int) -> Throttle:
    """The shared login throttle of this process."""
    return Throttle(storage_uri, f"{per_minute}/minute")


@dataclass(frozen=True)
class Admission:
    """What to do with one refusal: record it, announce that counting starts, or only count."""

    verdict: str  # "record", "announce" or "count"
    counted: int  # refusals counted and not recorded (carried by the next recorded one)


class DenialBudget:
    """How many refusals of unauthenticated requests per address reach the audit chain.

    Within `limit` (e.g. "20/minute") per address, refusals are recorded one by one; the next
    one records that the rest are being counted; the first recorded refusal of a later window
    carries the count. Garbage cannot flood the chain, and a flood still leaves its trace.
    """

    def __init__(self, storage_uri: str, limit: str) -> None:
        counts = storage.storage_from_string(storage_uri)
        if not isinstance(counts, storage.Storage):
            raise TypeError(f"{storage_uri} is not a synchronous limits storage")
        self._storage = counts
        self._limiter = strategies.FixedWindowRateLimiter(counts)
        self._item: RateLimitItem = parse(limit)
        self.limit = limit

    def admit(self, address: str) -> Admission:
        """Count one refusal from `address` and say how to audit it."""
        counter = f"minyun-denials-counted/{address}"
        if self._limiter.hit(self._item, "audit-denials", address):
            counted = self._storage.get(counter)
            if counted:
                self._storage.incr(counter, COUNTED_FOR, -counted)
            return Admission("record", counted)
        counted = self._storage.incr(counter, COUNTED_FOR)
        return Admission("announce" if counted == 1 else "count", counted)
