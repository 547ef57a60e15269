"""Risk-based supervision: a score per business from its events, explained per factor.

A business is the organisation whose system captured the events (its API client's
organisation; a pull source's). Each factor is one aggregate SQL query over the event
index, grouped by business, so the whole province is scored in a handful of queries:

| factor | evidence | points |
|---|---|---|
| cold_chain | sensor reports with a temperature above `COLD_MAX` °C | 10 per event, at most 30 |
| failed_inspections | inspecting events whose disposition says the goods failed | 15 each, at most 30 |
| recalls | events that put goods in the `recalled` disposition | 10 each, at most 20 |
| error_declarations | events the business later declared erroneous | 5 each, at most 15 |
| chain_gaps | shipments none of whose goods was ever received afterwards | 5 each, at most 15 |

The score is the sum (0–100); 50 and more is high, 20 and more medium. The inspection
worklist is the businesses at medium or high, highest first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from minyun.apps.food import query as q
from minyun.apps.food.models import FoodEvent, FoodEventTerm
from minyun.core import audit
from minyun.core.security import Principal, authorize
from minyun.orgs.models import Organization

COLD_MAX = 8.0
FAILED = ("non_conformant", "damaged", "expired", "destroyed", "nonconformant")
FACTORS: dict[str, tuple[int, int]] = {  # points per piece of evidence, cap
    "cold_chain": (10, 30),
    "failed_inspections": (15, 30),
    "recalls": (10, 20),
    "error_declarations": (5, 15),
    "chain_gaps": (5, 15),
}
HIGH, MEDIUM = 50, 20


@dataclass
class Factor:
    name: str
    evidence: int
    points: int


@dataclass
class Score:
    """One business's risk score and why."""

    organization_id: int | None
    name: str
    events: int
    factors: list[Factor] = field(default_factory=list)

    @property
    def score(self) -> int:
        return min(100, sum(f.points for f in self.factors))

    @property
    def level(self) -> str:
        return "high" if self.score >= HIGH else "medium" if self.score >= MEDIUM else "low"

    def as_dict(self) -> dict[str, Any]:
        return {
            "organization_id": self.organization_id, "name": self.name, "events": self.events,
            "score": self.score, "level": self.level,
            "factors": [{"name": f.name, "evidence": f.evidence, "points": f.points}
                        for f in self.factors],
        }  # fmt: skip


def _counts(session: Session, stmt: Any) -> dict[int | None, int]:
    return {org: int(n) for org, n in session.execute(stmt)}


def _by_org(*conditions: Any, distinct: bool = False) -> Any:
    counted = func.count(FoodEvent.id.distinct()) if distinct else func.count(FoodEvent.id)
    stmt = select(FoodEvent.organization_id, counted)
    return stmt.where(*conditions).group_by(FoodEvent.organization_id)


def _evidence(session: Session) -> dict[str, dict[int | None, int]]:
    hot = exists(select(FoodEventTerm.id).where(
        FoodEventTerm.event_pk == FoodEvent.id, FoodEventTerm.kind == "value:Temperature",
        FoodEventTerm.number > COLD_MAX))  # fmt: skip
    recalled = exists(select(FoodEventTerm.id).where(
        FoodEventTerm.event_pk == FoodEvent.id,
        FoodEventTerm.kind == "persistentDisposition:set", FoodEventTerm.value == "recalled"))  # fmt: skip
    return {
        "cold_chain": _counts(session, _by_org(hot)),
        "failed_inspections": _counts(
            session, _by_org(FoodEvent.biz_step == "inspecting", FoodEvent.disposition.in_(FAILED))
        ),
        "recalls": _counts(session, _by_org((FoodEvent.disposition == "recalled") | recalled)),
        "error_declarations": _counts(session, _by_org(FoodEvent.error_time.is_not(None))),
        "chain_gaps": _counts(session, _gaps()),
    }


def _gaps() -> Any:
    """Shipping events none of whose goods appears in a later receiving event."""
    shipped, received, later = aliased(FoodEventTerm), aliased(FoodEventTerm), aliased(FoodEvent)
    any_received = exists(
        select(received.id).join(later, later.id == received.event_pk).where(
            received.kind.in_(q.ALL_IDS), received.value == shipped.value,
            later.biz_step == "receiving", later.event_time >= FoodEvent.event_time)
    )  # fmt: skip
    some_received = exists(
        select(shipped.id).where(
            shipped.event_pk == FoodEvent.id, shipped.kind.in_(q.ALL_IDS), any_received
        )
    )
    return _by_org(and_(FoodEvent.biz_step == "shipping", ~some_received), distinct=True)


def scores(session: Session, actor: Principal, *, purpose: str = "supervision") -> list[Score]:
    """Every business's risk score, highest first, each factor with its evidence."""
    authorize(session, actor, "food.supervise", target="risk", target_type="food-risk")
    totals = _counts(session, _by_org())
    evidence = _evidence(session)
    names = dict(session.execute(
        select(Organization.id, Organization.name).where(Organization.id.in_(
            [o for o in totals if o is not None]))).all())  # fmt: skip
    result = []
    for org, events in totals.items():
        score = Score(
            org, names.get(org, "（未登记的来源）") if org else "（未登记的来源）", events
        )
        for name, (each, cap) in FACTORS.items():
            found = evidence[name].get(org, 0)
            if found:
                score.factors.append(Factor(name, found, min(cap, each * found)))
        result.append(score)
    result.sort(key=lambda s: (-s.score, s.name))
    audit.record_read(
        session, actor, "food.risk", target="risk", target_type="food-risk",
        count=len(result), purpose=purpose,
        detail=json.dumps({"businesses": len(result)}),
    )  # fmt: skip
    return result


def worklist(session: Session, actor: Principal) -> list[Score]:
    """The businesses to inspect: medium or high risk, highest first."""
    return [s for s in scores(session, actor, purpose="inspection worklist") if s.score >= MEDIUM]
