"""`minyun nodes`: the node registry (add, list, revoke), this node's identity, publish."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console

from minyun.cli_support import err, open_node, print_listing, transaction
from minyun.core.errors import DomainError
from minyun.core.uow import unit_of_work
from minyun.nodes import service
from minyun.orgs.cli import CLI

nodes_app = typer.Typer(help="Nodes (省市互联): the city and province instances.",
                        no_args_is_help=True)  # fmt: skip
console = Console(soft_wrap=True)


@nodes_app.command("self")
def whoami(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """This node's id, base URL and public key: what the other node's `nodes add` needs."""
    node = open_node()
    try:
        me = service.identity(node.settings.node_name, node.settings.base_url, node.node_key)
    finally:
        node.close()
    if as_json:
        console.print_json(json.dumps(me.__dict__))
    else:
        console.print(f"{me.node_id} {me.base_url} {me.public_key}", highlight=False)


@nodes_app.command("add")
def add(
    node_id: Annotated[str, typer.Argument(help="the other node's id (its MINYUN_NODE_NAME)")],
    base_url: Annotated[str, typer.Argument(help="its base URL (its MINYUN_BASE_URL)")],
    public_key: Annotated[str, typer.Argument(help="its Ed25519 public key (`nodes self`)")],
    name: Annotated[str, typer.Option(help="its name, e.g. 福州市节点")],
    division: Annotated[str, typer.Option(help="its division code, e.g. 350100")],
    relation: Annotated[str, typer.Option(help="parent (the province) or child (a city)")],
) -> None:
    """Trust another node: its signed requests are accepted from now on."""
    with transaction() as session:
        found = service.add_node(session, CLI, node_id=node_id, name=name,
                                 division_code=division, public_key=public_key,
                                 base_url=base_url, relation=relation)  # fmt: skip
        console.print(f"node {found.node_id} added ({found.relation}, {found.base_url})")


@nodes_app.command("list")
def list_nodes(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The nodes this node trusts, and those it no longer trusts."""
    with transaction() as session:
        found = service.list_nodes(session, CLI)
        data = [{"node_id": n.node_id, "name": n.name, "division_code": n.division_code,
                 "relation": n.relation, "base_url": n.base_url, "status": n.status,
                 "public_key": n.public_key} for n in found]  # fmt: skip
    print_listing(
        data, as_json, ["node", "name", "division", "relation", "base URL", "status"],
        ([d["node_id"], d["name"], d["division_code"], d["relation"], d["base_url"],
          d["status"]] for d in data),
        "nodes",
    )  # fmt: skip


@nodes_app.command("revoke")
def revoke(
    node_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option(help="why (kept in the audit record)")],
) -> None:
    """Stop trusting a node now: its next request is refused."""
    with transaction() as session:
        service.revoke_node(session, CLI, node_id, reason=reason)
        console.print(f"node {node_id} revoked")


@nodes_app.command("publish")
def publish(
    every: Annotated[
        float, typer.Option(min=0, help="keep publishing every N seconds (0: once)")
    ] = 0,
) -> None:
    """Send this node's shared catalog to its parent node (the province)."""
    node = open_node()
    link = service.Link(node.settings.node_name, node.node_key)
    try:
        while True:
            try:
                with unit_of_work(node.factory) as session:
                    sent = service.publish_catalog(session, CLI, link)
            except DomainError as exc:
                err.print(f"[red]error:[/] {exc}")
                if not every:
                    raise typer.Exit(1) from exc
                sent = {}
            for target, count in sent.items():
                console.print(f"published {count} resources to {target}")
            if not sent and not every:
                console.print("no parent node to publish to")
            if not every:
                return
            time.sleep(every)
    finally:
        node.close()
