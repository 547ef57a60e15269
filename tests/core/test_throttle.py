"""Login throttling in memory (embedded) and on the real Redis server (production)."""

from __future__ import annotations

import time
import uuid

import pytest

from minyun.core.throttle import Admission, DenialBudget, Throttle


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


@pytest.mark.parametrize("uri", ["memory://", "redis://127.0.0.1:6379"])
def test_refusals_past_the_budget_are_counted_and_the_count_is_recorded_later(uri: str) -> None:
    budget = DenialBudget(uri, "3/second")
    address = f"10.1.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    # Start at the beginning of a second so the whole burst falls in one window.
    time.sleep(1 - time.time() % 1)
    burst = [budget.admit(address) for _ in range(10)]
    assert [a.verdict for a in burst] == ["record"] * 3 + ["announce"] + ["count"] * 6
    assert budget.admit("10.2.0.1").verdict == "record"  # other addresses keep their budget
    time.sleep(1.05)  # the next window
    later = budget.admit(address)
    assert (later.verdict, later.counted) == ("record", 7)
    assert budget.admit(address) == Admission("record", 0)  # the count was carried once
