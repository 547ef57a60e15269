"""Recall tracing over the event index, and a product's chain for its Digital Link page.

Forward (where did it go?): from a lot or an object, follow it into what it became —
outputs of a TransformationEvent that consumed it, the parent (pallet, case) an
AggregationEvent packed it into — and collect every event naming any of them: shipping,
receiving, selling, at which sites. Backward (where did it come from?): from a lot, follow
it to what it was made of — the inputs of the TransformationEvent that produced it, the
children a parent was packed with — down to the commissioning events at the farms.

Each hop is one indexed query (`food_event_terms` by value), breadth first, so a trace
takes as many queries as the chain is long, not one per object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.food import gs1
from minyun.apps.food import query as q
from minyun.apps.food.models import FoodEvent, FoodEventTerm, FoodName
from minyun.core import audit
from minyun.core.errors import Invalid
from minyun.core.security import Principal, authorize

MAX_HOPS = 50
MAX_IDS = 20_000
RETAIL_STEPS = {"retail_selling", "receiving", "dispensing"}


@dataclass
class Site:
    """A place the traced goods passed: what happened there and when."""

    location: str
    name: str | None
    steps: list[str] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class Trace:
    """The result of a trace: the identifiers reached, their events, the sites."""

    start: str
    direction: str
    ids: set[str]
    events: list[FoodEvent]
    sites: dict[str, Site]
    hops: int

    @property
    def retailers(self) -> list[str]:
        """Sites that received, sold or dispensed the goods and shipped none of them on."""
        return sorted(
            s.location for s in self.sites.values()
            if RETAIL_STEPS & set(s.steps) and "shipping" not in s.steps
        )  # fmt: skip

    @property
    def origins(self) -> list[str]:
        """Sites where the goods (or what they were made of) were commissioned."""
        return sorted(s.location for s in self.sites.values() if "commissioning" in s.steps
                      and not self._transformed_at(s.location))  # fmt: skip

    def _transformed_at(self, location: str) -> bool:
        return any(e.event_type == "TransformationEvent" and e.biz_location == location
                   for e in self.events)  # fmt: skip


def trace(
    session: Session, actor: Principal, start: str, *, direction: str, purpose: str = "recall"
) -> Trace:
    """Trace a lot or object forward (to every place it went) or backward (to its origins)."""
    authorize(session, actor, "food.supervise", target=start, target_type="food-trace")
    if direction not in ("forward", "backward"):
        raise Invalid("direction: forward or backward", field="direction")
    root = gs1.canonical(start)
    ids, events, hops = _walk(session, root, direction)
    result = Trace(root, direction, ids, events, _sites(session, events), hops)
    audit.record_read(
        session, actor, "food.trace", target=root[:200], target_type="food-trace",
        keys=[e.event_id for e in events][:100], count=len(events), purpose=purpose,
        detail=json.dumps({"direction": direction, "ids": len(ids), "hops": hops}),
    )  # fmt: skip
    return result


def _walk(session: Session, root: str, direction: str) -> tuple[set[str], list[FoodEvent], int]:
    ids, frontier = {root}, {root}
    seen: dict[int, FoodEvent] = {}
    hops = 0
    while frontier and hops < MAX_HOPS and len(ids) < MAX_IDS:
        hops += 1
        found = _events_naming(session, frontier)
        new: set[str] = set()
        for event, terms in found:
            seen[event.id] = event
            new |= _next_ids(event, terms, frontier, direction)
        frontier = new - ids
        ids |= frontier
    return ids, sorted(seen.values(), key=lambda e: (e.event_time, e.id)), hops


def _events_naming(
    session: Session, values: Iterable[str]
) -> list[tuple[FoodEvent, list[tuple[str, str]]]]:
    chosen = list(values)
    pks: set[int] = set()
    for i in range(0, len(chosen), 500):
        pks |= set(session.scalars(
            select(FoodEventTerm.event_pk).where(
                FoodEventTerm.kind.in_(q.ALL_IDS), FoodEventTerm.value.in_(chosen[i : i + 500]))
        ))  # fmt: skip
    if not pks:
        return []
    events = {e.id: e for e in session.scalars(select(FoodEvent).where(FoodEvent.id.in_(pks)))}
    terms: dict[int, list[tuple[str, str]]] = {pk: [] for pk in events}
    rows = session.execute(
        select(FoodEventTerm.event_pk, FoodEventTerm.kind, FoodEventTerm.value).where(
            FoodEventTerm.event_pk.in_(pks), FoodEventTerm.kind.in_(q.ALL_IDS))
    )  # fmt: skip
    for pk, kind, value in rows:
        terms[pk].append((kind, value))
    return [(events[pk], terms[pk]) for pk in sorted(events)]


_INPUTS = {"inputEPC", "inputEPCClass"}
_OUTPUTS = {"outputEPC", "outputEPCClass"}
_CHILDREN = {"childEPC", "childEPCClass"}


def _next_ids(
    event: FoodEvent, terms: list[tuple[str, str]], frontier: set[str], direction: str
) -> set[str]:
    roles: dict[str, set[str]] = {}
    for kind, value in terms:
        roles.setdefault(kind, set()).add(value)
    here = {v for vs in roles.values() for v in vs} & frontier
    mine = {k for k, vs in roles.items() if vs & here}
    out: set[str] = set()

    def pick(kinds: set[str]) -> set[str]:
        return {v for k in kinds for v in roles.get(k, ())}

    if event.event_type == "TransformationEvent":
        if direction == "forward" and mine & _INPUTS:
            out |= pick(_OUTPUTS)
        if direction == "backward" and mine & _OUTPUTS:
            out |= pick(_INPUTS)
    if event.event_type == "AggregationEvent" and event.action in ("ADD", "OBSERVE"):
        if direction == "forward" and mine & _CHILDREN:
            out |= roles.get("parentID", set())
        if direction == "backward" and "parentID" in mine:
            out |= pick(_CHILDREN)
    return out


def _sites(session: Session, events: list[FoodEvent]) -> dict[str, Site]:
    sites: dict[str, Site] = {}
    for event in events:
        where = event.biz_location or event.read_point
        if where is None:
            continue
        site = sites.setdefault(where, Site(where, None))
        if event.biz_step and event.biz_step not in site.steps:
            site.steps.append(event.biz_step)
        site.first = site.first or event.event_time
        site.last = event.event_time
    for uri, name in names(session, list(sites)).items():
        sites[uri].name = name
    return sites


def names(session: Session, uris: list[str]) -> dict[str, str]:
    """The master-data names of locations and parties, where a document gave them."""
    if not uris:
        return {}
    rows = session.execute(select(FoodName.uri, FoodName.name).where(FoodName.uri.in_(uris)))
    return {uri: name for uri, name in rows}


def chain_of(session: Session, product_uri: str) -> list[FoodEvent]:
    """Every event of a product's chain: backward to its origins, then forward to its
    retailers, in time order (no audit: the caller audits the page that shows it)."""
    root = gs1.canonical(product_uri)
    _, back, _ = _walk(session, root, "backward")
    _, forth, _ = _walk(session, root, "forward")
    merged = {e.id: e for e in [*back, *forth]}
    return sorted(merged.values(), key=lambda e: (e.event_time, e.id))


def sensor_values(event: FoodEvent, kind: str = "Temperature") -> list[float]:
    """The values of one measurement type in an event's sensor reports."""
    values: list[float] = []
    for element in event.body.get("sensorElementList") or []:
        for report in element.get("sensorReport") or []:
            if report.get("type") == kind and report.get("value") is not None:
                values.append(float(report["value"]))
    return values


def as_dict(result: Trace) -> dict[str, Any]:
    """A trace as JSON (the API's answer)."""
    return {
        "start": result.start, "direction": result.direction, "hops": result.hops,
        "identifiers": sorted(result.ids), "retailers": result.retailers,
        "origins": result.origins,
        "sites": [{"location": s.location, "name": s.name, "steps": s.steps,
                   "first": s.first.isoformat() if s.first else None,
                   "last": s.last.isoformat() if s.last else None}
                  for s in result.sites.values()],
        "events": [e.event_id for e in result.events],
    }  # fmt: skip
