"""Synthetic Fujian population: valid, unique, consistent, deterministic, streamed."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from minyun.core.identifiers import ric_valid_mask, uscc_valid_mask
from minyun.demo.population import (
    ENTERPRISE_SCHEMA,
    PERSON_SCHEMA,
    iter_enterprises,
    iter_persons,
    persons_at,
    write_parquet,
)

DIVISIONS = Path(__file__).parents[2] / "src/minyun/core/data/divisions.csv"
N_PERSONS = 30_000
N_ENTERPRISES = 20_000


def parents() -> dict[str, str]:
    with DIVISIONS.open(encoding="utf-8") as f:
        return {r["code"]: r["parent_code"] for r in csv.DictReader(f) if r["level"] == "county"}


@pytest.fixture(scope="module")
def persons() -> pa.Table:
    return pa.Table.from_batches(iter_persons(N_PERSONS, batch_size=7_000), PERSON_SCHEMA)


@pytest.fixture(scope="module")
def enterprises() -> pa.Table:
    batches = iter_enterprises(N_ENTERPRISES, n_persons=N_PERSONS, batch_size=6_000)
    return pa.Table.from_batches(batches, ENTERPRISE_SCHEMA)


def test_streaming_yields_the_requested_count_across_batch_boundaries() -> None:
    sizes = [b.num_rows for b in iter_persons(250_001, batch_size=100_000)]
    assert sizes == [100_000, 100_000, 50_001]
    sizes = [b.num_rows for b in iter_enterprises(10_001, n_persons=50, batch_size=5_000)]
    assert sizes == [5_000, 5_000, 1]
    assert list(iter_persons(0)) == []


def test_every_person_has_a_valid_unique_identity_number(persons: pa.Table) -> None:
    assert persons.num_rows == N_PERSONS
    assert pc.all(ric_valid_mask(persons["ric"], strict_region=True)).as_py()
    assert pc.count_distinct(persons["ric"]).as_py() == N_PERSONS
    assert persons["person_id"].to_pylist() == list(range(1, N_PERSONS + 1))


def test_person_fields_agree_with_the_identity_number(persons: pa.Table) -> None:
    ric = persons["ric"]
    seq_digit = pc.cast(pc.utf8_slice_codeunits(ric, 16, 17), pa.int64()).to_numpy()
    sex = persons["sex"].to_numpy(zero_copy_only=False)
    assert ((seq_digit % 2 == 1) == (sex == "M")).all()
    assert set(sex) == {"M", "F"}
    ymd = pc.strftime(persons["birth_date"], format="%Y%m%d")
    assert pc.all(pc.equal(ymd, pc.utf8_slice_codeunits(ric, 6, 14))).as_py()
    assert pc.all(pc.equal(persons["county_code"], pc.utf8_slice_codeunits(ric, 0, 6))).as_py()
    years = pc.year(persons["birth_date"])
    assert pc.min(years).as_py() >= 1935 and pc.max(years).as_py() <= 2024
    city_of = parents()
    counties = persons["county_code"].to_pylist()
    assert persons["city_code"].to_pylist() == [city_of[c] for c in counties]


def test_person_names_phones_and_addresses_look_right(persons: pa.Table) -> None:
    assert pc.all(pc.match_substring_regex(persons["phone"], r"^1[358]\d{9}$")).as_py()
    lengths = pc.utf8_length(persons["name"]).to_numpy()
    assert lengths.min() >= 2 and lengths.max() <= 4
    assert pc.count_distinct(persons["name"]).as_py() > N_PERSONS // 4
    surnames = pc.utf8_slice_codeunits(persons["name"], 0, 1).to_pylist()
    assert max(set(surnames), key=surnames.count) == "陈"  # the commonest surname in Fujian
    address = persons["address"]
    assert pc.all(
        pc.match_substring_regex(address, r"^\p{Han}+市\p{Han}+(区|县|市)\p{Han}+(路|街)\d+号$")
    ).as_py()


def test_persons_are_deterministic_and_independent_of_batch_size(persons: pa.Table) -> None:
    again = pa.Table.from_batches(iter_persons(N_PERSONS, batch_size=100_000))
    assert again.equals(persons)
    other_seed = pa.Table.from_batches(iter_persons(1_000, seed=7))
    assert not other_seed.equals(persons.slice(0, 1_000))
    assert pc.count_distinct(other_seed["ric"]).as_py() == 1_000


def test_a_stream_can_resume_at_any_row(persons: pa.Table, enterprises: pa.Table) -> None:
    tail = pa.Table.from_batches(iter_persons(N_PERSONS, start=12_345, batch_size=5_000))
    assert tail.equals(persons.slice(12_345))
    resumed = iter_enterprises(N_ENTERPRISES, n_persons=N_PERSONS, start=19_999)
    assert pa.Table.from_batches(resumed).equals(enterprises.slice(19_999))


def test_persons_at_rebuilds_single_rows(persons: pa.Table) -> None:
    picks = np.array([29_999, 0, 12_345, 7_000, 6_999])
    rows = pa.Table.from_batches([persons_at(picks)])
    assert rows.equals(persons.take(pa.array(picks)))
    with pytest.raises(ValueError):
        persons_at([-1])


def test_every_enterprise_has_a_valid_unique_credit_code(enterprises: pa.Table) -> None:
    uscc = enterprises["uscc"]
    assert pc.all(uscc_valid_mask(uscc)).as_py()
    assert pc.count_distinct(uscc).as_py() == N_ENTERPRISES
    assert pc.all(pc.starts_with(uscc, "91")).as_py()
    assert pc.all(pc.equal(enterprises["county_code"], pc.utf8_slice_codeunits(uscc, 2, 8))).as_py()
    city_of = parents()
    counties = enterprises["county_code"].to_pylist()
    assert enterprises["city_code"].to_pylist() == [city_of[c] for c in counties]


def test_legal_representatives_are_generated_adult_persons(
    persons: pa.Table, enterprises: pa.Table
) -> None:
    reps = enterprises["legal_rep_ric"]
    assert pc.all(pc.is_in(reps, value_set=persons["ric"])).as_py()
    born = pc.index_in(reps, value_set=persons["ric"])
    birth = persons["birth_date"].take(born).to_numpy().astype("datetime64[D]")
    established = enterprises["established"].to_numpy().astype("datetime64[D]")
    assert ((established - birth).astype(np.int64) >= 18 * 365).all()


def test_enterprise_fields_look_right(enterprises: pa.Table) -> None:
    industries = set(enterprises["industry"].to_pylist())
    assert industries <= set("ABCDEFGHIJKLMNOPQRST") and {"C", "F", "I"} <= industries
    shares = {
        r["values"]: r["counts"] / N_ENTERPRISES
        for r in pc.value_counts(enterprises["status"]).to_pylist()
    }
    assert set(shares) == {"存续", "注销", "吊销"}
    assert shares["存续"] > 0.6 and shares["注销"] > shares["吊销"] > 0.01
    with DIVISIONS.open(encoding="utf-8") as f:
        short = {r["code"]: r["name"].removesuffix("市") for r in csv.DictReader(f)}
    names, cities = enterprises["name"].to_pylist(), enterprises["city_code"].to_pylist()
    assert all(n.startswith(short[c]) for n, c in zip(names, cities, strict=True))
    suffix = r"^\p{Han}{4,}(有限公司|有限责任公司|股份有限公司)$"
    assert pc.all(pc.match_substring_regex(enterprises["name"], suffix)).as_py()
    assert pc.min(enterprises["registered_capital"]).as_py() >= 10_000
    years = pc.year(enterprises["established"])
    assert pc.min(years).as_py() >= 1980 and pc.max(years).as_py() <= 2025
    uscc = enterprises["uscc"].to_pylist()
    new_style = [c[8:10] == "MA" for c in uscc]
    after_reform = [d.year >= 2016 for d in enterprises["established"].to_pylist()]
    assert any(new_style) and not all(new_style)
    assert all(n for n, late in zip(new_style, after_reform, strict=True) if late)


def test_enterprises_are_deterministic(enterprises: pa.Table) -> None:
    again = iter_enterprises(N_ENTERPRISES, n_persons=N_PERSONS, batch_size=N_ENTERPRISES)
    assert pa.Table.from_batches(again).equals(enterprises)


def test_write_parquet_streams_one_file_with_the_same_bytes(tmp_path: Path) -> None:
    seen: list[int] = []
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    rows = write_parquet(iter_persons(25_000, batch_size=10_000), first, progress=seen.append)
    assert rows == 25_000 and seen == [10_000, 20_000, 25_000]
    write_parquet(iter_persons(25_000, batch_size=10_000), second)
    assert first.read_bytes() == second.read_bytes()
    back = pq.read_table(first)
    assert back.equals(pa.Table.from_batches(iter_persons(25_000)))


def test_write_parquet_with_no_rows_needs_a_schema(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    assert write_parquet(iter_enterprises(0, n_persons=1), path, schema=ENTERPRISE_SCHEMA) == 0
    assert pq.read_table(path).schema.equals(ENTERPRISE_SCHEMA)
    with pytest.raises(ValueError, match="no batches"):
        write_parquet(iter_persons(0), tmp_path / "none.parquet")


@pytest.mark.parametrize(
    "call",
    [
        lambda: list(iter_persons(-1)),
        lambda: list(iter_persons(10, batch_size=0)),
        lambda: list(iter_enterprises(10, n_persons=0)),
        lambda: list(iter_persons(10, start=-1)),
        lambda: list(iter_persons(10**10)),
    ],
)
def test_bad_sizes_are_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()
