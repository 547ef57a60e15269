"""The joint response to an alert: routing, consultation, response level, actions, closing.

Each step is one function that checks the actor, changes the alert, appends an `AlertStep`
and writes its audit record in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.apps.ecocloud.models import Alert, AlertState, AlertStep, Reading, StepKind
from minyun.core import audit, clock
from minyun.core.errors import Conflict, Invalid, NotFound
from minyun.core.security import Principal, Role, authorize
from minyun.orgs.models import Division, Organization


class ResponseLevel(StrEnum):
    """Response levels of the joint response, mildest first (重污染天气应急预案 IV–I)."""

    LIGHT = "light"  # 轻度污染响应
    BLUE = "blue"  # 蓝色预警 IV级
    YELLOW = "yellow"  # 黄色预警 III级
    ORANGE = "orange"  # 橙色预警 II级
    RED = "red"  # 红色预警 I级


RESPONSE_NAMES = {
    ResponseLevel.LIGHT: "轻度污染响应",
    ResponseLevel.BLUE: "蓝色预警（IV级）",
    ResponseLevel.YELLOW: "黄色预警（III级）",
    ResponseLevel.ORANGE: "橙色预警（II级）",
    ResponseLevel.RED: "红色预警（I级）",
}


def suggested_level(peak_aqi: int) -> ResponseLevel:
    """The level a peak AQI suggests: ≤150 light, ≤200 blue, ≤300 yellow, ≤400 orange, else red."""
    for top, level in ((150, "light"), (200, "blue"), (300, "yellow"), (400, "orange")):
        if peak_aqi <= top:
            return ResponseLevel(level)
    return ResponseLevel.RED


def route_alert(session: Session, actor: Principal, alert: Alert, cities: Sequence[str]) -> None:
    """Send the alert to the environment department (`*-eco`) of each city."""
    orgs = session.execute(
        select(Division.name, Organization.code)
        .join(Organization, Organization.division_code == Division.code)
        .where(Division.name.in_(cities), Division.level == "city")
        .where(Organization.code.like("%-eco"))
        .order_by(Organization.code)
    ).all()
    by_city = {name: code for name, code in orgs}
    for city in cities:
        code = by_city.get(city)
        if code is None:
            note = f"{city}: no environment department on file; left to the province"
        else:
            note = f"{city} → {code}"
            alert.org_codes = sorted({*alert.org_codes, code})
        add_step(session, actor, alert, StepKind.ROUTED, note, org=code, action="eco.alert.route")


def add_step(
    session: Session,
    actor: Principal,
    alert: Alert,
    kind: StepKind,
    note: str,
    *,
    action: str,
    org: str | None = None,
) -> AlertStep:
    step = AlertStep(
        kind=kind,
        actor=actor.label,
        organization_code=org,
        note=note,
        at=clock.now(),
    )
    alert.steps.append(step)
    session.flush()
    audit.record(
        session, actor, action, target=str(alert.id), target_type="eco-alert", detail=note[:500]
    )
    return step


def may_see(session: Session, actor: Principal, alert: Alert) -> bool:
    """Admins, the departments the alert was routed to, and the departments over them."""
    if actor.kind == "system" or actor.has_role(Role.ADMIN):
        return True
    if actor.organization_id is None or not alert.org_codes:
        return False
    routed = session.execute(
        select(Organization.id, Organization.parent_id).where(
            Organization.code.in_(alert.org_codes)
        )
    ).all()
    return any(actor.organization_id in (org_id, parent_id) for org_id, parent_id in routed)


def access_alert(session: Session, actor: Principal, alert_id: int) -> Alert:
    """The alert if the actor's department was sent it (or oversees one that was); else NotFound."""
    authorize(session, actor, "eco.read", target=str(alert_id), target_type="eco-alert")
    alert = session.get(Alert, alert_id)
    # Same error for missing and not yours: other cities' alerts are not listed to you.
    if alert is None or not may_see(session, actor, alert):
        raise NotFound(f"no alert {alert_id}")
    return alert


def list_alerts(
    session: Session, actor: Principal, *, state: str | None = None, limit: int = 100
) -> list[Alert]:
    """The actor's alert inbox, newest first."""
    authorize(session, actor, "eco.read", target_type="eco-alert")
    query = select(Alert).order_by(Alert.detected_at.desc(), Alert.id.desc()).limit(limit * 5)
    if state is not None:
        query = query.where(Alert.state == state)
    return [a for a in session.scalars(query) if may_see(session, actor, a)][:limit]


