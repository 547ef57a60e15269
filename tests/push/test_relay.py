"""The outbox relayed to the NATS JetStream server at 127.0.0.1:4222 (for real)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from minyun.core import events, jobs
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.push import relay
from minyun.push.relay import Target

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
def target() -> Iterator[Target]:
    """A stream of the test's own, deleted after it."""
    name = f"T{uuid.uuid4().hex[:12].upper()}"
    yield Target(NATS_URL, stream=name, prefix=f"test.{name.lower()}")

    async def drop() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(name)
        finally:
            await nc.close()

    asyncio.run(drop())


def _publish(node: Platform, n: int, start: int = 0) -> None:
    with unit_of_work(node.factory) as session:
        for i in range(start, start + n):
            kind = "enterprise.registered" if i % 2 else "enterprise.changed"
            events.publish(session, kind=kind, subject=f"E{i}", data={"i": i})


def _stream(target: Target) -> list[tuple[str, dict[str, Any], str]]:
    """Every message of the stream in order: subject, body, Nats-Msg-Id."""

    async def read() -> list[tuple[str, dict[str, Any], str]]:
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            info = await js.stream_info(target.stream)
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                m = await js.get_msg(target.stream, seq=seq)
                found.append((m.subject, json.loads(m.data or b"{}"),
                              (m.headers or {})["Nats-Msg-Id"]))  # fmt: skip
            return found
        finally:
            await nc.close()

    return asyncio.run(read())


def test_the_relay_publishes_the_log_in_order_and_resumes_where_it_stopped(
    node: Platform, target: Target
) -> None:
    _publish(node, 5)
    assert relay.run(node.factory, target) == 5
    _publish(node, 3, start=5)
    assert relay.run(node.factory, target) == 3
    assert relay.run(node.factory, target) == 0
    found = _stream(target)
    assert [m[2] for m in found] == [str(n) for n in range(1, 9)]
    assert [m[1]["data"]["i"] for m in found] == list(range(8))
    assert found[1][0] == f"{target.prefix}.enterprise.registered"
    assert found[1][1]["id"] == "evt_2" and found[1][1]["subject"] == "E1"
    with node.factory() as session:
        assert relay.position(session, target) == 8


def test_a_relay_that_died_before_recording_its_position_sends_nothing_twice(
    node: Platform, target: Target
) -> None:
    _publish(node, 6)
    relay.run(node.factory, target)
    # As if the relay had died after the stream's acknowledgements, before its record.
    with node.factory.begin() as session:
        session.get(relay.RelayPosition, target.name).last_offset = 2  # type: ignore[union-attr]
    _publish(node, 2, start=6)
    assert relay.run(node.factory, target) == 2
    assert [m[2] for m in _stream(target)] == [str(n) for n in range(1, 9)]


def test_jetstream_drops_a_second_publish_of_the_same_offset(
    node: Platform, target: Target
) -> None:
    _publish(node, 2)
    relay.run(node.factory, target)
    with node.factory() as session:
        (first, _) = events.read_after(session, 0, limit=2)

    async def again() -> bool:
        nc = await nats.connect(NATS_URL)
        try:
            await relay._publish(nc.jetstream(), target, first)
            info = await nc.jetstream().stream_info(target.stream)
            return info.state.messages == 2
        finally:
            await nc.close()

    assert asyncio.run(again())


def test_a_consumer_reads_the_events_from_jetstream(node: Platform, target: Target) -> None:
    _publish(node, 4)
    relay.run(node.factory, target)

    async def consume() -> list[str]:
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe(f"{target.prefix}.enterprise.registered", "tax")
            messages = await sub.fetch(10, timeout=2)
            for m in messages:
                await m.ack()
            return [json.loads(m.data)["subject"] for m in messages]
        finally:
            await nc.close()

    assert asyncio.run(consume()) == ["E1", "E3"]


def test_the_relay_runs_as_a_job(node: Platform, target: Target) -> None:
    _publish(node, 3)
    with unit_of_work(node.factory) as session:
        params = {"url": target.url, "stream": target.stream, "prefix": target.prefix}
        job_id = jobs.submit(session, Principal.system(), relay.KIND, params).id
    done = jobs.run(node.factory, job_id)
    assert done.state == jobs.JobState.SUCCEEDED, done.error
    assert done.result == {"sent": 3}
    assert [m[2] for m in _stream(target)] == ["1", "2", "3"]
