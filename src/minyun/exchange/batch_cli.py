"""`minyun exchange`: batch subscriptions (批量交换) of a department, and their deliveries."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from minyun.cli_support import open_node, print_listing, transaction
from minyun.core import jobs
from minyun.core.platform import Platform
from minyun.exchange import batch
from minyun.exchange.batch_models import BatchDelivery
from minyun.exchange.sinks import SinkSpec
from minyun.jobs_cli import run_with_progress
from minyun.orgs.cli import CLI
from minyun.orgs.service import get_organization

exchange_app = typer.Typer(
    help="Batch exchange (批量交换): subscriptions and deliveries.", no_args_is_help=True
)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@exchange_app.command("subscribe")
def subscribe(
    org: Annotated[str, typer.Argument(help="the consumer organisation's code")],
    resource: Annotated[str, typer.Argument(help="the resource's code (a live grant needed)")],
    purpose: Annotated[str, typer.Option(help="why the department needs it (audited)")],
    sink: Annotated[str, typer.Option(help="file, folder, postgresql or mariadb")] = "file",
    mode: Annotated[str, typer.Option(help="full or incremental")] = "incremental",
    format: Annotated[str | None, typer.Option(help="parquet, csv or xlsx (files)")] = None,
    folder: Annotated[str | None, typer.Option(help="the folder (folder sink)")] = None,
    dsn: Annotated[str | None, typer.Option(help="the database (database sinks)")] = None,
    table: Annotated[str | None, typer.Option(help="the table (database sinks)")] = None,
    every: Annotated[int | None, typer.Option(help="deliver every N minutes")] = None,
) -> None:
    """Subscribe a department to a resource it holds a live grant on."""
    node = open_node()
    try:
        with transaction(node) as session:
            found = get_organization(session, org)
            made = batch.subscribe(
                session, CLI, resource=resource, mode=mode, purpose=purpose, every_minutes=every,
                sink=SinkSpec(sink, format, folder, dsn, table), node_key=node.node_key,
                folders=batch.folder_roots(node.settings.var_dir, node.settings.exchange_folders),
                owner=batch.department_reader(found.id, found.code),
            )  # fmt: skip
            console.print(f"subscription {made.id}: {resource} → {made.sink_kind} ({mode})")
    finally:
        node.close()


@exchange_app.command("subscriptions")
def subscriptions(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every subscription, where its delivery stands."""
    with transaction() as session:
        found = batch.list_subscriptions(session, CLI)
        rows = [
            {"id": s.id, "consumer": s.consumer.code, "resource": s.resource.code, "mode": s.mode,
             "sink": s.sink_kind, "format": s.sink_format, "target": s.sink_target,
             "table": s.sink_table, "every_minutes": s.every_minutes, "active": s.active,
             "delivered_version": s.delivered_version}
            for s in found
        ]  # fmt: skip
        table = [
            [str(r["id"]), str(r["consumer"]), str(r["resource"]), str(r["mode"]),
             f"{r['sink']} {r['format'] or r['table'] or ''}".strip(),
             "—" if r["delivered_version"] is None else f"v{r['delivered_version']}",
             "yes" if r["active"] else "stopped"]
            for r in rows
        ]  # fmt: skip
        columns = ["id", "consumer", "resource", "mode", "sink", "delivered", "active"]
        print_listing(rows, as_json, columns, table, "subscription(s)")


def _run(node: Platform, delivery: BatchDelivery) -> bool:
    job = run_with_progress(node, str(delivery.job_id), f"delivery {delivery.id}", console)
    if job.state != jobs.JobState.SUCCEEDED:
        err.print(f"[red]delivery {delivery.id} {job.state}:[/] {job.error or ''}")
        return False
    result = job.result or {}
    console.print(
        f"delivery {delivery.id}: {result.get('kind')} ({result.get('from_version')}, "
        f"{result.get('to_version')}], {result.get('rows')} rows, sha256 {result.get('checksum')}"
    )
    return True


@exchange_app.command("deliver")
def deliver(
    subscription: Annotated[int | None, typer.Argument(help="the subscription's id")] = None,
    due: Annotated[bool, typer.Option(help="every subscription whose time has come")] = False,
    follow: Annotated[bool, typer.Option(help="with --due: keep looking (a scheduler)")] = False,
    every: Annotated[float, typer.Option(min=1.0, help="seconds between looks")] = 60.0,
) -> None:
    """Deliver now what is not yet delivered, with progress (exit 1 if a delivery failed).

    `--due --follow` is the node's batch scheduler: run it as a service (or `--due` from cron).
    """
    if (subscription is None) == (not due) or (follow and not due):
        err.print("[red]error:[/] give a subscription id, or --due (and --follow)")
        raise typer.Exit(2)
    node = open_node()
    try:
        while True:
            ok = _deliver_once(node, subscription, due=due)
            if not follow:
                if not ok:
                    raise typer.Exit(1)
                return
            time.sleep(every)
    finally:
        node.close()


def _deliver_once(node: Platform, subscription: int | None, *, due: bool) -> bool:
    with transaction(node) as session:
        uri, var = node.lake.uri, node.settings.var_dir
        if due:
            queued = batch.deliver_due(session, CLI, lake_uri=uri, var_dir=var)
        else:
            made = batch.request_delivery(
                session, CLI, int(subscription or 0), lake_uri=uri, var_dir=var
            )
            queued = [made] if made is not None else []
        for d in queued:
            session.expunge(d)
    if not queued:
        console.print("nothing new to deliver")
    return all([_run(node, d) for d in queued])


@exchange_app.command("stop")
def stop(subscription: Annotated[int, typer.Argument(help="the subscription's id")]) -> None:
    """No more deliveries for the subscription."""
    with transaction() as session:
        batch.stop_subscription(session, CLI, subscription)
        console.print(f"subscription {subscription} stopped")


@exchange_app.command("manifest")
def manifest(
    subscription: Annotated[int, typer.Argument()],
    delivery: Annotated[int, typer.Argument()],
    out: Annotated[Path | None, typer.Option(help="write it to this file")] = None,
) -> None:
    """A delivery's signed manifest (verified with this node's key before it is shown)."""
    node = open_node()
    try:
        with transaction(node) as session:
            found = batch.access_delivery(session, CLI, subscription, delivery)
            if found.manifest is None or found.signature is None:
                err.print(f"[red]error:[/] delivery {delivery} has no manifest yet")
                raise typer.Exit(1)
            signed = {"manifest": found.manifest, "kid": node.node_key.kid,
                      "signature": found.signature}  # fmt: skip
        if not batch.verify_manifest(signed, node.node_key):
            err.print("[red]error:[/] the manifest's signature does not verify")
            raise typer.Exit(1)
        text = json.dumps(signed, ensure_ascii=False, indent=2)
        if out is not None:
            out.write_text(text + "\n", encoding="utf-8")
        else:
            typer.echo(text)
    finally:
        node.close()
