"""Who runs which station, and the one rule of who may write its readings (`operates`).

A station belongs to the **environment bureau of its city**: the organisation whose division
is the station's city and whose code ends in `-eco` (福州市生态环境局 `fz-eco` runs the
stations of 350100 福州市) — the organisation its alerts are routed to. The organisation
directly above that bureau (the provincial 福建省生态环境厅 `fj-eco`) runs them too, so the
provincial department runs every station of the province. A station whose city has no bureau
on file is run by nobody but minyun itself.

Within those organisations only people with the `operator` role (监测运维员) and the
organisation's own API clients (given the `eco.ingest` scope) write readings. minyun itself
— the MQTT listener, `minyun eco ingest`, the demo — writes for every station, on behalf of
the network. Nobody else does: not a steward of another department, not an administrator.

A batch that touches a station the actor does not run is refused as a whole (`Forbidden`,
audited, nothing written, not even dead letters): a correction is all or nothing, and a
caller that mixes stations learns it at once instead of from a partial result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.ecocloud.models import Station
from minyun.core import audit
from minyun.core.errors import Forbidden
from minyun.core.security import Principal, Role
from minyun.orgs.models import Division, Organization

#: The code suffix of an environment bureau (`fz-eco`, `xm-eco`, the province's `fj-eco`).
BUREAU_SUFFIX = "-eco"
#: How many refused stations a refusal names (the rest are counted).
LISTED = 20


def operates(actor: Principal, operators: Iterable[int]) -> bool:
    """Whether the actor writes the readings of a station run by these organisations.

    minyun itself always; otherwise an `operator` of one of them, or one of their own API
    clients (whose scope was checked by `authorize`). Membership alone is not enough, and
    no other role is: a steward of the same bureau publishes resources, it does not measure.
    """
    if actor.kind == "system":
        return True
    if actor.organization_id is None or actor.organization_id not in set(operators):
        return False
    return actor.kind == "client" or (actor.kind == "user" and Role.OPERATOR in actor.roles)


def division_operators(session: Session, divisions: Iterable[str]) -> dict[str, frozenset[int]]:
    """Division code → the organisations running its stations (its bureaus and those above)."""
    wanted = sorted(set(divisions))
    if not wanted:
        return {}
    found: dict[str, set[int]] = {d: set() for d in wanted}
    for division, org_id, parent_id in session.execute(
        select(Organization.division_code, Organization.id, Organization.parent_id)
        .where(Organization.division_code.in_(wanted))
        .where(Organization.code.like(f"%{BUREAU_SUFFIX}"))
    ):
        found[division].add(org_id)
        if parent_id is not None:
            found[division].add(parent_id)
    return {d: frozenset(ids) for d, ids in found.items()}


def station_operators(session: Session, rows: pa.Table) -> list[tuple[str, frozenset[int]]]:
    """(station, organisations running it) for each station the rows would write.

    A known station by its division; one the batch would create by the city it names (as
    the station will be created). Rows that name no station, or an unknown station without a
    city, can write nothing: validation dead-letters them, so they are not asked about.
    """
    named = rows.filter(pc.is_valid(rows["station_code"]))
    codes = pc.unique(named["station_code"]).to_pylist()
    if not codes:
        return []
    known: dict[str, str | None] = {
        code: division
        for code, division in session.execute(
            select(Station.code, Station.division_code).where(Station.code.in_(codes))
        )
    }
    new = named.filter(
        pc.and_(
            pc.invert(pc.is_in(named["station_code"], pa.array(list(known), pa.string()))),
            pc.is_valid(named["city"]),
        )
    )
    pairs = new.select(["station_code", "city"]).group_by(["station_code", "city"]).aggregate([])
    cities = pairs["city"].to_pylist()
    city_divisions: dict[str, str] = {
        name: code
        for name, code in session.execute(
            select(Division.name, Division.code).where(
                Division.name.in_(set(cities)), Division.level == "city"
            )
        )
    }
    divisions = {d for d in known.values() if d} | set(city_divisions.values())
    running = division_operators(session, divisions)
    none: frozenset[int] = frozenset()
    found = [(code, running.get(d, none) if d else none) for code, d in known.items()]
    for code, city in zip(pairs["station_code"].to_pylist(), cities, strict=True):
        division = city_divisions.get(city)
        found.append((code, running.get(division, none) if division else none))
    return found


def require_operator(session: Session, actor: Principal, rows: pa.Table) -> None:
    """Refuse the whole batch if it writes a station the actor does not run (audited)."""
    if actor.kind == "system":
        return
    foreign = sorted(
        {code for code, ops in station_operators(session, rows) if not operates(actor, ops)}
    )
    if not foreign:
        return
    shown = foreign[:LISTED]
    more = len(foreign) - len(shown)
    listed = ", ".join(shown) + (f" and {more} more" if more else "")
    reason = (
        f"eco.ingest refused: {actor.label} does not run station {listed}; "
        "nothing of the batch was ingested"
    )
    error = Forbidden(reason, code="not-station-operator", stations=shown, more_stations=more)
    error.audit = audit.Pending(
        actor=actor,
        action="eco.ingest",
        target_type="eco-readings",
        outcome=audit.Outcome.DENIED,
        detail=json.dumps(
            {"reason": "not the station's operator", "stations": shown, "more": more},
            ensure_ascii=False,
        ),
    )
    raise error
