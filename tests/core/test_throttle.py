"""Login throttling in memory (embedded) and on the real Redis server (production)."""

from __future__ import annotations

import uuid

import pytest

from minyun.core.throttle import Throttle


@pytest.mark.parametrize("uri", ["memory://", "redis://127.0.0.1:6379"])
def test_throttle_stops_after_the_limit_and_clears(uri: str) -> None:
    throttle = Throttle(uri, "3/minute")
    key = ("login-user", uuid.uuid4().hex)
    assert [throttle.hit(*key) for _ in range(4)] == [True, True, True, False]
    assert not throttle.allowed(*key)
    assert 1 <= throttle.retry_after(*key) <= 60
    throttle.clear(*key)
    assert throttle.allowed(*key)


def test_two_processes_share_the_redis_window() -> None:
    key = ("login-ip", uuid.uuid4().hex)
    first, second = (
        Throttle("redis://127.0.0.1:6379", "2/minute"),
        Throttle("redis://127.0.0.1:6379", "2/minute"),
    )
    assert first.hit(*key) and second.hit(*key)
    assert not first.allowed(*key) and not second.allowed(*key)