def _respond(session: Session, actor: Principal, alert_id: int) -> Alert:
    authorize(session, actor, "eco.respond", target=str(alert_id), target_type="eco-alert")
    return access_alert(session, actor, alert_id)


def _require(alert: Alert, *states: AlertState) -> None:
    if alert.state not in states:
        wanted = " or ".join(states)
        raise Conflict(f"alert {alert.id} is {alert.state}; this step needs it {wanted}")


def start_consultation(
    session: Session, actor: Principal, alert_id: int, *, departments: Sequence[str], note: str
) -> Alert:
    """Open a consultation (会商) of the alert with other departments."""
    alert = _respond(session, actor, alert_id)
    _require(alert, AlertState.OPEN)
    codes = sorted(set(departments))
    if not codes:
        raise Invalid("a consultation needs at least one department", field="departments")
    found = set(session.scalars(select(Organization.code).where(Organization.code.in_(codes))))
    unknown = [c for c in codes if c not in found]
    if unknown:
        raise Invalid(f"unknown departments: {', '.join(unknown)}", field="departments")
    alert.state = AlertState.CONSULTING
    text = f"会商 with {', '.join(codes)}" + (f": {note}" if note else "")
    add_step(session, actor, alert, StepKind.CONSULTATION, text, action="eco.alert.consult")
    return alert


def set_response_level(
    session: Session, actor: Principal, alert_id: int, *, level: ResponseLevel | str, note: str = ""
) -> Alert:
    """Choose (or change) the response level; the first choice is the response time."""
    alert = _respond(session, actor, alert_id)
    _require(alert, AlertState.CONSULTING, AlertState.RESPONDING)
    try:
        chosen = ResponseLevel(level)
    except ValueError:
        raise Invalid(f"unknown response level {level!r}", field="level") from None
    alert.state = AlertState.RESPONDING
    alert.response_level = chosen
    if alert.responded_at is None:
        alert.responded_at = clock.now()
    text = RESPONSE_NAMES[chosen] + (f": {note}" if note else "")
    add_step(session, actor, alert, StepKind.LEVEL, text, action="eco.alert.level")
    return alert


def record_action(session: Session, actor: Principal, alert_id: int, *, note: str) -> Alert:
    """Record an action taken under the response (e.g. 工地停工, 道路洒水)."""
    alert = _respond(session, actor, alert_id)
    _require(alert, AlertState.RESPONDING)
    if not note.strip():
        raise Invalid("say what was done", field="note")
    add_step(session, actor, alert, StepKind.ACTION, note.strip(), action="eco.alert.action")
    return alert


def readings_back_under(session: Session, alert: Alert) -> tuple[bool, str]:
    """Whether every station of the alert reads at or under its threshold in the latest hour."""
    latest = session.scalar(
        select(func.max(Reading.hour)).where(Reading.station_code.in_(alert.stations))
    )
    if latest is None:
        return False, "no readings"
    above = session.execute(
        select(Reading.station_code, Reading.aqi)
        .where(Reading.station_code.in_(alert.stations), Reading.hour == latest)
        .where(Reading.aqi > alert.threshold)
        .order_by(Reading.station_code)
    ).all()
    if above:
        listed = ", ".join(f"{code} AQI {aqi}" for code, aqi in above)
        return False, f"still above {alert.threshold} at {latest.isoformat()}: {listed}"
    return (
        True,
        f"all {len(alert.stations)} stations at or under {alert.threshold} at {latest.isoformat()}",
    )


def close_alert(session: Session, actor: Principal, alert_id: int, *, note: str = "") -> Alert:
    """Close the response, allowed once the readings are back under the threshold."""
    alert = _respond(session, actor, alert_id)
    _require(alert, AlertState.RESPONDING)
    ok, why = readings_back_under(session, alert)
    if not ok:
        raise Conflict(f"cannot close alert {alert.id}: {why}")
    alert.state = AlertState.CLOSED
    alert.closed_at = clock.now()
    text = why + (f"; {note}" if note else "")
    add_step(session, actor, alert, StepKind.CLOSED, text, action="eco.alert.close")
    return alert
