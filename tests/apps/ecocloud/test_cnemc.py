"""CNEMC station files: column meanings, and the official AQI reproduced row by row."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from minyun.apps.ecocloud.aqi import Item, aqi_columns, hourly_aqi, mean_concentration
from minyun.apps.ecocloud.cli import eco_app
from minyun.apps.ecocloud.cnemc import (
    COLUMNS,
    HOURLY_SOURCES,
    SAMPLE_DAY,
    city_hourly_aqi,
    cnemc_files,
    compare,
    is_control_point,
    read_cnemc,
    read_cnemc_csv,
    recompute_aqi,
    write_cnemc_csv,
)

DATA = SAMPLE_DAY
ONE_HOUR = ("so2", "no2", "pm10", "pm2_5", "co", "o3_24h")
# `hourly_aqi` argument → CNEMC column holding it.
_HOURLY_ARGS = dict(zip(("so2", "no2", "pm10", "pm2_5", "co", "o3"), ONE_HOUR, strict=True))

# Rows where the official file contradicts itself, so no correct AQI engine reproduces them.
INCONSISTENT = {
    ("2022-01-04T03:00:00", "3526A"): (
        "吴航 publishes no AQI although all six 1-hour concentrations are present; every other"
        " such row has one (AQI here: NO2 165 µg/m³ → 83, 二氧化氮). The NO2 value was valid:"
        " the file's own no2_24h rises from 40 to 46 at this hour, impossible without it."
    ),
}

runner = CliRunner()


@pytest.fixture(scope="module")
def official() -> pa.Table:
    return read_cnemc(cnemc_files(DATA))


@pytest.fixture(scope="module")
def series(official: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """Each station's 24 rows in hour order (files hold one hour each, T00 to T23)."""
    by_station: dict[str, list[dict[str, Any]]] = {}
    for row in official.to_pylist():
        by_station.setdefault(row["stationcode"], []).append(row)
    assert all(len(rows) == 24 for rows in by_station.values())
    return by_station


def _key(row: dict[str, Any]) -> tuple[str, str]:
    return row["timepoint"], row["stationcode"]


def test_cli_reproduces_every_published_aqi_and_primary_pollutant(
    tmp_path: Path, official: pa.Table
) -> None:
    out = tmp_path / "aqi.csv"
    result = runner.invoke(eco_app, ["aqi", str(DATA), "-o", str(out)])
    assert result.exit_code == 0, result.output
    ours = read_cnemc_csv(out)
    assert ours.column_names == list(COLUMNS)
    assert ours.num_rows == official.num_rows == 1008
    unchanged = [c for c in COLUMNS if c not in ("aqi", "primarypollutant")]
    assert ours.select(unchanged).equals(official.select(unchanged))

    mismatched = {}
    for theirs, mine in zip(official.to_pylist(), ours.to_pylist(), strict=True):
        same = (theirs["aqi"], theirs["primarypollutant"]) == (
            mine["aqi"],
            mine["primarypollutant"],
        )
        if not same:
            mismatched[_key(theirs)] = (theirs["aqi"], mine["aqi"], mine["primarypollutant"])
    matches = official.num_rows - len(mismatched)
    print(f"AQI and primary pollutant reproduced on {matches} of {official.num_rows} rows")
    for key, reason in INCONSISTENT.items():
        print(f"  official file inconsistent at {key}: {reason}")
    assert mismatched == {("2022-01-04T03:00:00", "3526A"): (None, "83", "二氧化氮")}
    assert set(mismatched) == set(INCONSISTENT)
    assert matches == 1007
    assert "agrees on 1007 rows, primarypollutant on 1007" in result.output

    published = pc.is_valid(official["aqi"])
    assert pc.sum(published).as_py() == 970  # all 970 published AQIs are reproduced exactly
    multiple = pc.count_substring(official["primarypollutant"], ",")
    assert pc.sum(multiple).as_py() == 10  # including 10 rows with two primary pollutants


def test_the_inconsistent_row_breaks_the_files_own_publishing_rule(
    official: pa.Table, series: dict[str, list[dict[str, Any]]]
) -> None:
    rows = official.to_pylist()
    complete = {_key(r): all(r[c] is not None for c in ONE_HOUR) for r in rows}
    empty = {_key(r) for r in rows if r["aqi"] is None}
    # CNEMC's rule everywhere else: no AQI exactly when a 1-hour concentration is missing.
    assert {k for k, ok in complete.items() if not ok} == empty - set(INCONSISTENT)
    assert len(empty) == 38

    wuhang = series["3526A"]
    row = wuhang[3]
    assert _key(row) in INCONSISTENT and complete[_key(row)] and row["aqi"] is None
    result = hourly_aqi(**{k: row[v] for k, v in _HOURLY_ARGS.items()}, so2_24h=row["so2_24h"])
    assert (result.aqi, result.primary_pollutant) == (83, "二氧化氮")
    # Had NO2 165 been rejected, the mean of the remaining 23 hours could not exceed
    # 40.5 × 24 / 23 ≈ 42.3; the file publishes 46, so it counted the value.
    assert (wuhang[2]["no2_24h"], row["no2"], row["no2_24h"]) == ("40", "165", "46")
    assert Decimal("40.5") * 24 / 23 < Decimal("45.5")


