"""The `minyun` command: set up a node, load the demo province, serve, run jobs, verify audit."""

from __future__ import annotations

import getpass
import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

import minyun.handlers  # noqa: F401 - every job kind can run from the CLI
from minyun.accounts.cli import client_app, register_user_commands
from minyun.apps.ecocloud.cli import eco_app
from minyun.apps.grid.cli import grid_app
from minyun.catalog.cli import resource_app
from minyun.core import jobs
from minyun.core.config import Settings, load_settings
from minyun.core.errors import DomainError
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.exchange.batch_cli import exchange_app
from minyun.ingest import cli as ingest_cli
from minyun.jobs_cli import run_pending, run_with_progress
from minyun.licences.cli import licence_app
from minyun.nodes.cli import nodes_app
from minyun.orgs.cli import org_app
from minyun.push.cli import events_app
from minyun.subjects.cli import subjects_app

if TYPE_CHECKING:
    from minyun.demo.province import DemoAccount

WORKER_HEALTHCHECK_SECONDS = 60

app = typer.Typer(help="minyun 闽云 — provincial government data platform.", no_args_is_help=True)
user_app = typer.Typer(help="Accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
jobs_app = typer.Typer(help="Long operations.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
app.add_typer(jobs_app, name="jobs")
app.add_typer(eco_app, name="eco", help="Eco-cloud (生态云): air quality.")
app.add_typer(resource_app, name="resource")
app.add_typer(org_app, name="org")
app.add_typer(client_app, name="client")
app.add_typer(events_app, name="events")
app.add_typer(exchange_app, name="exchange")
app.add_typer(nodes_app, name="nodes")
app.add_typer(licence_app, name="licence")
app.add_typer(grid_app, name="grid", help="Grid governance (网格化治理): grids, Open311 keys.")
app.add_typer(subjects_app, name="subjects")

app.command("load")(ingest_cli.load)
app.command("versions")(ingest_cli.versions)
app.command("rejects")(ingest_cli.rejects)

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
CLI = Principal.system(on_behalf_of="cli")


def _settings() -> Settings:
    try:
        return load_settings()
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def _platform(*, run_jobs_here: bool = False) -> Platform:
    return Platform.open(_settings(), run_jobs_here=run_jobs_here)


def _fail(exc: DomainError) -> typer.Exit:
    err.print(f"[red]error:[/] {exc}")
    return typer.Exit(1)


@app.command()
def init() -> None:
    """Create or upgrade the control-plane database and the var folder."""
    node = _platform()
    node.migrate()
    from minyun.orgs import service as orgs

    with unit_of_work(node.factory) as session:
        added = orgs.load_divisions(session, orgs.packaged_divisions())
    console.print(
        f"minyun node [bold]{node.settings.node_name}[/] ready: database {_safe_url(node.settings.database_url)}, "
        f"lake {node.settings.lake_uri}, {added} divisions added"
    )
    node.close()


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@app.command()
def demo(
    persons: Annotated[int, typer.Option(min=0, help="synthetic persons to generate")] = 100_000,
    enterprises: Annotated[int, typer.Option(min=0, help="synthetic enterprises")] = 20_000,
    seed: Annotated[int, typer.Option(help="the same seed builds the same province")] = 2026,
) -> None:
    """Load the synthetic demo province (idempotent; resumes an interrupted load)."""
    import minyun.demo.province as province

    node = _platform()
    node.migrate()
    params = {
        "persons": persons,
        "enterprises": enterprises,
        "seed": seed,
        "var_dir": str(node.settings.var_dir),
        "lake_uri": node.settings.lake_uri,
        "open_big_rows": 1_000_000,  # the demo's one open dataset with a million rows
    }
    key = f"demo.load:{seed}:{persons}:{enterprises}"
    with unit_of_work(node.factory) as session:
        job = jobs.submit(session, CLI, "demo.load", params, key=key)
        job_id = job.id
    job = run_with_progress(node, job_id, "demo province", console)
    if job.state != jobs.JobState.SUCCEEDED:
        err.print(f"[red]demo load failed:[/] {job.error}")
        node.close()
        raise typer.Exit(1)
    run_pending(node, console)  # the quality reports and index refreshes its loads queued
    _print_accounts(province.read_accounts(node.settings.var_dir), node.settings.base_url)
    node.close()


def _print_accounts(accounts: list[DemoAccount], base_url: str) -> None:
    table = Table(title=f"demo accounts — sign in at {base_url}/login")
    for column in ("username", "password", "name", "roles", "organisation"):
        table.add_column(column)
    for a in accounts:
        table.add_row(
            a.username,
            a.password,
            a.display_name,
            ", ".join(a.roles),
            a.organization or "—",
        )
    console.print(table)


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Serve the web app and the API (several worker processes with --workers)."""
    import uvicorn

    _settings()
    if workers > 1:
        # Each worker imports the whole app before it answers the supervisor's health
        # check; on a busy machine that takes longer than uvicorn's 5 s, and a worker
        # killed for it is restarted only to be killed again.
        uvicorn.run(
            "minyun.web.asgi:app",
            host=host,
            port=port,
            workers=workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )
    else:
        from minyun.web.app import create_app

        uvicorn.run(create_app(), host=host, port=port)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1)] = 2,
    until_idle: Annotated[bool, typer.Option(help="stop when the queue is empty")] = False,
) -> None:
    """Run queued jobs (jobs mode 'worker', PostgreSQL)."""
    from minyun.core.worker import run_worker

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    node = _platform()
    try:
        run_worker(node, concurrency=concurrency, until_idle=until_idle)
    except DomainError as exc:
        raise _fail(exc) from exc
    finally:
        node.close()


@user_app.command("create")
def user_create(
    username: str,
    org: Annotated[str | None, typer.Option(help="organisation code (civil servants)")] = None,
    role: Annotated[
        list[str] | None, typer.Option(help="admin, steward, approver, consumer, auditor, operator")
    ] = None,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="read the password from standard input")
    ] = False,
) -> None:
    """Create a civil servant's account."""
    from minyun.accounts import service as accounts
    from minyun.orgs import service as orgs

    password = (
        sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("password: ")
    )
    node = _platform()
    try:
        with unit_of_work(node.factory) as session:
            organization = orgs.get_organization(session, org) if org else None
            user = accounts.create_user(
                session,
                CLI,
                username=username,
                password=password,
                display_name=name or username,
                organization_id=organization.id if organization else None,
                roles=role or [],
            )
            console.print(f"created {user.username} ({', '.join(user.roles) or 'no roles'})")
    except DomainError as exc:
        raise _fail(exc) from exc
    finally:
        node.close()


register_user_commands(user_app)


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the audit chain and the heads file; exit 1 and name the first problem found.

    Problems: an altered, removed, inserted or reordered record, records that differ from a
    head signed outside the database (rewritten), or a tail cut after a signed head.
    """
    from minyun.core import audit

    node = _platform()
    with node.factory() as session:
        report = audit.verify(session, node.node_key)
    node.close()
    if report.ok:
        console.print(
            f"[green]audit chain intact[/]: {report.records} records, "
            f"{report.checkpoints} signed checkpoints, {report.heads} heads in the heads file"
        )
        return
    finding = report.first_problem
    if finding is None:  # not ok always names a problem
        raise RuntimeError("the audit report is not ok but names no problem")
    err.print(
        f"[red]audit chain broken[/] at record {finding.seq}: {finding.problem} — {finding.detail}"
    )
    raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(limit: Annotated[int, typer.Option(min=1, max=500)] = 20) -> None:
    """The newest jobs with their state and progress."""
    node = _platform()
    try:
        # Jobs whose runner died (a killed load, say) are taken back now, not at a restart.
        jobs.reap(node.factory, node.dispatcher)
        node.dispatcher.take_pending()  # listed below as queued; `minyun jobs run` runs them
        with node.factory() as session:
            found = jobs.list_jobs(session, limit=limit)
            queued = len(jobs.list_jobs(session, limit=10_000, state=jobs.JobState.QUEUED))
    finally:
        node.close()
    table = Table()
    for column in ("id", "kind", "state", "progress", "message", "created"):
        table.add_column(column)
    for job in found:
        progress = f"{job.percent:.0f}%" if job.percent is not None else str(job.done)
        table.add_row(
            job.id[:12],
            job.kind,
            job.state,
            progress,
            (job.error if job.state in (jobs.JobState.FAILED, jobs.JobState.CANCELLED) else None)
            or job.message
            or "",
            f"{job.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)
    if queued:
        runner = (
            "the worker (minyun worker) runs them"
            if node.dispatcher.mode == "worker"
            else "the server (minyun serve) runs them when it starts, or run them here with "
            "`minyun jobs run`"
        )
        console.print(f"{queued} queued: {runner}")


@jobs_app.command("run")
def jobs_run(
    job_id: Annotated[
        str | None, typer.Argument(help="one job (id or its first characters)")
    ] = None,
) -> None:
    """Run queued jobs here, in the foreground (and take back those whose runner died)."""
    node = _platform()
    try:
        if job_id is None:
            jobs.recover(node.factory, node.dispatcher)
        else:
            with node.factory() as session:
                job = jobs.find_job(session, job_id)
            finished = run_with_progress(node, job.id, job.kind, console)
            if finished.state != jobs.JobState.SUCCEEDED:
                err.print(f"[red]{finished.kind} {finished.state}:[/] {finished.error or ''}")
                raise typer.Exit(1)
        ran = run_pending(node, console)
    except DomainError as exc:
        raise _fail(exc) from exc
    finally:
        node.close()
    if job_id is None:
        console.print(f"ran {len(ran)} queued job(s)" if ran else "no queued jobs")


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="the job (id or its first characters)")],
) -> None:
    """Cancel a job: a queued one never runs, a running one stops at its next progress report."""
    from minyun.admin import service as admin

    node = _platform()
    try:
        with unit_of_work(node.factory) as session:
            job = admin.cancel_job(session, CLI, job_id)
            state, found = job.state, job.id
    except DomainError as exc:
        raise _fail(exc) from exc
    finally:
        node.close()
    if state == jobs.JobState.CANCELLED:
        console.print(f"job {found} cancelled")
    else:
        console.print(f"job {found} asked to stop: it stops at its next progress report")


def main() -> None:
    app()
