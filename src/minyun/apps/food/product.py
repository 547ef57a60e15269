"""One product, one code (一品一码): a product's chain for the page its Digital Link QR opens.

The QR on a pack carries `https://<node>/01/<GTIN>/10/<lot>` (or `/21/<serial>`); the page
shows the chain built from the product's events, backward to the farm and forward to the
shops (`trace.chain_of`). Everyone may scan: the consumer view shows each stage with the
place's name, the day, the inspection outcome and the cold chain's temperature range; the
supervisor view (civil servants, `food.supervise`) shows every event in full. Each view is
an audited read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from minyun.apps.food import gs1, risk, trace
from minyun.apps.food.models import FoodEvent
from minyun.core import audit
from minyun.core.errors import NotFound
from minyun.core.security import Principal, decide

STAGES = {
    "commissioning": "production",
    "inspecting": "inspection",
    "sampling": "inspection",
    "transporting": "transport",
    "shipping": "transport",
    "receiving": "receiving",
    "retail_selling": "retail",
    "packing": "processing",
    "unpacking": "processing",
}
PASSED = ("conformant",)


@dataclass
class Stage:
    """One step of the chain as the consumer sees it."""

    kind: str  # production, processing, inspection, transport, receiving, retail
    when: datetime
    place: str | None
    step: str | None
    outcome: str | None = None  # inspection: passed / failed
    temperatures: list[float] = field(default_factory=list)


@dataclass
class ProductView:
    """A product's page: its stages, and for supervisors the events and businesses' risk."""

    product: gs1.Product
    stages: list[Stage]
    supervisor: bool
    events: list[FoodEvent]
    names: dict[str, str]
    cold_max: float = risk.COLD_MAX
    risks: list[risk.Score] = field(default_factory=list)

    @property
    def temperatures(self) -> list[float]:
        return [t for s in self.stages for t in s.temperatures]

    @property
    def cold_break(self) -> bool:
        return any(t > self.cold_max for t in self.temperatures)


def _kind(event: FoodEvent) -> str:
    if event.event_type == "TransformationEvent":
        return "processing"
    if trace.sensor_values(event):
        return "transport"
    return STAGES.get(event.biz_step or "", "other")


def _outcome(event: FoodEvent) -> str | None:
    if event.biz_step not in ("inspecting", "sampling"):
        return None
    return "passed" if event.disposition in PASSED else "failed" if event.disposition else None


def view(session: Session, actor: Principal, path: str) -> ProductView:
    """The page of the product a Digital Link path names; NotFound if no event names it."""
    product = gs1.product_of(gs1.DL_ROOT + "/" + path.strip("/"))
    if product is None:
        raise NotFound("not a GS1 Digital Link of a product", code="not-a-product")
    events = trace.chain_of(session, product.uri)
    if not events:
        raise NotFound("no traceability record for this product", code="no-product-record")
    supervisor = actor.authenticated and decide(session, actor, "food.supervise").allowed
    places = {e.biz_location or e.read_point for e in events} - {None}
    names = trace.names(session, sorted(p for p in places if p))
    stages = [
        Stage(_kind(e), e.event_time, names.get(e.biz_location or e.read_point or ""),
              e.biz_step, _outcome(e), trace.sensor_values(e))
        for e in events
    ]  # fmt: skip
    audit.record_read(
        session, actor, "food.product", target=product.uri[:200], target_type="food-product",
        keys=[e.event_id for e in events][:100], count=len(events),
        purpose="supervision" if supervisor else "consumer scan",
        detail=json.dumps({"view": "supervisor" if supervisor else "public"}),
    )  # fmt: skip
    result = ProductView(product, stages, supervisor, events if supervisor else [], names)
    if supervisor:
        orgs = {e.organization_id for e in events}
        result.risks = [s for s in risk.scores(session, actor) if s.organization_id in orgs]
    return result


def as_dict(page: ProductView) -> dict[str, Any]:
    """The product page as JSON (the API's answer): the same split of public and full."""
    out: dict[str, Any] = {
        "product": {"gtin": page.product.gtin, "lot": page.product.lot,
                    "serial": page.product.serial, "uri": page.product.uri},
        "view": "supervisor" if page.supervisor else "public",
        "cold_chain": {"max_allowed": page.cold_max, "readings": len(page.temperatures),
                       "min": min(page.temperatures, default=None),
                       "max": max(page.temperatures, default=None), "break": page.cold_break},
        "stages": [{"kind": s.kind, "day": s.when.date().isoformat(), "place": s.place,
                    "outcome": s.outcome} for s in page.stages],
    }  # fmt: skip
    if page.supervisor:
        out["events"] = [e.body for e in page.events]
        out["risk"] = [r.as_dict() for r in page.risks]
    return out
