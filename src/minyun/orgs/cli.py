"""`minyun org`: register and edit departments and units from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from minyun.cli_support import console, print_listing, transaction
from minyun.core.security import Principal
from minyun.orgs import service
from minyun.orgs.models import Organization

org_app = typer.Typer(
    help="Organisations: departments and units (部门/单位).", no_args_is_help=True
)
CLI = Principal.system(on_behalf_of="cli")


def _describe(org: Organization) -> str:
    kind = "unit" if org.kind == "unit" else "department"
    return f"{org.code} {org.name} ({kind}, {org.division.name} {org.division_code})"


@org_app.command("create")
def create(
    code: Annotated[str, typer.Argument(help="organisation code: 2–32 of a-z 0-9 -")],
    name: Annotated[str, typer.Option(help="full name, e.g. 福州市数据管理局")],
    division: Annotated[str, typer.Option(help="GB/T 2260 division code, e.g. 350100")],
    uscc: Annotated[str, typer.Option(help="unified social credit code (18 characters)")],
    parent: Annotated[
        str | None, typer.Option(help="code of the department this unit belongs to")
    ] = None,
) -> None:
    """Register a department (or, with --parent, a unit); nothing is written on bad input."""
    with transaction() as session:
        org = service.create_organization(
            session, CLI, code=code, name=name, uscc=uscc, division_code=division, parent=parent
        )
        console.print(f"created {_describe(org)}")


@org_app.command("edit")
def edit(
    code: Annotated[str, typer.Argument(help="organisation code (never changes)")],
    name: Annotated[str | None, typer.Option(help="new name")] = None,
    division: Annotated[str | None, typer.Option(help="new division code")] = None,
    uscc: Annotated[str | None, typer.Option(help="new unified social credit code")] = None,
    parent: Annotated[str | None, typer.Option(help="new parent department's code")] = None,
    no_parent: Annotated[bool, typer.Option(help="make it a top-level department")] = False,
) -> None:
    """Change an organisation's name, division, credit code or parent (audited)."""
    if parent is not None and no_parent:
        raise typer.BadParameter("give --parent or --no-parent, not both")
    with transaction() as session:
        org = service.update_organization(
            session,
            CLI,
            code,
            name=name,
            uscc=uscc,
            division_code=division,
            parent=parent,
            clear_parent=no_parent,
        )
        console.print(f"saved {_describe(org)}")


@org_app.command("list")
def list_(
    division: Annotated[
        str | None, typer.Option(help="only under this division (and its counties)")
    ] = None,
    q: Annotated[str | None, typer.Option("--name", help="name contains")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Organisations by division and code."""
    with transaction() as session:
        found = service.list_organizations(session, CLI, division_code=division, q=q)
        parents = service.organization_codes(session, {o.parent_id for o in found})
        rows = [
            {
                "code": o.code,
                "name": o.name,
                "kind": str(o.kind),
                "division_code": o.division_code,
                "division": o.division.name,
                "uscc": o.uscc,
                "parent": parents.get(o.parent_id) if o.parent_id else None,
            }
            for o in found
        ]
    cells = (
        (
            row["code"],
            row["name"],
            row["kind"],
            f"{row['division']} {row['division_code']}",
            row["uscc"],
            row["parent"] or "",
        )
        for row in rows
    )
    columns = ("code", "name", "kind", "division", "credit code", "parent")
    print_listing(rows, as_json, columns, cells, "organisation(s)")
