"""`minyun eco`: eco-cloud (生态云) commands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import Progress

from minyun.apps.ecocloud import detect, ingest, lake, mqtt
from minyun.apps.ecocloud.cnemc import (
    cnemc_files,
    compare,
    read_cnemc,
    read_cnemc_csv,
    recompute_aqi,
    write_cnemc_csv,
)
from minyun.core.config import load_settings
from minyun.core.errors import Invalid
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.jobs_cli import run_pending

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


def _open_platform(*, run_jobs_here: bool = False) -> Platform:
    return Platform.open(load_settings(), run_jobs_here=run_jobs_here)


def _publish(node: Platform) -> None:
    """Publish what changed into the lake resources, unless their department is not on file."""
    with node.factory() as session:
        missing = lake.provider_missing(session)
    if missing:
        typer.echo(f"lake: not published ({missing})")
        return
    job = lake.publish_now(
        node.factory, Principal.system(on_behalf_of="cli"), settings=node.settings
    )
    typer.echo(lake.describe(job))
    if job.state != "succeeded":
        raise typer.Exit(1)
    run_pending(node, Console())  # the quality reports and index refreshes its loads queued


@eco_app.command("ingest")
def ingest_command(
    source: Annotated[
        Path, typer.Argument(metavar="INPUT", help="A CNEMC hourly CSV file or a directory.")
    ],
    publish: Annotated[
        bool, typer.Option(help="Then publish what changed into the lake resources.")
    ] = True,
) -> None:
    """Load CNEMC station files into the eco-cloud in bulk (idempotent; runs detection)."""
    files = _inputs(source)
    rows = ingest.rows_from_cnemc(read_cnemc(files))
    node = _open_platform()
    try:
        with unit_of_work(node.factory) as session:
            report = ingest.ingest_readings(
                session,
                Principal.system(on_behalf_of="cli"),
                rows,
                rules=detect.Rules.from_env(),
            )
        typer.echo(
            f"{report.received} readings from {len(files)} file(s): {report.inserted} new, "
            f"{report.updated} corrected, {report.unchanged} unchanged, {report.refused} refused "
            f"(dead letters); {report.stations_added} stations added, "
            f"{report.anomalies} anomalies, {len(report.alerts_opened)} alerts opened."
        )
        if publish:
            _publish(node)
    except Invalid as exc:
        raise typer.BadParameter(str(exc)) from None
    finally:
        node.close()


@eco_app.command("publish")
def publish_command() -> None:
    """Upsert the readings, city hours and alert steps changed since the last publish into the
    lake resources of fj-eco (eco-station-aqi-hourly, eco-city-aqi-hourly, eco-alert-steps)."""
    node = _open_platform()
    try:
        with node.factory() as session:
            missing = lake.provider_missing(session)
        if missing:
            raise typer.BadParameter(missing)
        _publish(node)
    finally:
        node.close()


@eco_app.command("replay")
def replay_command(
    source: Annotated[Path, typer.Argument(metavar="DIR", help="A directory of CNEMC files.")],
    speed: Annotated[
        float,
        typer.Option(min=0, help="N times real time: 3600 plays an hour a second; 0 no pause."),
    ] = 3600.0,
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    prefix: Annotated[
        str, typer.Option("--topic-prefix", help="Topics are PREFIX/<station>/readings.")
    ] = mqtt.TOPIC_PREFIX,
) -> None:
    """Publish the files' hourly readings to MQTT, one station topic each, hour by hour."""
    _inputs(source)
    sent = mqtt.replay(
        source,
        host=host,
        port=port,
        speed=speed,
        prefix=prefix,
        on_hour=lambda hour, n: typer.echo(f"{hour}: {n} readings published"),
    )
    typer.echo(f"{sent} readings published to {prefix}/…")


@eco_app.command("listen")
def listen_command(
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    prefix: Annotated[
        str, typer.Option("--topic-prefix", help="Topics are PREFIX/<station>/readings.")
    ] = mqtt.TOPIC_PREFIX,
    publish_every: Annotated[
        float,
        typer.Option(
            min=0,
            help="Publish to the lake at most this often (seconds; one job per minute); 0 never.",
        ),
    ] = 60.0,
) -> None:
    """Subscribe to every station's readings and ingest them until interrupted (Ctrl-C)."""
    node = _open_platform(run_jobs_here=True)  # the publish jobs run in this process
    subscriber = mqtt.Subscriber(
        node.factory,
        host=host,
        port=port,
        rules=detect.Rules.from_env(),
        prefix=prefix,
        publish_every=publish_every or None,
        settings=node.settings,
    )
    subscriber.start()
    typer.echo(f"listening on {host}:{port} {prefix}/+/readings")
    try:
        while True:
            time.sleep(5)
            s = subscriber.stats
            typer.echo(
                f"{s.messages} messages, {s.readings} readings, {s.refused} refused, "
                f"{len(s.alerts_opened)} alerts opened"
            )
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.stop()
        node.close()
