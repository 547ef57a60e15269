"""`minyun eco`: eco-cloud (生态云) commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import Progress

from minyun.apps.ecocloud.cnemc import (
    cnemc_files,
    compare,
    read_cnemc_csv,
    recompute_aqi,
    write_cnemc_csv,
)
from minyun.core.errors import Invalid

eco_app = typer.Typer(
    help="生态云 eco-cloud: air quality, AQI per HJ 633-2012.", no_args_is_help=True
)


@eco_app.callback()
def eco() -> None:
    """Eco-cloud (生态云) commands."""


def _inputs(path: Path) -> list[Path]:
    """The input files, or a usage error naming the problem."""
    try:
        return cnemc_files(path)
    except (FileNotFoundError, Invalid) as exc:
        raise typer.BadParameter(str(exc), param_hint="INPUT") from None


@eco_app.command("aqi")
def aqi_command(
    source: Annotated[
        Path,
        typer.Argument(metavar="INPUT", help="A CNEMC hourly CSV file or a directory of them."),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="CSV file for all rows, or an existing directory for one file per input.",
        ),
    ],
) -> None:
    """Recompute `aqi` and `primarypollutant` of CNEMC station files (HJ 633 real-time AQI)."""
    files = _inputs(source)
    per_file = output.is_dir()
    stderr = Console(stderr=True)
    officials: list[pa.Table] = []
    results: list[pa.Table] = []
    with Progress(console=stderr, transient=True, disable=len(files) < 2) as progress:
        task = progress.add_task("AQI", total=len(files))
        for path in files:
            try:
                official = read_cnemc_csv(path)
            except Invalid as exc:
                raise typer.BadParameter(str(exc), param_hint="INPUT") from None
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                raise typer.BadParameter(f"{path.name}: unreadable CSV: {exc}") from None
            try:
                result = recompute_aqi(official)
            except ValueError as exc:
                raise typer.BadParameter(f"{path.name}: {exc}", param_hint="INPUT") from None
            if per_file:
                write_cnemc_csv(result, output / path.name)
            officials.append(official)
            results.append(result)
            progress.advance(task)
    official_rows = pa.concat_tables(officials, promote_options="default")
    result_rows = pa.concat_tables(results, promote_options="default")
    if not per_file:
        write_cnemc_csv(result_rows, output)
    agreement = compare(official_rows, result_rows)
    typer.echo(
        f"{agreement.rows} rows from {len(files)} file(s) written to {output}; "
        f"the input's aqi agrees on {agreement.aqi} rows, "
        f"primarypollutant on {agreement.primary_pollutant}."
    )
