"""`minyun user …` (roles, disable, enable, reset-password, unlock, list) and `minyun client …`.

Each command is one unit of work acting as the system on behalf of the command line; a
refused change prints why, exits 1 and writes nothing but, where one is due, its audit record.
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import Annotated, Any

import typer

from minyun.accounts import service
from minyun.accounts.models import ApiClient
from minyun.cli_support import console, err, open_node, print_listing, transaction
from minyun.core.security import Principal
from minyun.orgs import service as orgs

client_app = typer.Typer(help="API clients of organisations (OAuth2).", no_args_is_help=True)
CLI = Principal.system(on_behalf_of="cli")


# --- users ------------------------------------------------------------------------------


def user_list(
    q: Annotated[str | None, typer.Option("--name", help="username or name contains")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Accounts with their organisation, roles and state."""
    node = open_node()
    shared = not node.settings.rate_limit_uri.startswith("memory://")
    try:
        with transaction(node) as session:
            rows = service.list_users(session, CLI, q=q, throttle=node.throttle if shared else None)
            found: list[dict[str, Any]] = [
                {
                    "id": r.user.id,
                    "username": r.user.username,
                    "name": r.user.display_name,
                    "kind": r.user.kind,
                    "organization": r.organization.code if r.organization else None,
                    "roles": list(r.user.roles),
                    "active": r.user.active,
                    "locked": r.locked if shared else None,
                }
                for r in rows
            ]
    finally:
        node.close()
    cells = (
        (
            u["username"],
            u["name"],
            u["kind"],
            u["organization"] or "",
            ", ".join(u["roles"]),
            ("active" if u["active"] else "disabled") + (", locked" if u["locked"] else ""),
        )
        for u in found
    )
    columns = ("username", "name", "kind", "organisation", "roles", "state")
    print_listing(found, as_json, columns, cells, "account(s)")


def user_roles(
    username: Annotated[str, typer.Argument(help="the account")],
    role: Annotated[
        list[str] | None,
        typer.Option(help="admin, steward, approver, consumer, auditor, operator (repeat)"),
    ] = None,
    no_roles: Annotated[bool, typer.Option(help="take every role away")] = False,
) -> None:
    """Give a civil servant exactly these roles."""
    if not role and not no_roles:
        raise typer.BadParameter("give --role at least once, or --no-roles")
    with transaction() as session:
        user = service.get_user_by_username(session, username)
        service.set_roles(session, CLI, user.id, role or [])
        console.print(f"{user.username}: {', '.join(user.roles) or 'no roles'}")


def user_disable(username: Annotated[str, typer.Argument(help="the account")]) -> None:
    """Disable an account: it cannot sign in and its browser sessions end at once."""
    with transaction() as session:
        user = service.get_user_by_username(session, username)
        service.disable_user(session, CLI, user.id)
        console.print(f"{username} disabled")


def user_enable(username: Annotated[str, typer.Argument(help="the account")]) -> None:
    """Let a disabled account sign in again."""
    with transaction() as session:
        user = service.get_user_by_username(session, username)
        service.enable_user(session, CLI, user.id)
        console.print(f"{username} enabled")


