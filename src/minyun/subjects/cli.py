"""`minyun subjects`: run entity resolution and write the links file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import pyarrow.csv as pacsv
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from minyun.cli_support import open_node, transaction
from minyun.orgs.cli import CLI

subjects_app = typer.Typer(
    help="Subjects (一人一档 / 一企一档): entity resolution across departments.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)
_STEPS = {
    "read": "读取资源 read",
    "features": "特征 features",
    "link": "链接 link",
    "write": "写回 write",
}


@subjects_app.command("resolve")
def resolve(
    kind: Annotated[str, typer.Option(help="person or enterprise")] = "person",
    engine: Annotated[
        str | None,
        typer.Option(help="duckdb or spark (default: the node's MINYUN_SUBJECTS_ENGINE, duckdb)"),
    ] = None,
    full: Annotated[bool, typer.Option(help="link every row again, not only new ones")] = False,
    retrain: Annotated[bool, typer.Option(help="train the model again first")] = False,
) -> None:
    """Link every linking resource's rows to subjects with stable ids."""
    from minyun.subjects import service  # Splink and Spark load only when linking

    logging.getLogger("splink").setLevel(logging.WARNING)
    node = open_node()
    try:
        with (
            Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(), console=console, transient=False,
            ) as bar,
            transaction(node) as session,
        ):  # fmt: skip
            tasks: dict[str, TaskID] = {}

            def progress(step: str, done: int, total: int) -> None:
                if step not in tasks:
                    tasks[step] = bar.add_task(_STEPS.get(step, step), total=max(total, 1))
                bar.update(tasks[step], completed=done, total=max(total, 1))

            run = service.resolve(
                session, node.lake, CLI, kind=kind,
                engine=engine or node.settings.subjects_engine,  # type: ignore[arg-type]
                full=full, retrain=retrain, progress=progress,
            )  # fmt: skip
            stats = dict(run.stats)
            mode = run.mode
    finally:
        node.close()
    console.print(
        f"{mode} run: {stats.get('rows', 0)} rows from {stats.get('resources', 0)} resources, "
        f"{stats.get('subjects', 0)} subjects, {stats.get('links_written', 0)} links written, "
        f"{stats.get('merged', 0)} merged, {stats.get('split', 0)} split, "
        f"{stats.get('reviews', 0)} new pairs to review",
        highlight=False,
    )


@subjects_app.command("links")
def links(
    out: Annotated[Path, typer.Option(help="the CSV file to write")],
    kind: Annotated[str | None, typer.Option(help="person or enterprise (default: both)")] = None,
) -> None:
    """Write one line per linked source row: resource, row_key, subject_id."""
    from minyun.subjects import service

    with transaction() as session:
        table = service.links_table(session, CLI, kind=kind)
    # The header exactly `resource,row_key,subject_id` (Arrow quotes header names); values
    # quoted only where they need it.
    with out.open("wb") as f:
        f.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    console.print(f"{table.num_rows} links written to {out}", highlight=False)


@subjects_app.command("explain")
def explain(
    left: Annotated[str, typer.Argument(help="a linked row: resource|row_key")],
    right: Annotated[str, typer.Argument(help="another linked row: resource|row_key")],
) -> None:
    """Show each comparison's level and match weight for two rows."""
    from minyun.subjects import service

    node = open_node()
    try:
        with transaction(node) as session:
            parts = service.explain_pair(session, node.lake, CLI, left, right)
    finally:
        node.close()
    for part in parts:
        console.print(
            f"{part['comparison']:<12} {part['match_weight']:>8.3f}  {part['level']}",
            highlight=False,
        )
