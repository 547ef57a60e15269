"""`minyun resource`: register catalog resources from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from minyun.catalog import service
from minyun.catalog.models import OpenType, SharingType, UpdateCycle
from minyun.core.config import load_settings
from minyun.core.errors import DomainError
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work

resource_app = typer.Typer(help="Catalog resources (政务信息资源).", no_args_is_help=True)
CLI = Principal.system(on_behalf_of="cli")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@resource_app.callback()
def resource() -> None:
    """Catalog resources (政务信息资源)."""


def _read_schema(path: Path) -> dict[str, Any]:
    try:
        descriptor = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="--schema"
        ) from None
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{path.name} is not JSON: {exc}", param_hint="--schema") from None
    if not isinstance(descriptor, dict):
        raise typer.BadParameter(
            f"{path.name}: a Table Schema is a JSON object", param_hint="--schema"
        )
    return descriptor


@resource_app.command("create")
def create(
    code: Annotated[str, typer.Argument(help="resource code: a-z 0-9 . _ -")],
    name: Annotated[str, typer.Option(help="resource name (资源名称)")],
    provider: Annotated[str, typer.Option(help="code of the providing organisation")],
    schema: Annotated[
        Path, typer.Option(help="Frictionless Table Schema (JSON) with the minyun keys")
    ],
    sharing: Annotated[SharingType, typer.Option(help="sharing type")] = SharingType.CONDITIONAL,
    open_: Annotated[OpenType, typer.Option("--open", help="open type")] = OpenType.NONE,
    theme: Annotated[
        str | None, typer.Option(help="one of the 21 domains, by code or Chinese name")
    ] = None,
    summary: Annotated[str, typer.Option(help="resource summary (资源摘要)")] = "",
    legal_basis: Annotated[
        str | None, typer.Option(help="legal basis, required for a conditional or no sharing/open")
    ] = None,
    base_library: Annotated[
        str | None, typer.Option(help="population, legal-person, geospatial or licence")
    ] = None,
    update_cycle: Annotated[UpdateCycle, typer.Option(help="update cycle")] = (
        UpdateCycle.IRREGULAR
    ),
    publish: Annotated[bool, typer.Option(help="publish it at once")] = False,
) -> None:
    """Register a resource with its first schema (1.0), as a draft unless --publish."""
    descriptor = _read_schema(schema)
    node = Platform.open(load_settings(), run_jobs_here=False)
    try:
        with unit_of_work(node.factory) as session:
            created = service.create_resource(
                session,
                CLI,
                code=code,
                name=name,
                provider=provider,
                summary=summary,
                theme=theme,
                base_library=base_library,
                update_cycle=update_cycle,
                sharing_type=sharing,
                open_type=open_,
                legal_basis=legal_basis,
                schema=descriptor,
            )
            if publish:
                service.publish_resource(session, CLI, code)
            status, version = created.status, created.current_schema_version
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        node.close()
    console.print(f"resource [bold]{code}[/] {status}, schema {version}")


def _change(code: str, what: str, reason: str | None) -> None:
    node = Platform.open(load_settings(), run_jobs_here=False)
    try:
        with unit_of_work(node.factory) as session:
            change = service.retire_resource if what == "retire" else service.restore_resource
            status = change(session, CLI, code, reason=reason).status
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        node.close()
    console.print(f"resource [bold]{code}[/] {status}")


@resource_app.command("retire")
def retire(
    code: Annotated[str, typer.Argument(help="resource code")],
    reason: Annotated[str, typer.Option(help="why it is withdrawn (kept in the audit log)")],
) -> None:
    """Withdraw a resource from use; it stays in the catalog, read-only, and can be restored."""
    _change(code, "retire", reason)


@resource_app.command("restore")
def restore(
    code: Annotated[str, typer.Argument(help="resource code")],
    reason: Annotated[str, typer.Option(help="why it comes back (kept in the audit log)")],
) -> None:
    """Bring a retired resource back: published again if it had been, else a draft."""
    _change(code, "restore", reason)
