"""The exchange benchmark's tools keep working: the plain baseline app and the load generators.

No timing is asserted (speed is measured by `make bench`). These check that the baseline,
served as the benchmark serves it (uvicorn, 2 workers), answers the product's serving index
rows in the row API's shape, and that the open-loop generator and the wrk script drive it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.bench_exchange import (
    CODE,
    PLAIN_PATH,
    descriptor,
    plain_env,
    run_open_loop,
    run_wrk,
    serving,
    setup,
    split_path,
    synthetic_people,
    wrk_script,
)
from benchmarks.openloop import Config
from minyun.core import identifiers
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.tableschema import parse_schema
from tests.conftest import PostgresDatabases

pytestmark = pytest.mark.postgres

ROWS = 40


@pytest.fixture(scope="module")
def plain(
    pg_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The base URL of the plain lookup app over a node holding a small indexed resource."""
    url = pg_databases.create()
    var = tmp_path_factory.mktemp("exchange")
    node = Platform.open(load_settings(var_dir=var, database_url=url))
    try:
        node.migrate()
        setup(node, rows=ROWS)
    finally:
        node.close()
    with serving("benchmarks.plain_lookup:app", plain_env(url), var / "plain.log") as base:
        yield base


def test_synthetic_people_have_valid_identity_numbers_and_phones() -> None:
    table = synthetic_people(500)
    assert table.column("id").to_pylist() == list(range(1, 501))
    assert all(identifiers.is_valid_ric(v) for v in table.column("id_number").to_pylist())
    phones = table.column("phone").to_pylist()
    assert all(len(p) == 11 and p.startswith("1") and p.isdigit() for p in phones)


def test_the_resource_schema_is_valid_with_two_masked_fields_in_normal_form() -> None:
    fields = {f.name: f for f in parse_schema(descriptor()).fields}
    masked = {n: (f.sensitivity, f.mask) for n, f in fields.items() if f.mask is not None}
    assert masked == {"id_number": ("secret", "keep(6,4)"), "phone": ("secret", "keep(3,4)")}


def test_plain_lookup_answers_the_indexed_row_in_the_row_api_shape(plain: str) -> None:
    expected = synthetic_people(ROWS).slice(6, 1).to_pylist()[0]
    expected["day"] = expected["day"].isoformat()
    r = httpx.get(plain + PLAIN_PATH.format(code=CODE, key=7))
    assert r.status_code == 200
    assert r.json() == {"row": expected, "version": 0}
    assert httpx.get(plain + PLAIN_PATH.format(code=CODE, key=ROWS + 1)).status_code == 404
    assert httpx.get(plain + PLAIN_PATH.format(code="no-such", key=7)).status_code == 404


def test_open_loop_generator_sends_its_whole_schedule(plain: str) -> None:
    prefix, suffix = split_path(PLAIN_PATH, CODE)
    figures = run_open_loop(
        plain, prefix, suffix, {}, keys=ROWS, rate=40, seconds=1, warmup_seconds=0.25
    )
    assert figures["sent"] == figures["ok"] == 40
    assert figures["unanswered"] == figures["failures"] == figures["non_200"] == 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]


def test_open_loop_generator_refuses_other_hosts_and_unbounded_runs() -> None:
    with pytest.raises(ValueError, match="this machine"):
        Config(host="192.0.2.1", port=80, path_prefix="/", keys=1)
    with pytest.raises(ValueError, match="seconds"):
        Config(port=80, path_prefix="/", keys=1, seconds=3600)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make wrk)")
def test_wrk_script_drives_the_plain_app_without_errors(plain: str, tmp_path: Path) -> None:
    prefix, suffix = split_path(PLAIN_PATH, CODE)
    script = tmp_path / "plain.lua"
    script.write_text(wrk_script(prefix, suffix, ROWS, {"X-Bench": "1"}, seed=3))
    figures = run_wrk(plain, script, 1)  # raises on any error or non-2xx answer
    assert figures["requests"] > 0
