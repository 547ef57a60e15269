"""The demo province's catalog: valid definitions, deterministic data, loads with planted faults."""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

import minyun.handlers  # noqa: F401 - registers demo.load and ingest.load
from minyun.catalog import service
from minyun.catalog.models import Resource, ResourceStatus
from minyun.core import identifiers, jobs
from minyun.core.jobs import JobState
from minyun.core.masks import parse_mask
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.tableschema import parse_schema
from minyun.demo import province
from minyun.demo.resources import RESOURCES, build_table
from minyun.ingest.models import Version
from minyun.web.app import create_app
from tests.web.test_pages import browser, make_user, sign_in

DEPARTMENTS = {code for code, _name, _city in province.PROVINCIAL_DEPARTMENTS}


def test_definitions_are_valid_and_cover_the_departments() -> None:
    codes = [r.code for r in RESOURCES]
    assert len(codes) >= 30 and len(set(codes)) == len(codes)
    assert len({r.provider for r in RESOURCES}) >= 8
    assert {r.provider for r in RESOURCES} <= DEPARTMENTS
    assert {r.base_library for r in RESOURCES} >= {"population", "legal-person", "geospatial",
                                                   "licence"}  # fmt: skip
    for resource in RESOURCES:
        schema = parse_schema(resource.schema())
        assert set(resource.primary_key) <= set(schema.names), resource.code
        restricted = resource.sharing != "unconditional" or resource.open != "unconditional"
        assert not restricted or resource.legal_basis, resource.code
    formats = {c.format for r in RESOURCES for c in r.columns}
    assert {"cn-ric", "cn-uscc"} <= formats
    assert sum(1 for r in RESOURCES if r.faults) >= 5


def test_data_is_deterministic_with_exactly_the_planted_faults() -> None:
    population = next(r for r in RESOURCES if r.code == "police-population-basic")
    first, again = build_table(population, seed=5), build_table(population, seed=5)
    assert first.equals(again)
    valid = identifiers.ric_valid_mask(first.column("ric").combine_chunks())
    bad = first.num_rows - pc.sum(valid).as_py()
    assert bad == int(population.rows * 0.02)
    assert first.column("name").null_count == int(population.rows * 0.02)
    enterprises = next(r for r in RESOURCES if r.code == "amr-enterprise-registration")
    table = build_table(enterprises, seed=5)
    assert table.num_rows > enterprises.rows  # duplicate keys were appended


def test_demo_masks_show_what_a_masked_reader_may_see() -> None:
    population = next(r for r in RESOURCES if r.code == "police-population-basic")
    fields = {f.name: f for f in parse_schema(population.schema()).fields}
    assert {n: fields[n].mask for n in ("ric", "name", "birth_date", "address")} == {
        "ric": "keep(6,4)",
        "name": "name",
        "birth_date": "date(year)",
        "address": "address(city)",
    }
    table = build_table(population, seed=5)
    shown = {
        n: parse_mask(fields[n].mask or "").arrow(table.column(n).combine_chunks(), key=b"k")
        for n in ("ric", "name", "birth_date", "address")
    }
    ric, masked_ric = table.column("ric")[0].as_py(), shown["ric"][0].as_py()
    assert masked_ric == ric[:6] + "*" * 8 + ric[-4:]
    name = table.column("name").drop_null()[0].as_py()
    assert _masked_name(name) in shown["name"].to_pylist()
    assert shown["birth_date"][0].as_py() == str(table.column("birth_date")[0].as_py().year)
    cities = set(shown["address"].to_pylist())
    assert None not in cities and all(c.endswith("市") and len(c) <= 4 for c in cities)


def _masked_name(name: str) -> str:
    return name[0] + "*" if len(name) == 2 else name[0] + "*" * (len(name) - 2) + name[-1]


def test_every_demo_resource_passes_the_catalog_rules(session: Session) -> None:
    province.load_departments(session)
    system = Principal.system()
    for resource in RESOURCES[:8]:
        service.create_resource(
            session, system, code=resource.code, name=resource.name, provider=resource.provider,
            theme=resource.theme, base_library=resource.base_library,
            sharing_type=resource.sharing, open_type=resource.open,
            legal_basis=resource.legal_basis, schema=resource.schema(),
        )  # fmt: skip
        service.publish_resource(session, system, resource.code)
    found = service.list_resources(session, system, service.Filters(q="企业登记"))
    assert [r.code for r in found] == ["amr-enterprise-registration"]


def _params(platform: Platform) -> dict[str, Any]:
    return {
        "persons": 0,
        "enterprises": 0,
        "seed": 3,
        "opendata": False,  # the open data stage has its own test (tests/opendata)
        "var_dir": str(platform.settings.var_dir),
        "lake_uri": platform.settings.lake_uri,
    }


def test_demo_job_publishes_and_loads_the_resources(platform: Platform) -> None:
    # Queued for no background runner: this test runs the job itself.
    with platform.factory(info={"jobs": jobs.Dispatcher.foreground()}) as s, s.begin():
        job_id = jobs.submit(s, Principal.system(), "demo.load", _params(platform), key="d").id
    job = jobs.run(platform.factory, job_id)
    assert job.state == JobState.SUCCEEDED, job.error
    with platform.factory() as s:
        published = s.scalars(select(Resource).where(Resource.status == ResourceStatus.PUBLISHED))
        resources = {r.code: r for r in published}
        versions = list(s.scalars(select(Version)))
    eco = {"eco-station-aqi-hourly", "eco-city-aqi-hourly", "eco-alert-steps"}
    assert set(resources) == {r.code for r in RESOURCES} | eco
    committed = [v for v in versions if v.state == "committed"]
    # The demo plants alerts on the real day, so eco-alert-steps has its version too (later
    # stages, e-licences' holders, add versions to some resources).
    assert {v.resource_id for v in committed} == {r.id for r in resources.values()}
    assert len(committed) >= len(RESOURCES) + len(eco)
    assert resources["eco-station-aqi-hourly"].row_count == 1007  # the real day
    assert sum(1 for v in committed if v.rows_rejected) >= 5
    assert all(r.lake_version is not None for c, r in resources.items() if c != "eco-alert-steps")

    steward = make_user(platform, roles=["steward"])
    client: TestClient = browser(create_app(platform))
    sign_in(client, steward.username)
    page = client.get("/catalog/police-population-basic")
    assert page.status_code == 200
    assert "police-population-basic.csv" in page.text and 'id="catalog-chart-data"' in page.text
    # The planted bad rows were refused: every field of the version is valid by the load's
    # rules, the refusals are counted per field, uniqueness is given for the key fields only.
    population = next(
        v for v in versions if v.resource_id == resources["police-population-basic"].id
    )
    figures = (population.quality or {})["fields"]
    assert population.rows_rejected and all(f["validity"] == 1.0 for f in figures.values())
    assert sum(f["rejected"] for f in figures.values()) >= population.rows_rejected
    assert {n for n, f in figures.items() if "uniqueness" in f} == {"ric"}
    assert "100.0%" in page.text
    assert "人口基础库" in client.get("/catalog").text
