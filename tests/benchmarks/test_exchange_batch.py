"""The batch delivery benchmark keeps working (no timing asserted: `make bench` measures)."""

from __future__ import annotations

import pytest

from benchmarks import exchange_batch

pytestmark = pytest.mark.postgres


def test_the_batch_benchmark_runs_at_a_tiny_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exchange_batch, "ROWS", 300)
    figures = exchange_batch.run()
    assert figures["exchange.batch_rows"] == 300
    assert figures["exchange.batch_rows_per_s"] > 0 and figures["exchange.batch_copy_ratio"] > 0
