"""Rate limits (login throttling): in memory by default, Redis in production."""

from __future__ import annotations

import time
from functools import lru_cache

from limits import RateLimitItem, parse, storage, strategies


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
