"""Only the monitoring network's operators write readings, for the stations their bureau runs.

The attacker's finding (issue 11): a market-regulation steward changed a station-hour's AQI
from 64 to 500 through `POST /api/v1/eco/readings`, and the audit record held only counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts.models import User
from minyun.accounts.service import principal_for
from minyun.apps.ecocloud import ingest, readings
from minyun.apps.ecocloud.models import DeadLetter, Reading, Station
from minyun.apps.ecocloud.operators import operates
from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden
from minyun.core.platform import Platform
from minyun.core.security import Principal, Role
from minyun.orgs.models import Organization
from minyun.web.app import create_app
from tests import factories
from tests.apps.ecocloud.conftest import make_city_eco_orgs
from tests.apps.ecocloud.test_eco_pages import client, csrf_of, signed_in
from tests.conftest import PostgresDatabases, make_settings

SYSTEM = Principal.system()
HOUR = "2022-01-04T10:00:00"  # China time, as CNEMC writes it
FUZHOU, FUZHOU_2, XIAMEN = "1282A", "1283A", "1286A"
# PM2.5 500 µg/m³: AQI 500, the attacker's value.
FORGED = {"pm10": 76, "pm2_5": 500, "o3": 8, "no2": 76, "so2": 3, "co": 1.0}


def hour_rows(day_rows: pa.Table) -> pa.Table:
    """The real 10:00 of every station (42 rows): enough to have stations and readings."""
    return day_rows.filter(pc.equal(day_rows["hour"], HOUR))


def forged(*stations: str, **values: object) -> pa.Table:
    return pa.Table.from_pylist(
        [{"station_code": s, "hour": HOUR, **FORGED, **values} for s in stations]
    )


def held(session: Session, station: str) -> tuple[int | None, float | None]:
    found = session.execute(
        select(Reading.aqi, Reading.pm2_5).where(
            Reading.station_code == station, Reading.hour == readings.parse_hour(HOUR)
        )
    ).one()
    return found[0], found[1]


def person(session: Session, org: Organization, *roles: str) -> Principal:
    return principal_for(factories.make_user(session, roles=list(roles), organization=org))


@pytest.fixture
def orgs(session: Session, day_rows: pa.Table) -> dict[str, Organization]:
    """Fuzhou's and Xiamen's bureaus under the province's department, a market regulator,
    and the real 10:00 ingested by the network."""
    found = make_city_eco_orgs(session)
    found["fz-amr"] = factories.make_org(session, code="fz-amr", division_code="350100")
    ingest.ingest_readings(session, SYSTEM, hour_rows(day_rows))
    return found


def test_a_market_regulation_steward_is_refused_and_the_reading_is_unchanged(
    session: Session, orgs: dict[str, Organization]
) -> None:
    before = held(session, FUZHOU)
    steward = person(session, orgs["fz-amr"], Role.STEWARD)
    with pytest.raises(Forbidden):
        ingest.ingest_readings(session, steward, forged(FUZHOU))
    assert held(session, FUZHOU) == before and before[0] != 500


def test_the_fuzhou_operator_writes_fuzhou_stations_but_not_xiamen_ones(
    session: Session, orgs: dict[str, Organization]
) -> None:
    operator = person(session, orgs["fz-eco"], Role.OPERATOR)
    report = ingest.ingest_readings(session, operator, forged(FUZHOU))
    assert report.updated == 1 and held(session, FUZHOU) == (500, 500.0)

    fuzhou_2, xiamen = held(session, FUZHOU_2), held(session, XIAMEN)
    # One foreign row refuses the whole batch: the Fuzhou row is not written either.
    with pytest.raises(Forbidden) as refused:
        ingest.ingest_readings(session, operator, forged(FUZHOU_2, XIAMEN))
    assert refused.value.code == "not-station-operator"
    assert refused.value.extra["stations"] == [XIAMEN]
    assert refused.value.audit is not None and XIAMEN in refused.value.audit.detail
    assert held(session, FUZHOU_2) == fuzhou_2 and held(session, XIAMEN) == xiamen


def test_the_provincial_department_runs_every_station(
    session: Session, orgs: dict[str, Organization]
) -> None:
    operator = person(session, orgs["fj-eco"], Role.OPERATOR)
    report = ingest.ingest_readings(session, operator, forged(FUZHOU, XIAMEN))
    assert report.updated == 2 and held(session, XIAMEN) == (500, 500.0)


@pytest.mark.parametrize("roles", [[Role.STEWARD], [Role.CONSUMER], [Role.ADMIN]])
def test_no_other_role_of_the_bureau_ingests(
    session: Session, orgs: dict[str, Organization], roles: list[str]
) -> None:
    before = held(session, FUZHOU)
    with pytest.raises(Forbidden):
        ingest.ingest_readings(session, person(session, orgs["fz-eco"], *roles), forged(FUZHOU))
    assert held(session, FUZHOU) == before


def test_an_operator_creates_stations_only_in_its_own_city(
    session: Session, orgs: dict[str, Organization]
) -> None:
    operator = person(session, orgs["fz-eco"], Role.OPERATOR)
    site = {"name": "新站", "longitude": 118.1, "latitude": 24.5}
    with pytest.raises(Forbidden):
        ingest.ingest_readings(session, operator, forged("9001A", city="厦门市", **site))
    assert session.get(Station, "9001A") is None
    report = ingest.ingest_readings(session, operator, forged("9002A", city="福州市", **site))
    assert report.stations_added == 1 and report.inserted == 1
    # An unknown station without metadata writes nothing: a dead letter, not a refusal.
    assert ingest.ingest_readings(session, operator, forged("9003A")).refused == 1


def test_a_correction_is_audited_with_its_old_and_new_values(
    session: Session, orgs: dict[str, Organization]
) -> None:
    aqi, pm2_5 = held(session, FUZHOU)
    operator = person(session, orgs["fz-eco"], Role.OPERATOR)
    ingest.ingest_readings(session, operator, forged(FUZHOU))
    record = session.scalars(
        select(AuditRecord)
        .where(AuditRecord.action == "eco.ingest", AuditRecord.actor == operator.label)
        .order_by(AuditRecord.seq.desc())
    ).first()
    assert record is not None and record.detail is not None
    detail = json.loads(record.detail)
    assert detail["changes_more"] == 0
    (change,) = detail["changes"]
    assert change["station"] == FUZHOU and change["hour"] == "2022-01-04T02:00:00+00:00"
    assert (change["before"]["aqi"], change["before"]["pm2_5"]) == (aqi, pm2_5)
    assert change["after"] == {**FORGED, "aqi": 500}


def test_the_audit_lists_a_bounded_number_of_changes_and_counts_the_rest(
    session: Session, orgs: dict[str, Organization], day_rows: pa.Table
) -> None:
    rows = hour_rows(day_rows)
    raised = rows.set_column(
        rows.column_names.index("pm2_5"), "pm2_5", pa.array(["180"] * rows.num_rows)
    )
    report = ingest.ingest_readings(session, SYSTEM, raised)
    assert report.updated > ingest.AUDITED_CHANGES
    record = session.scalars(
        select(AuditRecord)
        .where(AuditRecord.action == "eco.ingest")
        .order_by(AuditRecord.seq.desc())
    ).first()
    assert record is not None and record.detail is not None
    detail = json.loads(record.detail)
    assert len(detail["changes"]) == ingest.AUDITED_CHANGES
    assert detail["changes_more"] == report.updated - ingest.AUDITED_CHANGES
    assert all(c["after"]["pm2_5"] == 180 for c in detail["changes"])


def test_who_operates() -> None:
    bureau = frozenset({7, 1})  # the bureau and the department above it
    operator = Principal(kind="user", name="a", organization_id=7, roles=frozenset({"operator"}))
    assert operates(operator, bureau)
    assert not operates(operator, frozenset({8, 1}))
    assert not operates(operator, frozenset())  # a station no bureau runs
    steward = Principal(kind="user", name="b", organization_id=7, roles=frozenset({"steward"}))
    assert not operates(steward, bureau)
    assert operates(Principal(kind="client", name="c", organization_id=7), bureau)
    assert not operates(Principal(kind="client", name="d", organization_id=9), bureau)
    assert operates(Principal.system(on_behalf_of="mqtt"), frozenset())
    assert not operates(Principal.anonymous(), bureau)


# --- through the API, on SQLite and PostgreSQL -------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest, tmp_path: Path, day_rows: pa.Table) -> Iterator[Platform]:
    overrides: dict[str, object] = {}
    if request.param == "postgresql":
        databases: PostgresDatabases = request.getfixturevalue("pg_databases")
        overrides["database_url"] = databases.create()
    platform = Platform.open(make_settings(tmp_path / "var", **overrides))
    platform.migrate()
    with platform.factory.begin() as session:
        make_city_eco_orgs(session)
        factories.make_org(session, code="fz-amr", division_code="350100")
        ingest.ingest_readings(session, SYSTEM, hour_rows(day_rows))
    yield platform
    platform.close()


@pytest.fixture
def app(node: Platform) -> FastAPI:
    return create_app(node)


def user_of(node: Platform, org_code: str, *roles: str) -> User:
    with node.factory.begin() as session:
        org = session.scalars(select(Organization).where(Organization.code == org_code)).one()
        return factories.make_user(session, roles=list(roles), organization=org)


def post_readings(app: FastAPI, user: User, stations: list[str]) -> tuple[int, dict[str, Any]]:
    browser = signed_in(app, user)
    api = client(app, html=False)
    api.cookies = browser.cookies
    answer = api.post(
        "/api/v1/eco/readings",
        headers={"X-CSRF-Token": csrf_of(browser.get("/"))},
        json=[{"station": s, "hour": HOUR + "+08:00", **FORGED} for s in stations],
    )
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/problem+json"
    return answer.status_code, answer.json()


def state(node: Platform, *stations: str) -> dict[str, object]:
    with node.factory() as session:
        return {
            "readings": {s: held(session, s) for s in stations},
            "dead_letters": len(session.scalars(select(DeadLetter.id)).all()),
        }


def denials(node: Platform, user: User) -> list[AuditRecord]:
    with node.factory() as session:
        return list(
            session.scalars(
                select(AuditRecord).where(
                    AuditRecord.action == "eco.ingest",
                    AuditRecord.actor == f"user:{user.username}",
                    AuditRecord.outcome == "denied",
                )
            )
        )


def test_the_api_refuses_a_market_regulation_steward(node: Platform, app: FastAPI) -> None:
    steward = user_of(node, "fz-amr", Role.STEWARD)
    before = state(node, FUZHOU)
    status, problem = post_readings(app, steward, [FUZHOU])
    assert status == 403 and problem["status"] == 403
    assert state(node, FUZHOU) == before
    assert len(denials(node, steward)) == 1


def test_the_api_lets_the_fuzhou_operator_write_fuzhou_but_not_xiamen(
    node: Platform, app: FastAPI
) -> None:
    operator = user_of(node, "fz-eco", Role.OPERATOR, Role.CONSUMER)
    status, body = post_readings(app, operator, [FUZHOU])
    assert status == 200 and body["updated"] == 1
    before = state(node, FUZHOU_2, XIAMEN)
    status, problem = post_readings(app, operator, [FUZHOU_2, XIAMEN])
    assert status == 403 and problem["type"] == "/problems/not-station-operator"
    assert problem["stations"] == [XIAMEN] and XIAMEN in problem["detail"]
    assert state(node, FUZHOU_2, XIAMEN) == before  # nothing written, not even dead letters
    (denied,) = denials(node, operator)
    assert denied.detail is not None and json.loads(denied.detail)["stations"] == [XIAMEN]


def test_the_bureaus_api_client_writes_its_stations(node: Platform, app: FastAPI) -> None:
    with node.factory() as session:
        org_id = session.scalars(select(Organization.id).where(Organization.code == "fz-eco")).one()
    http = client(app, html=False)
    _, headers = factories.api_client_token(http, node, org_id, ["eco.ingest"])
    rows = [{"station": s, "hour": HOUR + "+08:00", **FORGED} for s in (FUZHOU,)]
    answer = http.post("/api/v1/eco/readings", headers=headers, json=rows)
    assert answer.status_code == 200 and answer.json()["updated"] == 1
    xiamen = [{"station": XIAMEN, "hour": HOUR + "+08:00", **FORGED}]
    assert http.post("/api/v1/eco/readings", headers=headers, json=xiamen).status_code == 403


def test_the_demo_officers_ingest_for_their_city(
    session: Session, day_rows: pa.Table, tmp_path: Path
) -> None:
    from minyun.accounts.service import set_roles
    from minyun.demo import province

    province.load_departments(session)
    demo = {a.username: a for a in province.load_accounts(session, tmp_path)}
    assert demo["eco-fuzhou"].roles == ["consumer", "operator"]
    officer = session.scalars(select(User).where(User.username == "eco-fuzhou")).one()
    # A demo made before the operator role: loading the accounts again brings it up to date.
    set_roles(session, SYSTEM, officer.id, ["steward", "consumer"])
    again = {a.username: a for a in province.load_accounts(session, tmp_path)}
    assert again["eco-fuzhou"].password == demo["eco-fuzhou"].password
    session.refresh(officer)
    assert sorted(officer.roles) == ["consumer", "operator"]
    ingest.ingest_readings(session, SYSTEM, hour_rows(day_rows))
    duty = principal_for(officer)
    assert ingest.ingest_readings(session, duty, forged(FUZHOU)).updated == 1
    with pytest.raises(Forbidden):
        ingest.ingest_readings(session, duty, forged(XIAMEN))
