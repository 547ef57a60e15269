"""Running jobs in the foreground of a command, with a progress bar each."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from minyun.core import jobs
from minyun.core.platform import Platform

Report = Callable[[int, int | None, str | None], None]


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def run_with_progress(node: Platform, job_id: str, label: str, console: Console) -> jobs.Job:
    """Run one job here to its end, drawing its progress."""
    with _bar(console) as progress:
        task = progress.add_task(label, total=None, message="")

        def update(done: int, total: int | None, message: str | None) -> None:
            progress.update(task, completed=done, total=total, message=message or "")

        job = jobs.run(node.factory, job_id, on_progress=update)
        if job.state == jobs.JobState.SUCCEEDED and job.total:
            progress.update(task, completed=job.total)
    return job


def run_pending(node: Platform, console: Console) -> list[jobs.Job]:
    """Run here the jobs this command queued for its node (quality reports, serving-index
    refreshes...), which no server would otherwise run before one starts."""
    if node.dispatcher.mode != "foreground":
        return []  # a worker, or this process's threads, run them
    with _bar(console) as progress:

        def start(job: jobs.Job) -> Report:
            task = progress.add_task(job.kind, total=None, message="")

            def update(done: int, total: int | None, message: str | None) -> None:
                progress.update(task, completed=done, total=total, message=message or "")

            return update

        finished = jobs.run_pending(node.factory, node.dispatcher, on_start=start)
    for job in finished:
        if job.state != jobs.JobState.SUCCEEDED:
            console.print(f"[yellow]{job.kind} job {job.id[:12]} {job.state}:[/] {job.error or ''}")
    return finished
