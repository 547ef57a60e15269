"""`minyun grid`: grid governance (网格化治理) commands."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from minyun.apps.grid import apikeys, service
from minyun.core.config import load_settings
from minyun.core.errors import DomainError
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work

grid_app = typer.Typer(help="网格化治理 grid governance: grids, Open311 keys, SLA.",
                       no_args_is_help=True)  # fmt: skip
key_app = typer.Typer(help="Open311 api keys.", no_args_is_help=True)
grid_app.add_typer(key_app, name="api-key")
ADMIN = Principal.system(on_behalf_of="cli")


def _platform() -> Platform:
    return Platform.open(load_settings(), run_jobs_here=False)


@grid_app.command("setup")
def setup() -> None:
    """Load Gulou district's streets, communities, grids, departments and services."""
    node = _platform()
    try:
        with unit_of_work(node.factory) as session:
            added = service.load_gulou(session, ADMIN)
    finally:
        node.close()
    typer.echo(f"{added} areas added")


@grid_app.command("escalate")
def escalate(
    follow: Annotated[
        bool, typer.Option(help="Keep checking the SLA clocks until Ctrl-C.")
    ] = False,
    every: Annotated[float, typer.Option(min=1, help="Seconds between checks with --follow.")] = 60,
) -> None:
    """Move overdue tasks up (street office, then the district grid centre)."""
    node = _platform()
    try:
        while True:
            with unit_of_work(node.factory) as session:
                moved = service.escalate_overdue(session, ADMIN)
            typer.echo(f"{moved} tasks escalated")
            if not follow:
                break
            time.sleep(every)
    except KeyboardInterrupt:
        pass
    finally:
        node.close()


@key_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="The Open311 client's name.")],
    rate: Annotated[str, typer.Option(help="Rate limit, e.g. 60/minute.")] = "60/minute",
) -> None:
    """Print a new api_key for an Open311 client (shown once)."""
    node = _platform()
    try:
        with unit_of_work(node.factory) as session:
            made = apikeys.create_key(session, ADMIN, name, rate_limit=rate)
    except DomainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        node.close()
    typer.echo(made.key)


@key_app.command("revoke")
def revoke_key(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: its next request is refused."""
    node = _platform()
    try:
        with unit_of_work(node.factory) as session:
            apikeys.revoke_key(session, ADMIN, name)
    except DomainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        node.close()
    typer.echo(f"revoked {name}")


@key_app.command("list")
def list_keys() -> None:
    """The keys with their state and rate."""
    node = _platform()
    try:
        with unit_of_work(node.factory) as session:
            for key in apikeys.list_keys(session, ADMIN):
                state = "active" if key.active else "revoked"
                typer.echo(f"{key.name}\t{key.prefix}…\t{key.rate_limit}\t{state}")
    finally:
        node.close()