def test_per_file_output_is_byte_identical_where_the_official_file_is_consistent(
    tmp_path: Path,
) -> None:
    result = runner.invoke(eco_app, ["aqi", str(DATA), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    differing = []
    for source in sorted(DATA.glob("*.csv")):
        theirs = source.read_bytes().decode().splitlines()
        mine = (tmp_path / source.name).read_bytes().decode().splitlines()
        differing += [(source.name, a, b) for a, b in zip(theirs, mine, strict=True) if a != b]
    assert differing == [
        (
            "2022-01-04T03.csv",
            "2022-01-04T03:00:00,3526A,119.5189,25.9664,福州市,吴航,,,68,52,50,39,110,4,27,14,165,46,6,6,0.6,0.7",
            "2022-01-04T03:00:00,3526A,119.5189,25.9664,福州市,吴航,二氧化氮,83,68,52,50,39,110,4,27,14,165,46,6,6,0.6,0.7",
        )
    ]


def test_a_single_file_is_accepted(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "one.csv"
    result = runner.invoke(eco_app, ["aqi", str(DATA / "2022-01-04T00.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (DATA / "2022-01-04T00.csv").read_bytes()
    assert "42 rows from 1 file(s)" in result.output


def test_a_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(eco_app, ["aqi", str(tmp_path / "nope.csv"), "-o", "x.csv"])
    assert result.exit_code == 2
    assert "no such file or directory" in result.output


def test_a_directory_without_csv_files_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(eco_app, ["aqi", str(tmp_path), "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert "no .csv files" in result.output


def test_a_file_of_another_layout_is_a_usage_error(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    header = ",".join(c for c in COLUMNS if c not in ("o3_8h", "co_24h"))
    wrong.write_text(header + "\n", encoding="utf-8")
    result = runner.invoke(eco_app, ["aqi", str(wrong), "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert "columns missing: o3_8h, co_24h" in _plain(result.output)
    assert not (tmp_path / "x.csv").exists()


def test_text_in_a_concentration_column_is_a_usage_error(tmp_path: Path) -> None:
    table = read_cnemc_csv(DATA / "2022-01-04T00.csv")
    co = table["co"].to_pylist()
    co[5] = "n/a"
    bad = tmp_path / "bad.csv"
    write_cnemc_csv(table.set_column(table.column_names.index("co"), "co", pa.array(co)), bad)
    result = runner.invoke(eco_app, ["aqi", str(bad), "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert "bad.csv: co_1h: not a concentration column: The string 'n/a'" in _plain(result.output)


def _plain(output: str) -> str:
    """CLI output without Rich's box and line breaks."""
    return re.sub(r"[\s│]+", " ", output)


# ------------------------------------------------------------ column meanings


def _round_half_even(values: list[Decimal], places: int = 0) -> Decimal:
    mean = sum(values, Decimal(0)) / len(values)
    return mean.quantize(Decimal(1).scaleb(-places), rounding="ROUND_HALF_EVEN")


def test_o3_24h_is_1_hour_ozone_and_o3_its_24_hour_maximum(
    series: dict[str, list[dict[str, Any]]],
) -> None:
    for rows in series.values():
        hourly = [int(r["o3_24h"]) for r in rows if r["o3_24h"] is not None]
        for h, row in enumerate(rows):
            seen = [int(r["o3_24h"]) for r in rows[: h + 1] if r["o3_24h"] is not None]
            assert int(row["o3"]) >= max(seen, default=0)
        # At T23 the last 24 hours are exactly T00..T23, all in the file.
        assert int(rows[23]["o3"]) == max(hourly)


def test_o3_8h_24h_is_the_8_hour_mean_within_the_day(
    series: dict[str, list[dict[str, Any]]],
) -> None:
    # The day runs 01:00–24:00, and windows do not reach back before 01:00; the mean
    # takes the valid hours of the window, rounded half to even.
    checked = ties = 0
    for rows in series.values():
        for h in range(1, 24):
            window = [
                Decimal(r["o3_24h"]) for r in rows[max(1, h - 7) : h + 1] if r["o3_24h"] is not None
            ]
            published = rows[h]["o3_8h_24h"]
            if not window:
                assert published is None
                continue
            assert Decimal(published) == _round_half_even(window)
            checked += 1
            ties += (sum(window) * 2 / len(window)) % 2 == 1
    assert checked == 963 and ties == 109  # 109 exact .5 means, all rounded to even
    # A window reaching back to T00 fits only by coincidence.
    full_window_at_t07 = [
        _round_half_even([Decimal(r["o3_24h"]) for r in rows[0:8] if r["o3_24h"] is not None])
        == Decimal(rows[7]["o3_8h_24h"])
        for rows in series.values()
    ]
    assert sum(full_window_at_t07) == 7


def test_o3_8h_is_the_days_running_maximum_of_the_8_hour_mean(
    series: dict[str, list[dict[str, Any]]],
) -> None:
    for rows in series.values():
        for h in range(1, 24):
            means = [int(r["o3_8h_24h"]) for r in rows[1 : h + 1] if r["o3_8h_24h"] is not None]
            assert int(rows[h]["o3_8h"]) == max(means)


@pytest.mark.parametrize("pollutant", ["pm10", "pm2_5", "no2", "so2"])
def test_24h_columns_are_24_hour_means_rounded_half_to_even(
    series: dict[str, list[dict[str, Any]]], pollutant: str
) -> None:
    for rows in series.values():
        values = [Decimal(r[pollutant]) for r in rows if r[pollutant] is not None]
        assert Decimal(rows[23][f"{pollutant}_24h"]) == _round_half_even(values)


def test_co_24h_is_the_24_hour_mean_of_co(series: dict[str, list[dict[str, Any]]]) -> None:
    # CNEMC keeps CO finer than the 0.1 mg/m³ it publishes, so only the rounding band is sure.
    for rows in series.values():
        values = [Decimal(r["co"]) for r in rows if r["co"] is not None]
        mean = sum(values, Decimal(0)) / len(values)
        assert abs(Decimal(rows[23]["co_24h"]) - mean) <= Decimal("0.05")


def _agreement(official: pa.Table, sources: dict[Item, str]) -> int:
    """Rows whose official AQI equals the AQI computed from the given columns."""
    computed = aqi_columns(
        {item: official[name] for item, name in sources.items()},
        so2_24h=official["so2_24h"],
        require_all=True,
    )
    ours = pc.fill_null(computed["aqi"].cast(pa.string()), "")
    return int(pc.sum(pc.equal(pc.fill_null(official["aqi"], ""), ours)).as_py())


def test_only_the_documented_columns_reproduce_the_official_aqi(official: pa.Table) -> None:
    chosen = dict(HOURLY_SOURCES)
    assert _agreement(official, chosen) == 1007
    # `o3` taken for the 1-hour ozone its name suggests:
    assert _agreement(official, chosen | {Item.O3_1H: "o3"}) == 848
    # PM from the 24-hour moving means instead of the 1-hour values:
    assert (
        _agreement(official, chosen | {Item.PM10_24H: "pm10_24h", Item.PM2_5_24H: "pm2_5_24h"})
        == 84
    )
    # The O3 8-hour moving mean as a seventh item of the real-time AQI:
    assert _agreement(official, chosen | {Item.O3_8H: "o3_8h_24h"}) == 808
    # SO2, NO2 and CO 1-hour values on the 24-hour rows of the table:
    daily_rows = {Item.SO2_24H: "so2", Item.NO2_24H: "no2", Item.CO_24H: "co"}
    hourly_rest = {
        k: v for k, v in chosen.items() if k not in (Item.SO2_1H, Item.NO2_1H, Item.CO_1H)
    }
    assert _agreement(official, hourly_rest | daily_rows) == 882


def test_recompute_without_require_all_would_invent_37_aqis(official: pa.Table) -> None:
    lenient = aqi_columns({item: official[name] for item, name in HOURLY_SOURCES.items()})
    assert int(pc.sum(pc.is_valid(lenient["aqi"])).as_py()) == 970 + 1 + 36
    assert compare(official, recompute_aqi(official)).both == 1007


# ------------------------------------------------------------------ city AQI


def test_each_city_has_one_control_point(official: pa.Table) -> None:
    hour = official.filter(pc.equal(official["timepoint"], "2022-01-04T00:00:00"))
    controls = hour.filter(is_control_point(hour))
    assert controls.num_rows == 9
    assert sorted(controls["area"].to_pylist()) == sorted(set(hour["area"].to_pylist()))
    assert "鼓山(对照点)" in controls["positionname"].to_pylist()


def test_city_aqi_is_computed_from_rounded_means_of_its_non_control_stations(
    official: pa.Table,
) -> None:
    cities = city_hourly_aqi(official)
    assert cities.num_rows == 24 * 9
    fuzhou = cities.filter(
        pc.and_(
            pc.equal(cities["area"], "福州市"), pc.equal(cities["timepoint"], "2022-01-04T01:00:00")
        )
    ).to_pylist()[0]
    rows = [
        r
        for r in official.to_pylist()
        if r["area"] == "福州市"
        and r["timepoint"] == "2022-01-04T01:00:00"
        and not r["positionname"].endswith("(对照点)")
    ]
    assert len(rows) == 6
    means = {
        arg: mean_concentration([r[col] for r in rows], decimals=1 if arg == "co" else 0)
        for arg, col in _HOURLY_ARGS.items()
    }
    expected = hourly_aqi(**means, require_all=True)
    assert fuzhou["aqi"] == expected.aqi
    assert fuzhou["primary_pollutant"] == (expected.primary_pollutant or None)
    assert fuzhou["pm10"] == float(means["pm10"] or "nan")
