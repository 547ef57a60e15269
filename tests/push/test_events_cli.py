"""`minyun events subscribe | list | relay`, run as an operator would."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import nats
from typer.testing import CliRunner

from minyun.cli import app
from minyun.core import events
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.uow import unit_of_work
from minyun.push.models import Subscription
from tests.factories import make_uscc

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_subscribe_list_and_relay_from_the_command_line(var: Path) -> None:
    _ok("org", "create", "fj-tax", "--name", "福建省税务局", "--division", "350000",
        "--uscc", make_uscc(7001, "350000"))  # fmt: skip
    out = _ok("events", "subscribe", "fj-tax", "https://hooks.tax.example.cn/minyun",
              "--kind", "enterprise.registered", "--kind", "enterprise.deregistered")  # fmt: skip
    assert "secret (shown once): whsec_" in out
    assert "hooks.tax.example.cn" in _ok("events", "list")
    refused = runner.invoke(app, ["events", "subscribe", "fj-tax", "http://127.0.0.1:9/x",
                                  "--kind", "enterprise.changed"])  # fmt: skip
    assert refused.exit_code == 1 and "inside this network" in refused.output
    node = Platform.open(load_settings(var_dir=var), run_jobs_here=False)
    try:
        with node.factory() as session:
            (made,) = session.query(Subscription).all()
            # Filtered as the organisation's own reader, not as the CLI's system account.
            assert made.owner["kind"] == "client" and made.owner["name"] == "subscription:fj-tax"
        with unit_of_work(node.factory) as session:
            events.publish(session, kind="enterprise.registered", subject="E1", data={})
    finally:
        node.close()
    stream = f"CLI{uuid.uuid4().hex[:10].upper()}"
    try:
        out = _ok("events", "relay", "--stream", stream, "--prefix", f"cli.{stream.lower()}")
        assert f"relayed 1; {stream} at offset 1 of 1" in out
        out = _ok("events", "relay", "--stream", stream, "--prefix", f"cli.{stream.lower()}")
        assert "relayed 0" in out
    finally:

        async def drop() -> None:
            nc = await nats.connect("nats://127.0.0.1:4222")
            try:
                await nc.jetstream().delete_stream(stream)
            finally:
                await nc.close()

        asyncio.run(drop())
