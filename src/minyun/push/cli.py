"""`minyun events`: webhook subscriptions and the relay to NATS JetStream."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console

from minyun.cli_support import transaction
from minyun.core import events
from minyun.core.config import load_settings
from minyun.core.errors import DomainError
from minyun.core.platform import Platform
from minyun.core.uow import unit_of_work
from minyun.orgs.cli import CLI
from minyun.orgs.service import get_organization
from minyun.push import relay, service

events_app = typer.Typer(
    help="Event push: webhook subscriptions and the NATS JetStream relay.", no_args_is_help=True
)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@events_app.command("subscribe")
def subscribe(
    org: Annotated[str, typer.Argument(help="the subscribing organisation's code")],
    url: Annotated[str, typer.Argument(help="where to POST the webhooks")],
    kind: Annotated[
        list[str], typer.Option(help="an event kind, e.g. enterprise.registered (repeat)")
    ],
    max_attempts: Annotated[int, typer.Option(min=1, max=20)] = 8,
) -> None:
    """Subscribe an organisation's URL to events; prints the signing secret once."""
    with transaction() as session:
        found = get_organization(session, org)
        allow = load_settings().webhooks_allow_private
        made = service.subscribe(
            session, CLI, url=url, kinds=kind, max_attempts=max_attempts, allow_private=allow,
            owner=service.organization_reader(found.id, found.code),
        )  # fmt: skip
        console.print(f"subscription {made.id}: {made.url} ({', '.join(made.kinds)})")
        console.print(f"secret (shown once): {made.secret}")


@events_app.command("list")
def list_subscriptions() -> None:
    """Every subscription and where its delivery stands."""
    with transaction() as session:
        for s in service.list_subscriptions(session, CLI):
            state = "active" if s.active else "stopped"
            console.print(
                f"{s.id} {s.url} [{','.join(s.kinds)}] {state}, delivered to offset "
                f"{s.delivered_offset}, {s.failures} failures {s.last_error or ''}".rstrip(),
                highlight=False,
                overflow="ignore",
                crop=False,
            )


@events_app.command("relay")
def relay_command(
    follow: Annotated[bool, typer.Option(help="keep relaying new events")] = False,
    every: Annotated[float, typer.Option(min=0.1, help="seconds between looks")] = 1.0,
    stream: str = relay.STREAM,
    prefix: str = relay.PREFIX,
) -> None:
    """Relay the event log to the node's NATS JetStream (MINYUN_NATS_URL), in order, once."""
    settings = load_settings()
    target = relay.Target(settings.nats_url, stream, prefix)
    node = Platform.open(settings, run_jobs_here=False)
    try:
        while True:
            try:
                sent = relay.run(node.factory, target)
            except (OSError, DomainError, relay.RelayOvertaken) as exc:
                err.print(f"[red]error:[/] {exc}")
                raise typer.Exit(1) from exc
            with unit_of_work(node.factory) as session:
                at = relay.position(session, target)
                head = events.head(session)
            if sent or not follow:
                console.print(f"relayed {sent}; {target.stream} at offset {at} of {head}")
            if not follow:
                return
            time.sleep(every)
    finally:
        node.close()
