"""Benchmark: real-time AQI of 1 million station-hours, minyun against plain DuckDB SQL.

Both sides read the same synthetic Arrow table. minyun computes the exact AQI with its
primary pollutants and level (`hourly_aqi_table`); the DuckDB query computes only the
maximum of the six IAQIs with float arithmetic, the usual way it is written in SQL.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from minyun.apps.ecocloud import cnemc, ingest, mqtt
from minyun.apps.ecocloud.aqi import BREAKPOINTS, HOURLY_COLUMNS, IAQI_STEPS, hourly_aqi_table
from minyun.apps.ecocloud.cnemc import SAMPLE_DAY
from minyun.core.config import load_settings
from minyun.core.platform import Platform

ROWS = 1_000_000
REPEATS = 3


def synthetic_hours(rows: int = ROWS, *, seed: int = 20220104) -> pa.Table:
    """Station-hours shaped like CNEMC data: integer µg/m³, CO to 0.1 mg/m³, 1 % missing."""
    rng = np.random.default_rng(seed)

    def column(values: np.ndarray) -> pa.Array:
        return pa.array(values, mask=rng.random(rows) < 0.01)

    return pa.table(
        {
            "so2": column(rng.gamma(2.0, 6.0, rows).round().astype(np.int64)),
            "no2": column(rng.gamma(2.0, 20.0, rows).round().astype(np.int64)),
            "pm10": column(rng.gamma(2.5, 30.0, rows).round().astype(np.int64)),
            "pm2_5": column(rng.gamma(2.0, 22.0, rows).round().astype(np.int64)),
            "co": column(rng.gamma(2.0, 0.4, rows).round(1)),
            "o3": column(rng.gamma(2.0, 40.0, rows).round().astype(np.int64)),
        }
    )


def duckdb_sql() -> str:
    """A plain SQL query for the maximum IAQI, one CASE per pollutant, float arithmetic."""
    cases = []
    for item, column in HOURLY_COLUMNS.items():
        bps = BREAKPOINTS[item]
        branches = " ".join(
            f"WHEN {column} <= {bps[k]} THEN ceil({IAQI_STEPS[k] - IAQI_STEPS[k - 1]}.0"
            f" / {bps[k] - bps[k - 1]} * ({column} - {bps[k - 1]}) + {IAQI_STEPS[k - 1]})"
            for k in range(1, len(bps))
        )
        cases.append(f"CASE WHEN {column} IS NULL THEN NULL {branches} ELSE 500 END")
    return f"SELECT greatest({', '.join(cases)})::INTEGER AS aqi FROM hours"


def _best_seconds(work: Callable[[], object]) -> float:
    """The fastest of a few runs, after one warm-up run."""
    work()
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return min(timings)


MQTT_DAYS = 10  # the real day replayed as 10 consecutive days: 10 080 readings
DAY = SAMPLE_DAY


DAY_READINGS = 1008


def _wait(done: Callable[[], bool], began: float) -> None:
    while not done():
        if time.perf_counter() - began > 600:
            raise RuntimeError("the subscriber did not ingest every message")
        time.sleep(0.005)


def mqtt_readings_per_s(days: int = MQTT_DAYS) -> float:
    """Readings per second through the local Mosquitto into a fresh embedded node, detection on.

    Timed from the first publish until the subscriber has ingested the last message; the
    node is SQLite (the embedded default), each batch one transaction with anomaly and
    episode detection over the hours it touched.
    """
    rows = ingest.rows_from_cnemc(cnemc.read_cnemc(cnemc.cnemc_files(DAY)))
    start = dt.date(2022, 1, 4)
    messages: list[tuple[str, bytes]] = []
    prefix = f"minyun-bench/{uuid.uuid4().hex[:12]}/eco/stations"
    for k in range(days):
        day = (start + dt.timedelta(days=k)).isoformat()
        shifted = rows.set_column(1, "hour", pc.replace_substring(rows["hour"], "2022-01-04", day))
        messages += mqtt.messages_of(shifted, prefix)
    with tempfile.TemporaryDirectory() as var:
        node = Platform.open(load_settings(var_dir=Path(var)), run_jobs_here=False)
        node.migrate()
        subscriber = mqtt.Subscriber(node.factory, prefix=prefix).start()
        try:
            subscriber.subscribed.wait(10)
            client = mqtt.publisher()
            began = time.perf_counter()
            # A day at a time, each once the subscriber holds the last: Mosquitto drops
            # QoS 1 messages beyond its per-client queue (1000 by default).
            for k in range(0, len(messages), DAY_READINGS):
                mqtt.publish(client, messages[k : k + DAY_READINGS])
                held = min(len(messages), k + DAY_READINGS)
                _wait(lambda held=held: subscriber.received >= held, began)
            _wait(lambda: subscriber.stats.messages >= len(messages), began)
            elapsed = time.perf_counter() - began
            client.disconnect()
        finally:
            subscriber.stop()
            node.close()
    return len(messages) / elapsed


def run() -> dict[str, float]:
    """Rows per second of minyun's AQI, its ratio to DuckDB's, and MQTT ingest throughput."""
    hours = synthetic_hours()
    ours = _best_seconds(lambda: hourly_aqi_table(hours))
    sql = duckdb_sql()
    with duckdb.connect() as con:
        con.register("hours", hours)
        theirs = _best_seconds(lambda: con.sql(sql).to_arrow_table())
    ours_rate = hours.num_rows / ours
    theirs_rate = hours.num_rows / theirs
    return {
        "eco.aqi_rows_per_s": ours_rate,
        "eco.aqi_vs_duckdb_ratio": ours_rate / theirs_rate,
        "eco.mqtt_readings_per_s": mqtt_readings_per_s(),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value:,.3f}")
