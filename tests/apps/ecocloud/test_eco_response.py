"""Joint response (联防联控): consultation, level, actions, close; each step timed and audited."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts.service import principal_for
from minyun.apps.ecocloud import ingest, response
from minyun.apps.ecocloud.models import Alert
from minyun.core.audit import AuditRecord
from minyun.core.errors import Conflict, Forbidden, Invalid, NotFound
from minyun.core.security import Principal, Role
from tests import factories
from tests.apps.ecocloud.conftest import make_city_eco_orgs

SYSTEM = Principal.system()


def until(rows: pa.Table, last_hour: int) -> pa.Table:
    stamps = [f"2022-01-04T{h:02d}:00:00" for h in range(last_hour + 1)]
    return rows.filter(pc.is_in(rows["hour"], pa.array(stamps)))


def opened_alert(session: Session, rows: pa.Table) -> tuple[Alert, dict[str, Principal]]:
    orgs = make_city_eco_orgs(session)
    report = ingest.ingest_readings(session, SYSTEM, rows)
    alert = session.get(Alert, report.alerts_opened[0])
    assert alert is not None
    staff = {
        code: principal_for(
            factories.make_user(session, roles=[Role.STEWARD], organization=orgs[code])
        )
        for code in ("fz-eco", "xm-eco", "fj-eco")
    }
    return alert, staff


def test_staff_run_the_joint_response_to_its_end(session: Session, episode_rows: pa.Table) -> None:
    alert, staff = opened_alert(session, episode_rows)
    fuzhou = staff["fz-eco"]
    transport = factories.make_org(session, code="fz-transport")
    response.start_consultation(
        session, fuzhou, alert.id, departments=["xm-eco", "fz-transport"], note="视频会商"
    )
    assert alert.state == "consulting"
    response.set_response_level(session, fuzhou, alert.id, level="light", note="启动轻度污染响应")
    assert alert.state == "responding" and alert.response_level == "light"
    assert alert.seconds_to_response is not None and alert.seconds_to_response >= 0
    response.record_action(session, staff["xm-eco"], alert.id, note="工地停工，道路洒水")
    response.close_alert(session, fuzhou, alert.id, note="解除")
    assert alert.state == "closed" and alert.closed_at is not None
    kinds = [s.kind for s in alert.steps]
    assert kinds[-4:] == ["consultation", "level", "action", "closed"]
    assert [s.at for s in alert.steps] == sorted(s.at for s in alert.steps)
    assert alert.steps[-1].note.startswith("all ")
    assert transport.code in alert.steps[-4].note
    actions = session.scalars(
        select(AuditRecord.action)
        .where(AuditRecord.object_type == "eco-alert", AuditRecord.object_id == str(alert.id))
        .order_by(AuditRecord.seq)
    ).all()
    assert actions == [
        "eco.alert.open",
        "eco.alert.route",
        "eco.alert.route",
        "eco.alert.route",
        "eco.alert.consult",
        "eco.alert.level",
        "eco.alert.action",
        "eco.alert.close",
    ]


def test_closing_while_still_above_the_threshold_is_refused(
    session: Session, episode_rows: pa.Table
) -> None:
    alert, staff = opened_alert(session, until(episode_rows, 13))
    actor = staff["fz-eco"]
    response.start_consultation(session, actor, alert.id, departments=["xm-eco"], note="")
    response.set_response_level(session, actor, alert.id, level=response.ResponseLevel.BLUE)
    with pytest.raises(Conflict, match="still above 100"):
        response.close_alert(session, actor, alert.id)
    assert alert.state == "responding"


def test_steps_out_of_order_are_refused(session: Session, episode_rows: pa.Table) -> None:
    alert, staff = opened_alert(session, episode_rows)
    actor = staff["fz-eco"]
    with pytest.raises(Conflict):
        response.record_action(session, actor, alert.id, note="洒水")
    with pytest.raises(Conflict):
        response.set_response_level(session, actor, alert.id, level="light")
    with pytest.raises(Invalid):
        response.start_consultation(session, actor, alert.id, departments=["nobody"], note="")
    response.start_consultation(session, actor, alert.id, departments=["xm-eco"], note="")
    with pytest.raises(Invalid):
        response.set_response_level(session, actor, alert.id, level="purple")


def test_the_province_sees_its_cities_alerts_but_other_cities_do_not(
    session: Session, episode_rows: pa.Table
) -> None:
    alert, staff = opened_alert(session, episode_rows)
    assert response.list_alerts(session, staff["fj-eco"]) == [alert]
    assert response.list_alerts(session, staff["xm-eco"]) == [alert]
    quanzhou = factories.make_org(session, code="qz-eco", division_code="350500")
    outsider = principal_for(
        factories.make_user(session, roles=[Role.STEWARD], organization=quanzhou)
    )
    assert response.list_alerts(session, outsider) == []
    with pytest.raises(NotFound):
        response.start_consultation(session, outsider, alert.id, departments=["xm-eco"], note="")


def test_an_auditor_may_read_but_not_respond(session: Session, episode_rows: pa.Table) -> None:
    alert, _staff = opened_alert(session, episode_rows)
    auditor = principal_for(factories.make_user(session, roles=[Role.AUDITOR]))
    with pytest.raises(Forbidden):
        response.start_consultation(session, auditor, alert.id, departments=["xm-eco"], note="")


def test_suggested_level_follows_the_peak() -> None:
    assert response.suggested_level(130) == "light"
    assert response.suggested_level(230) == "yellow"
    assert response.suggested_level(450) == "red"
