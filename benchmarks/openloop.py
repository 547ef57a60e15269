"""An open-loop HTTP load generator: a constant offered rate, latency from the scheduled time.

`wrk` is closed-loop: each connection sends its next request only when the previous one
has been answered, so when the server stalls the generator stops sending, and the requests
that would have waited are never measured (coordinated omission). A Lua `delay` in wrk
only spaces the requests of one connection after each answer, which is still closed-loop.
This generator fixes the send schedule in advance instead, request i at `start + i/rate`,
and measures each latency from that scheduled time to the last byte of the response.
Requests are handed to a fixed set of keep-alive HTTP/1.1 connections; when all of them
are busy a request waits in the queue, and the wait counts in its latency, as it would
for a client of a slow server. Requests still unanswered when the run's time is up are
counted as `unanswered` and enter the percentiles with the time they had waited so far
(the figures are then lower bounds, and say so through that count).

It runs in a process of its own (`python -m benchmarks.openloop < config.json`), on
asyncio streams (uvloop when installed) with a minimal HTTP/1.1 client: little CPU per
request, so it does not starve the server on a small machine. The config (JSON on stdin):

    {"host": "127.0.0.1", "port": 8000, "path_prefix": "/api/v1/resources/x/rows/",
     "path_suffix": "", "keys": 1000000, "rate": 500, "seconds": 10, "warmup_seconds": 2,
     "connections": 32, "headers": {"Authorization": "Bearer …"}, "seed": 1}

The request path is `path_prefix + k + path_suffix` for a random key k in 1..keys. The
answer (JSON on stdout): counts and latency percentiles in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DRAIN_SECONDS = 5.0  # how long answers are awaited after the last scheduled send
CONNECT_SECONDS = 5.0
MAX_RATE = 20_000
MAX_SECONDS = 120
MAX_CONNECTIONS = 256


@dataclass(frozen=True)
class Config:
    port: int
    path_prefix: str
    keys: int
    host: str = "127.0.0.1"
    path_suffix: str = ""
    rate: float = 500.0
    seconds: float = 10.0
    warmup_seconds: float = 2.0
    connections: int = 32
    headers: dict[str, str] = field(default_factory=dict)
    seed: int = 1

    def __post_init__(self) -> None:
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the load generator only talks to this machine")
        if not 0 < self.rate <= MAX_RATE:
            raise ValueError(f"rate must be in (0, {MAX_RATE}]")
        if not 0 < self.seconds <= MAX_SECONDS or not 0 <= self.warmup_seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS}]")
        if not 1 <= self.connections <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be in [1, {MAX_CONNECTIONS}]")
        if self.keys < 1:
            raise ValueError("keys must be at least 1")


class HttpError(Exception):
    """The server answered something this client does not read as an HTTP/1.1 response."""


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        extra = "".join(f"{k}: {v}\r\n" for k, v in config.headers.items())
        self.head = f"Host: {config.host}:{config.port}\r\n{extra}\r\n".encode("latin-1")

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.config.host, self.config.port), CONNECT_SECONDS
        )

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def get(self, path: str) -> int:
        """GET `path`; the status code, once the whole body is read."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\n".encode("latin-1") + self.head)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            await self._chunks()
        else:
            raise HttpError("a response with neither a length nor chunks")
        if headers.get("connection") == "close":
            await self.close()
        return status

    async def _chunks(self) -> None:
        assert self.reader is not None
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                return


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    lags: list[float] = field(default_factory=list)  # seconds the generator sent late


async def _worker(
    connection: Connection, queue: asyncio.Queue[tuple[float, str] | None], outcome: Outcome
) -> None:
    while (item := await queue.get()) is not None:
        scheduled, path = item
        try:
            status = await connection.get(path)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError):
            outcome.failures += 1
            await connection.close()
            continue
        outcome.latencies.append(time.perf_counter() - scheduled)
        outcome.statuses[status] = outcome.statuses.get(status, 0) + 1


async def _phase(
    config: Config, connections: list[Connection], seconds: float, rng: random.Random
) -> tuple[Outcome, int, float, list[float]]:
    """Send at the rate for `seconds`; (outcome, sent, elapsed, waits of the unanswered)."""
    queue: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()
    outcome = Outcome()
    workers = [asyncio.create_task(_worker(c, queue, outcome)) for c in connections]
    total = int(config.rate * seconds)
    interval = 1.0 / config.rate
    schedule: list[float] = []
    start = time.perf_counter() + 0.01
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        key = rng.randint(1, config.keys)
        queue.put_nowait((scheduled, f"{config.path_prefix}{key}{config.path_suffix}"))
        schedule.append(scheduled)
        outcome.lags.append(time.perf_counter() - scheduled)
    deadline = time.perf_counter() + DRAIN_SECONDS
    while len(outcome.latencies) + outcome.failures < total and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    ended = time.perf_counter()
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    unanswered = total - len(outcome.latencies) - outcome.failures
    # The unanswered are the newest sends still waiting (a FIFO queue, first in first out)
    # or in flight; they enter the percentiles with the time they have waited so far.
    waits = [ended - s for s in schedule[total - unanswered :]] if unanswered > 0 else []
    return outcome, total, ended - start, waits


async def run(config: Config) -> dict[str, Any]:
    """Warm up, then measure; the figures of the measured phase."""
    rng = random.Random(config.seed)
    connections = [Connection(config) for _ in range(config.connections)]
    await asyncio.gather(*(c.open() for c in connections))
    try:
        if config.warmup_seconds:
            await _phase(config, connections, config.warmup_seconds, rng)
            # Connections a cancelled request left half-read are not reused.
            await asyncio.gather(*(c.close() for c in connections))
            await asyncio.gather(*(c.open() for c in connections))
        outcome, sent, elapsed, waits = await _phase(config, connections, config.seconds, rng)
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    ok = outcome.statuses.get(200, 0)
    all_ms = np.array(outcome.latencies + waits, dtype=np.float64) * 1000.0
    figures: dict[str, Any] = {
        "offered_rps": config.rate,
        "sent": sent,
        "ok": ok,
        "non_200": sum(n for s, n in outcome.statuses.items() if s != 200),
        "failures": outcome.failures,
        "unanswered": len(waits),
        "answered_rps": round(len(outcome.latencies) / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(outcome.statuses.items())},
    }
    if all_ms.size:
        for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
            figures[f"{name}_ms"] = round(float(np.percentile(all_ms, q, method="higher")), 3)
        figures["max_ms"] = round(float(all_ms.max()), 3)
    if outcome.lags:
        # The generator's own lateness (a busy machine, timer resolution): part of every
        # latency above, and the first thing to look at when p99 is high.
        lag_ms = np.array(outcome.lags, dtype=np.float64) * 1000.0
        figures["send_lag_p99_ms"] = round(float(np.percentile(lag_ms, 99, method="higher")), 3)
    return figures


def main() -> int:
    config = Config(**json.load(sys.stdin))
    try:
        import uvloop
    except ImportError:
        figures = asyncio.run(run(config))
    else:
        figures = uvloop.run(run(config))
    json.dump(figures, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
