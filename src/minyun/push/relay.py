"""The outbox relayed to NATS JetStream, in order, once.

The relay reads the log after its position and publishes each event to the stream
(subject `<prefix>.<kind>`, e.g. `minyun.events.enterprise.registered`), awaiting each
acknowledgement before the next, so the stream holds the events in offset order. Every
message carries `Nats-Msg-Id: <offset>`: JetStream drops a second publish of the same id
within its duplicate window. Beyond the window, resuming is still exact: the relay starts
after the larger of its recorded position and the offset of the stream's last message, so
a relay that died between the stream's acknowledgement and recording its position sends
nothing twice. Positions move by compare-and-set: of two relays running at once, the one
that finds the position moved under it stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from minyun.core import clock, events, jobs
from minyun.core.config import get_settings
from minyun.push.models import RelayPosition

log = logging.getLogger(__name__)

KIND = "events.relay"
STREAM = "MINYUN_EVENTS"
PREFIX = "minyun.events"
BATCH = 500


@dataclass(frozen=True)
class Target:
    """Where the log goes: a NATS server, the stream, and its subjects' prefix."""

    url: str
    stream: str = STREAM
    prefix: str = PREFIX

    @property
    def name(self) -> str:
        """The relay's position row: one per stream."""
        return f"nats:{self.stream}"


class RelayOvertaken(Exception):
    """Another relay moved the position: this one stops."""


def run(
    factory: sessionmaker[Session],
    target: Target,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Relay every committed event not yet in the stream; the number published."""
    return asyncio.run(relay(factory, target, on_batch=on_batch))


async def relay(
    factory: sessionmaker[Session],
    target: Target,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    nc = await nats.connect(target.url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        await ensure_stream(js, target)
        position = await _resume_point(js, factory, target)
        sent = 0
        while True:
            with factory() as session:
                batch = events.read_after(session, position, limit=BATCH)
            if not batch:
                return sent
            for event in batch:
                await _publish(js, target, event)
            _advance(factory, target, position, batch[-1].offset)
            position = batch[-1].offset
            sent += len(batch)
            if on_batch is not None:
                on_batch(position)
    finally:
        await nc.close()


async def ensure_stream(js: JetStreamContext, target: Target) -> None:
    """The stream, made if missing (file storage, two-minute duplicate window)."""
    try:
        await js.stream_info(target.stream)
    except NotFoundError:
        await js.add_stream(
            name=target.stream, subjects=[f"{target.prefix}.>"], duplicate_window=120.0
        )


async def _publish(js: JetStreamContext, target: Target, event: events.EventOut) -> None:
    body = json.dumps(event.payload(), ensure_ascii=False, separators=(",", ":")).encode()
    ack = await js.publish(
        f"{target.prefix}.{event.kind}",
        body,
        stream=target.stream,
        headers={"Nats-Msg-Id": str(event.offset)},
    )
    if ack.duplicate:
        log.info("event %s was in stream %s already", event.offset, target.stream)


async def last_relayed(js: JetStreamContext, target: Target) -> int:
    """The offset of the stream's last message (0 for an empty stream)."""
    info = await js.stream_info(target.stream)
    if not info.state.last_seq:
        return 0
    message = await js.get_msg(target.stream, seq=info.state.last_seq)
    return int((message.headers or {}).get("Nats-Msg-Id", 0))


async def _resume_point(
    js: JetStreamContext, factory: sessionmaker[Session], target: Target
) -> int:
    in_stream = await last_relayed(js, target)
    with factory.begin() as session:
        row = session.get(RelayPosition, target.name)
        if row is None:
            row = RelayPosition(name=target.name, last_offset=0)
            session.add(row)
        if in_stream > row.last_offset:
            # Published before the relay could record it: don't publish it again.
            row.last_offset = in_stream
            row.updated_at = clock.now()
        return row.last_offset


def _advance(factory: sessionmaker[Session], target: Target, old: int, new: int) -> None:
    with factory.begin() as session:
        moved = session.execute(
            update(RelayPosition)
            .where(RelayPosition.name == target.name, RelayPosition.last_offset == old)
            .values(last_offset=new, updated_at=clock.now())
        )
        if not getattr(moved, "rowcount", 0):
            raise RelayOvertaken(f"another relay moved {target.name} past {old}")


def position(session: Session, target: Target) -> int:
    """How far the relay to this stream has come."""
    row = session.get(RelayPosition, target.name)
    return row.last_offset if row is not None else 0


@jobs.handler(KIND)
def relay_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Relay the log to the node's NATS server until it is caught up."""
    settings = get_settings()
    target = Target(
        str(ctx.params.get("url") or settings.nats_url),
        str(ctx.params.get("stream") or STREAM),
        str(ctx.params.get("prefix") or PREFIX),
    )
    sent = run(ctx.factory, target, on_batch=lambda at: ctx.progress(at, message="relayed"))
    return {"sent": sent}