def user_reset_password(
    username: Annotated[str, typer.Argument(help="the account")],
    password_stdin: Annotated[
        bool, typer.Option(help="read the new password from standard input")
    ] = False,
    prompt: Annotated[bool, typer.Option(help="type the new password at a prompt")] = False,
) -> None:
    """Give an account a new password (generated and printed once, unless given); its browser
    sessions end."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif prompt:
        password = getpass.getpass("new password: ")
    with transaction() as session:
        user = service.get_user_by_username(session, username)
        chosen = service.reset_password(session, CLI, user.id, password=password)
    if password is None:
        console.print(f"new password of {username} (shown once): [bold]{chosen}[/]")
    else:
        console.print(f"password of {username} changed")


def user_unlock(username: Annotated[str, typer.Argument(help="the account")]) -> None:
    """Let an account sign in again at once after too many failed attempts."""
    node = open_node()
    try:
        if node.settings.rate_limit_uri.startswith("memory://"):
            err.print(
                "[red]error:[/] the sign-in throttle is kept in the memory of the server process "
                "(MINYUN_RATE_LIMIT_URI=memory://), out of reach of this command: unlock the "
                "account on the administration page (/admin/users) or with "
                "POST /api/v1/users/{id}/unlock, or wait a minute"
            )
            raise typer.Exit(1)
        with transaction(node) as session:
            user = service.get_user_by_username(session, username)
            service.unlock_user(session, CLI, node.throttle, user.id)
    finally:
        node.close()
    console.print(f"{username} may sign in again")


def register_user_commands(user_app: typer.Typer) -> None:
    """Add the account administration commands to `minyun user`."""
    user_app.command("list")(user_list)
    user_app.command("roles")(user_roles)
    user_app.command("disable")(user_disable)
    user_app.command("enable")(user_enable)
    user_app.command("reset-password")(user_reset_password)
    user_app.command("unlock")(user_unlock)


# --- API clients ------------------------------------------------------------------------


def _client_json(client: ApiClient, org_code: str, secret: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "name": client.name,
        "organization": org_code,
        "scopes": list(client.scopes),
        "active": client.active,
    }
    if secret is not None:
        body["client_secret"] = secret
    return body


def _print_secret(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    console.print(f"client id:     [bold]{body['client_id']}[/]")
    console.print(f"client secret: [bold]{body['client_secret']}[/]")
    console.print(
        "The secret is shown this once and only its hash is kept: store it now. "
        f"Scopes: {' '.join(body['scopes'])}."
    )


@client_app.command("create")
def client_create(
    name: Annotated[str, typer.Argument(help="what the client is, e.g. 不动产登记系统")],
    org: Annotated[str, typer.Option(help="code of the organisation the client belongs to")],
    scope: Annotated[list[str], typer.Option(help="a scope it may ask for (repeat)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Register an API client; prints its id and secret once (only the secret's hash is kept)."""
    with transaction() as session:
        organization = orgs.get_organization(session, org)
        new = service.create_client(
            session, CLI, organization_id=organization.id, name=name, scopes=scope
        )
        body = _client_json(new.client, organization.code, new.secret)
    _print_secret(body, as_json)


@client_app.command("rotate")
def client_rotate(
    client_id: Annotated[str, typer.Argument(metavar="ID", help="the client id (mc_…)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Give a client a new secret, printed once; the old secret is refused from now on."""
    with transaction() as session:
        new = service.rotate_client(session, CLI, client_id)
        row = service.access_client(session, CLI, client_id)
        body = _client_json(new.client, row.organization.code, new.secret)
    _print_secret(body, as_json)


@client_app.command("revoke")
def client_revoke(
    client_id: Annotated[str, typer.Argument(metavar="ID", help="the client id (mc_…)")],
) -> None:
    """Revoke a client: its secret and every token it holds are refused at once."""
    with transaction() as session:
        service.revoke_client(session, CLI, client_id)
    console.print(f"client {client_id} revoked: its tokens are refused from now on")


@client_app.command("list")
def client_list(
    org: Annotated[str | None, typer.Option(help="only this organisation's clients")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """API clients with their organisation, scopes and state (never a secret)."""
    with transaction() as session:
        organization_id = orgs.get_organization(session, org).id if org else None
        rows = service.list_clients(session, CLI, organization_id=organization_id)
        found = [_client_json(r.client, r.organization.code) for r in rows]
        created = [f"{r.client.created_at:%Y-%m-%d %H:%M}" for r in rows]
    cells = (
        (
            body["client_id"],
            body["name"],
            body["organization"],
            " ".join(body["scopes"]),
            "active" if body["active"] else "revoked",
            when,
        )
        for body, when in zip(found, created, strict=True)
    )
    columns = ("client id", "name", "organisation", "scopes", "state", "created")
    print_listing(found, as_json, columns, cells, "client(s)", key_width=19)
