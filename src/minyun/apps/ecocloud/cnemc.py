"""CNEMC hourly station files: their layout, what each column holds, and the AQI they publish.

The meanings below were established from the data (docs/ecocloud-cnemc-columns.md gives the
evidence); the names do not always say it. Concentrations are µg/m³, CO mg/m³.

====================  ==========================================================
column                holds
====================  ==========================================================
pm10, pm2_5           1-hour concentration
no2, so2, co          1-hour concentration
o3_24h                **1-hour O3** (despite its name)
o3                    **maximum 1-hour O3 of the last 24 hours** (despite its name)
o3_8h_24h             **8-hour moving mean of O3** for this hour
o3_8h                 **maximum 8-hour mean so far this day** (day = 01:00–24:00)
pm10_24h … co_24h     24-hour moving mean of the 1-hour concentrations
aqi, primarypollutant real-time AQI: the six 1-hour IAQIs; empty unless all six exist
====================  ==========================================================
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from minyun.apps.ecocloud.aqi import Item, aqi_columns, city_hourly_aqi_table
from minyun.core.errors import Invalid

# The real day shipped with minyun: 24 hours of Fujian's stations as CNEMC published them.
SAMPLE_DAY = Path(__file__).parent / "data" / "fujian-2022-01-04"

COLUMNS: tuple[str, ...] = (
    "timepoint",
    "stationcode",
    "longitude",
    "latitude",
    "area",
    "positionname",
    "primarypollutant",
    "aqi",
    "pm10",
    "pm10_24h",
    "pm2_5",
    "pm2_5_24h",
    "o3",
    "o3_24h",
    "o3_8h",
    "o3_8h_24h",
    "no2",
    "no2_24h",
    "so2",
    "so2_24h",
    "co",
    "co_24h",
)

#: The column holding each item of CNEMC's real-time AQI; note O3 1-hour is `o3_24h`.
HOURLY_SOURCES: Mapping[Item, str] = MappingProxyType(
    {
        Item.SO2_1H: "so2",
        Item.NO2_1H: "no2",
        Item.PM10_24H: "pm10",
        Item.CO_1H: "co",
        Item.O3_1H: "o3_24h",
        Item.PM2_5_24H: "pm2_5",
    }
)
#: The SO2 24-hour mean, reported instead of SO2 1-hour above 800 µg/m³ (HJ 633 note 2).
SO2_24H_SOURCE = "so2_24h"
#: Suffix of a station name that marks a control point (对照点), left out of city means.
CONTROL_POINT_SUFFIX = "(对照点)"


def cnemc_files(path: Path) -> list[Path]:
    """The CSV files at `path`: the file itself, or a directory's *.csv in name order."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
        if not files:
            raise Invalid(f"no .csv files in {path}", field="input", code="cnemc-no-files")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"no such file or directory: {path}")
    return [path]


def read_cnemc_csv(path: Path) -> pa.Table:
    """One CNEMC file as text columns, empty cells null, so that writing it back changes nothing."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), [])
    absent = [name for name in COLUMNS if name not in header]
    if absent:
        raise Invalid(
            f"{path.name}: not a CNEMC station file, columns missing: {', '.join(absent)}",
            field="columns",
            code="cnemc-columns",
        )
    # Only an empty cell is null: Arrow's default null markers ("NA", "null", …) would
    # silently blank station names or text that should fail as a concentration.
    options = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=True,
        null_values=[""],
    )
    return pa_csv.read_csv(path, convert_options=options)


def read_cnemc(paths: Sequence[Path]) -> pa.Table:
    """Several CNEMC files as one table, rows in file order."""
    return pa.concat_tables([read_cnemc_csv(p) for p in paths], promote_options="default")


def recompute_aqi(table: pa.Table) -> pa.Table:
    """The table with `aqi` and `primarypollutant` recomputed as CNEMC publishes them."""
    concentrations = {item: table[name] for item, name in HOURLY_SOURCES.items()}
    # CNEMC publishes no AQI for an hour unless all six 1-hour concentrations exist.
    computed = aqi_columns(concentrations, so2_24h=table[SO2_24H_SOURCE], require_all=True)
    aqi = computed["aqi"].cast(pa.string())
    primary = computed["primary_pollutant"].cast(pa.string())
    table = table.set_column(table.column_names.index("aqi"), "aqi", aqi)
    return table.set_column(
        table.column_names.index("primarypollutant"), "primarypollutant", primary
    )


def write_cnemc_csv(table: pa.Table, path: Path) -> None:
    """Write in CNEMC's layout: header, quotes only where needed, empty cells for nulls."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = str(path).replace("'", "''")
    with duckdb.connect() as con:
        con.register("cnemc_rows", table)
        con.execute(f"COPY cnemc_rows TO '{target}' (FORMAT csv, HEADER true, DELIMITER ',')")


@dataclass(frozen=True)
class Agreement:
    """How many rows of two CNEMC tables carry the same AQI and primary pollutant."""

    rows: int
    aqi: int
    primary_pollutant: int
    both: int


def _same(left: pa.ChunkedArray, right: pa.ChunkedArray) -> pa.ChunkedArray:
    """Row-wise equality where two empty cells are equal."""
    return pc.equal(pc.fill_null(left, ""), pc.fill_null(right, ""))


def compare(official: pa.Table, recomputed: pa.Table) -> Agreement:
    """Count the rows where the recomputed AQI and primary pollutant equal the official ones."""
    if official.num_rows != recomputed.num_rows:
        raise ValueError("the tables differ in length")
    same_aqi = _same(official["aqi"], recomputed["aqi"])
    same_primary = _same(official["primarypollutant"], recomputed["primarypollutant"])

    def count(mask: pa.ChunkedArray) -> int:
        return int(pc.sum(mask.cast(pa.int64())).as_py() or 0)

    return Agreement(
        rows=official.num_rows,
        aqi=count(same_aqi),
        primary_pollutant=count(same_primary),
        both=count(pc.and_(same_aqi, same_primary)),
    )


def is_control_point(table: pa.Table) -> pa.ChunkedArray:
    """Whether each row is a control point (对照点), which HJ 663 leaves out of city means."""
    return pc.fill_null(pc.ends_with(table["positionname"], CONTROL_POINT_SUFFIX), False)


def city_hourly_aqi(table: pa.Table, *, rounded: bool = True, require_all: bool = True) -> pa.Table:
    """Real-time AQI per city (`area`) and hour from its stations other than control points."""
    stations = table.filter(pc.invert(is_control_point(table)))
    return city_hourly_aqi_table(
        stations,
        by=("timepoint", "area"),
        columns=HOURLY_SOURCES,
        so2_24h_column=SO2_24H_SOURCE,
        rounded=rounded,
        require_all=require_all,
    )
