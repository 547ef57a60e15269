"""`minyun licence`: a holder's licences, one licence's credential, issuance, verification."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from minyun.cli_support import open_node, transaction
from minyun.core.errors import DomainError
from minyun.licences import service
from minyun.orgs.cli import CLI

licence_app = typer.Typer(help="E-licences (电子证照).", no_args_is_help=True)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@licence_app.command("list")
def list_licences(
    holder: Annotated[str, typer.Option(help="identity number or credit code")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A holder's licences, current first."""
    with transaction() as session:
        found = service.find_licences(session, CLI, holder)
        rows = [
            {"id": lic.id, "type": lic.type.code, "name": lic.type.name, "number": lic.number,
             "status": service.state_of(lic), "issuer": lic.type.issuer.code,
             "valid_until": lic.valid_until.isoformat() if lic.valid_until else None}
            for lic in found
        ]  # fmt: skip
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        console.print(f"{r['id']}  {r['name']}  {r['number']}  {r['status']}  {r['issuer']}",
                      highlight=False, crop=False, overflow="ignore")  # fmt: skip
    console.print(f"{len(rows)} licence(s)")


@licence_app.command("show")
def show(
    licence_id: Annotated[str, typer.Argument()],
    credential: Annotated[bool, typer.Option("--credential", help="print the vc+jwt only")] = False,
) -> None:
    """One licence, or (--credential) its compact vc+jwt credential."""
    with transaction() as session:
        found = service.access_licence(session, CLI, licence_id)
        if credential:
            sys.stdout.write(found.credential + "\n")
            return
        console.print_json(json.dumps({
            "id": found.id, "type": found.type.code, "name": found.type.name,
            "number": found.number, "holder": found.holder_id, "status": service.state_of(found),
            "valid_from": found.valid_from.isoformat(),
            "valid_until": found.valid_until.isoformat() if found.valid_until else None,
            "data": found.data,
        }, ensure_ascii=False))  # fmt: skip


@licence_app.command("issue")
def issue(type_code: Annotated[str, typer.Argument(help="the licence type's code")]) -> None:
    """Bring a type's licences in step with its source resource now (in this process)."""
    node = open_node()
    try:
        tally = service.issue(node.factory, node.lake, type_code)
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        node.close()
    console.print(json.dumps(tally.as_dict()))


@licence_app.command("verify")
def verify(
    credential: Annotated[str, typer.Argument(help="a vc+jwt, or - to read it from stdin")],
) -> None:
    """Verify a credential: exit 0 when valid, 1 otherwise, with the outcome and reason."""
    text = sys.stdin.read() if credential == "-" else credential
    with transaction() as session:
        result = service.verify(session, CLI, text)
    console.print(f"{result.outcome}: {result.reason}", highlight=False)
    if result.outcome != "valid":
        raise typer.Exit(1)


@licence_app.command("rotate-key")
def rotate_key(
    org: Annotated[str, typer.Argument(help="the issuing organisation's code")],
    algorithm: Annotated[
        str | None,
        typer.Option(help="Ed25519, or SM2 (GB/T 32918); by default the kind the issuer has"),
    ] = None,
) -> None:
    """Give an issuer a new signing key (its first, if it has none); licences signed with the
    old one keep verifying."""
    with transaction() as session:
        made = service.rotate_key(session, CLI, org, algorithm=algorithm)
        kid, kind = made.kid, service.algorithm_of(made)
    console.print(f"{org}: now signing with {kid} ({kind})", highlight=False)


@licence_app.command("keys")
def keys(org: Annotated[str, typer.Argument(help="the issuing organisation's code")]) -> None:
    """An issuer's keys, oldest first: id, algorithm, state and dates."""
    with transaction() as session:
        rows = [
            (k.kid, service.algorithm_of(k), k.status, k.created_at, k.rotated_at, k.retired_at)
            for k in service.issuer_keys(session, CLI, org)
        ]
    for kid, kind, status, made, rotated, retired in rows:
        ended = retired or rotated
        console.print(f"{kid}  {kind}  {status}  {made:%Y-%m-%d %H:%M}"
                      + (f" – {ended:%Y-%m-%d %H:%M}" if ended else ""), highlight=False)  # fmt: skip
    console.print(f"{len(rows)} key(s)")


@licence_app.command("retire-key")
def retire_key(
    org: Annotated[str, typer.Argument(help="the issuing organisation's code")],
    kid: Annotated[str, typer.Argument(help="the key's id, e.g. key-1")],
    reason: Annotated[str, typer.Option(help="why (a compromised key)")],
) -> None:
    """Withdraw a key: every licence it signed is refused from now on."""
    with transaction() as session:
        service.retire_key(session, CLI, org, kid, reason=reason)
        console.print(f"{org}: {kid} retired", highlight=False)
