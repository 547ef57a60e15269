"""What the domain commands share: one unit of work on the configured node, and a listing
printed as a table or as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from minyun.core.config import load_settings
from minyun.core.errors import DomainError
from minyun.core.platform import Platform
from minyun.core.uow import unit_of_work

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def open_node() -> Platform:
    """The configured node (no job runs here); a node that cannot open prints why and exits 2."""
    try:
        return Platform.open(load_settings(), run_jobs_here=False)
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


@contextmanager
def transaction(node: Platform | None = None) -> Iterator[Session]:
    """One unit of work on the node (the configured one if none); a refused change prints why
    and exits 1. A node opened here is closed here."""
    own = node is None
    node = node or open_node()
    try:
        with unit_of_work(node.factory) as session:
            yield session
    except DomainError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        if own:
            node.close()


def print_listing(
    found: Sequence[dict[str, Any]],
    as_json: bool,
    columns: Sequence[str],
    rows: Iterable[Sequence[str | None]],
    counted: str,
    *,
    key_width: int | None = None,
) -> None:
    """`found` as JSON, or `rows` as a table under `columns` (the first, the key, never
    wraps) followed by the count: "3 organisation(s)"."""
    if as_json:
        typer.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    table = Table()
    table.add_column(columns[0], no_wrap=True, min_width=key_width)
    for column in columns[1:]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"{len(found)} {counted}")
