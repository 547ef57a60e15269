"""Who configures the grid, and the routing rules and due times they keep.

Configuring (Open311 keys, routing rules, due times) is for administrators and for the
stewards of the district's grid centre (网格化服务管理中心): `grid.configure` opens it to
stewards by role, `configure` narrows it to the centre's own. Each change is one function
that writes its audit record with what changed, in the caller's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.grid import catalog, layout
from minyun.apps.grid.models import Area, GridService, RoutingRule
from minyun.core import audit
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound
from minyun.core.security import Principal, Role, authorize, decide
from minyun.orgs.models import Organization, OrgKind

ARRIVE_MAX = 7 * 24 * 60  # minutes: a week
CLOSE_MAX = 90 * 24.0  # hours: ninety days


def may_configure(session: Session, actor: Principal) -> bool:
    """Whether the actor keeps the grid's keys and rules (no audit: for showing forms)."""
    if actor.kind == "system" or actor.has_role(Role.ADMIN):
        return True
    if not decide(session, actor, "grid.configure").allowed:
        return False
    centre = _org(session, catalog.GRID_CENTRE)
    return centre is not None and actor.organization_id == centre.id


def configure(session: Session, actor: Principal, *, target: str, target_type: str) -> None:
    """Allow an administrator or a steward of the grid centre; Forbidden (audited) otherwise."""
    authorize(session, actor, "grid.configure", target=target, target_type=target_type)
    if not may_configure(session, actor):
        error = Forbidden("only the grid centre's stewards and administrators configure the grid")
        error.audit = audit.Pending(actor=actor, action="grid.configure", target=target,
                                    target_type=target_type, detail=str(error))  # fmt: skip
        raise error


@dataclass(frozen=True)
class RuleRead:
    """One rule as the page shows it."""

    id: int
    service_code: str
    service_name: str
    area_code: str
    area_name: str
    org_code: str
    org_name: str


def list_rules(session: Session, actor: Principal) -> list[RuleRead]:
    """Every routing rule, by category, then place (district first), then department."""
    authorize(session, actor, "grid.read")
    rows = session.execute(
        select(RoutingRule, GridService.name, Organization.code, Organization.name)
        .join(GridService, GridService.code == RoutingRule.service_code)
        .join(Organization, Organization.id == RoutingRule.org_id)
    ).all()  # fmt: skip
    names = area_names(session)
    found = [RuleRead(r.id, r.service_code, sname, r.area_code, names.get(r.area_code, r.area_code),
                      ocode, oname) for r, sname, ocode, oname in rows]  # fmt: skip
    return sorted(found, key=lambda r: (r.service_code, len(r.area_code), r.area_code, r.org_code))


def area_names(session: Session) -> dict[str, str]:
    """The places a rule may cover: the district, its streets and communities, by code."""
    names = {layout.DISTRICT: "鼓楼区"}
    names.update((c, n) for c, n in session.execute(select(Area.code, Area.name)))
    return names


def departments(session: Session) -> list[Organization]:
    """The departments a rule may send reports to."""
    return list(session.scalars(
        select(Organization).where(Organization.kind == OrgKind.DEPARTMENT)
        .where(Organization.division_code == layout.DISTRICT).order_by(Organization.code)
    ))  # fmt: skip


def add_rule(
    session: Session, actor: Principal, *, service_code: str, area_code: str, org_code: str
) -> RoutingRule:
    """Send a category's reports in a place (and everything inside it) to a department too."""
    configure(session, actor, target=service_code, target_type="grid-service")
    if session.get(GridService, service_code) is None:
        raise Invalid(f"unknown category {service_code}", field="service_code")
    if area_code not in area_names(session):
        raise Invalid(f"unknown place {area_code}", field="area_code")
    org = _org(session, org_code)
    if org is None or org.kind != OrgKind.DEPARTMENT:
        raise Invalid(f"unknown department {org_code}", field="org_code")
    same = select(RoutingRule.id).where(RoutingRule.service_code == service_code,
                                        RoutingRule.area_code == area_code,
                                        RoutingRule.org_id == org.id)  # fmt: skip
    if session.scalars(same).first() is not None:
        raise Conflict(f"{org_code} already receives {service_code} in {area_code}",
                       code="rule-exists")  # fmt: skip
    rule = RoutingRule(service_code=service_code, area_code=area_code, org_id=org.id)
    session.add(rule)
    session.flush()
    audit.record(session, actor, "grid.rule.add", target=str(rule.id), target_type="grid-rule",
                 detail=json.dumps({"service": service_code, "area": area_code,
                                    "department": org_code}))  # fmt: skip
    return rule


def remove_rule(session: Session, actor: Principal, rule_id: int) -> None:
    """Stop sending by this rule (reports already routed keep their tasks)."""
    configure(session, actor, target=str(rule_id), target_type="grid-rule")
    rule = session.get(RoutingRule, rule_id)
    if rule is None:
        raise NotFound(f"no rule {rule_id}", code="unknown-rule")
    org = session.get(Organization, rule.org_id)
    before = {"service": rule.service_code, "area": rule.area_code,
              "department": org.code if org else rule.org_id}  # fmt: skip
    session.delete(rule)
    audit.record(session, actor, "grid.rule.remove", target=str(rule_id), target_type="grid-rule",
                 detail=json.dumps(before))  # fmt: skip


def set_due_times(
    session: Session, actor: Principal, service_code: str, *, arrive_minutes: int,
    close_hours: float,
) -> GridService:  # fmt: skip
    """A category's SLA: arrive within N minutes, close within M hours (new tasks only)."""
    configure(session, actor, target=service_code, target_type="grid-service")
    found = session.get(GridService, service_code)
    if found is None:
        raise NotFound(f"no category {service_code}", code="unknown-service")
    if not 1 <= arrive_minutes <= ARRIVE_MAX:
        raise Invalid(f"arrive within 1 to {ARRIVE_MAX} minutes", field="arrive_minutes")
    if not 0.25 <= close_hours <= CLOSE_MAX:
        raise Invalid(f"close within 0.25 to {CLOSE_MAX:g} hours", field="close_hours")
    if arrive_minutes > close_hours * 60:
        raise Invalid("the arrival time must not be later than the close time",
                      field="arrive_minutes")  # fmt: skip
    before = {"arrive_minutes": found.arrive_minutes, "close_hours": found.close_hours}
    found.arrive_minutes, found.close_hours = arrive_minutes, close_hours
    after = {"arrive_minutes": arrive_minutes, "close_hours": close_hours}
    audit.record(session, actor, "grid.service.times", target=service_code,
                 target_type="grid-service",
                 detail=json.dumps({"fields": sorted(after), "before": before, "after": after}))  # fmt: skip
    return found


def _org(session: Session, code: str) -> Organization | None:
    return session.scalars(select(Organization).where(Organization.code == code)).first()
