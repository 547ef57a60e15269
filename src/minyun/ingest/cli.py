"""`minyun load`, `minyun versions`, `minyun rejects`: loads from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from minyun.catalog.cli import resource_app
from minyun.core import jobs
from minyun.core.config import load_settings
from minyun.core.errors import DomainError
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.ingest import service
from minyun.ingest.models import LoadMode
from minyun.jobs_cli import run_pending, run_with_progress

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
CLI = Principal.system(on_behalf_of="cli")


def _platform() -> Platform:
    try:
        return Platform.open(load_settings(), run_jobs_here=False)
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def load(
    code: Annotated[str, typer.Argument(help="resource code")],
    source: Annotated[str, typer.Argument(help="a file, an http(s) URL, or a database DSN")],
    table: Annotated[str | None, typer.Option(help="table to pull from a DSN")] = None,
    mode: Annotated[LoadMode, typer.Option(help="full, append, upsert or delete")] = LoadMode.FULL,
    encoding: Annotated[str | None, typer.Option(help="text encoding, e.g. gb18030")] = None,
    watermark: Annotated[
        str | None, typer.Option(help="load only rows whose COLUMN passed the last load's")
    ] = None,
) -> None:
    """Load a file, URL or database table into a resource as one new version."""
    node = _platform()
    try:
        with unit_of_work(node.factory) as session:
            job = service.submit_load(
                session, CLI, code, source, mode=mode, table=table, encoding=encoding,
                watermark=watermark, settings=node.settings,
            )  # fmt: skip
            job_id = job.id
        finished = run_with_progress(node, job_id, f"load {code}", console)
        if finished.state == jobs.JobState.SUCCEEDED:
            # The quality report and serving-index refresh the load queued run here too,
            # rather than waiting for a server to start.
            run_pending(node, console)
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        node.close()
    if finished.state != jobs.JobState.SUCCEEDED:
        err.print(f"[red]load failed:[/] {(finished.error or '').splitlines()[0]}")
        raise typer.Exit(1)
    result = finished.result or {}
    if result.get("state") == "noop":
        console.print(f"nothing to do: the same input as load {result.get('same_as')}")
        return
    console.print(
        f"[green]version {result.get('lake_version')}[/] of {code}: "
        f"{result.get('rows_accepted', 0):,} rows accepted, {result.get('rows_rejected', 0):,} rejected "
        f"of {result.get('rows_read', 0):,} read"
    )
    for note in result.get("notes") or []:
        console.print(f"[yellow]note:[/] {note}")


def versions(
    code: Annotated[str, typer.Argument(help="resource code")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The loads of a resource with their lineage, newest first."""
    node = _platform()
    try:
        with unit_of_work(node.factory) as session:
            found = service.versions_json(service.list_versions(session, CLI, code))
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        node.close()
    if as_json:
        typer.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    out = Table(title=f"versions of {code}")
    for column in (
        "load",
        "version",
        "state",
        "mode",
        "source",
        "read",
        "accepted",
        "rejected",
        "at",
    ):
        out.add_column(column)
    for v in found:
        out.add_row(
            str(v["id"]), "" if v["lake_version"] is None else str(v["lake_version"]), v["state"],
            v["mode"], v["source"], f"{v['rows_read']:,}", f"{v['rows_accepted']:,}",
            f"{v['rows_rejected']:,}", (v["committed_at"] or v["started_at"] or "")[:19],
        )  # fmt: skip
    console.print(out)


def rejects(
    code: Annotated[str, typer.Argument(help="resource code")],
    version: Annotated[
        int | None, typer.Option(help="the load (as `minyun versions` lists it); default newest")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    reason: Annotated[
        str | None, typer.Option(help="only this reason, e.g. required, duplicate primary key")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The rows a load refused, with their source row number, field and reason."""
    node = _platform()
    try:
        with unit_of_work(node.factory) as session:
            table = service.read_rejects(
                session, node.lake, CLI, code, version=version, limit=limit, reason=reason
            )
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        node.close()
    rows = service.rejects_json(table)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    out = Table(title=f"rejected rows of {code}")
    for column in ("load", "row", "field", "reason"):
        out.add_column(column)
    for r in rows:
        out.add_row(str(r["load_id"]), str(r["row_number"]), r["field"], r["reason"])
    console.print(out)


def infer(
    sample: Annotated[Path, typer.Argument(help="a sample file: CSV, XLSX, JSON lines, Parquet")],
    encoding: Annotated[
        str | None, typer.Option(help="text encoding of a CSV that is not UTF-8 (e.g. gb18030)")
    ] = None,
) -> None:
    """Print the Table Schema a sample file suggests (types, required, formats, key), to edit
    and give to `minyun resource create --schema`."""
    node = _platform()
    try:
        with unit_of_work(node.factory) as session, sample.open("rb") as stream:
            found = service.infer_sample(
                session, CLI, stream, filename=sample.name, encoding=encoding,
                settings=node.settings,
            )  # fmt: skip
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {sample}: {exc.strerror}") from None
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        node.close()
    typer.echo(json.dumps(found.descriptor, ensure_ascii=False, indent=2))


# `minyun resource infer`: a resource's first schema comes from here (the catalog, which
# keeps the `resource` commands, does not read files).
resource_app.command("infer")(infer)
