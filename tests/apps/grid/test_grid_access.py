"""Who sees a report's reporter, and that every civil servant's opening is audited."""

from __future__ import annotations

import json
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts.models import AccountKind
from minyun.apps.grid import service
from minyun.apps.grid.photos import PhotoStore
from minyun.apps.grid.service import NewReport
from minyun.core import identifiers
from minyun.core.audit import AuditRecord
from minyun.core.security import Principal
from tests import factories
from tests.apps.grid.conftest import DONGJIEKOU, jpeg, officer


def _reads(session: Session) -> list[AuditRecord]:
    return list(session.scalars(
        select(AuditRecord).where(AuditRecord.action == "grid.report.read").order_by(AuditRecord.seq)
    ))  # fmt: skip


def test_staff_opening_a_report_is_audited_and_only_its_workers_see_the_contact(
    gulou: Session, store: PhotoStore
) -> None:
    citizen = factories.make_user(gulou, username="reporter1", kind=AccountKind.CITIZEN,
                                  organization=None, organization_id=None,
                                  ric=identifiers.make_ric("350102", date(1990, 1, 2), 7))  # fmt: skip
    reporter = Principal(kind="user", name="reporter1", user_id=citizen.id, account_kind="citizen")
    report = service.file_report(gulou, reporter, store, NewReport(
        "garbage", "楼下垃圾三天没清运", *DONGJIEKOU, photos=[jpeg()],
        contact={"phone": "13800000000", "last_name": "林"}))  # fmt: skip
    assert service.access_report(gulou, reporter, report.id) is report
    assert _reads(gulou) == []  # the reporter's own report: not someone else's data

    urban = officer(gulou, "gl-urban")  # the department the garbage goes to
    traffic = officer(gulou, "gl-traffic")  # a civil servant with no part in it
    assert service.sees_contact(gulou, urban, report)
    assert not service.sees_contact(gulou, traffic, report)
    service.access_report(gulou, urban, report.id)
    service.access_report(gulou, traffic, report.id)
    first, second = _reads(gulou)
    assert (first.actor, first.object_id, first.purpose) == (
        urban.label,
        str(report.id),
        "grid.follow",
    )
    assert json.loads(first.detail or "{}") == {"contact": True, "photos": [report.photos[0].id]}
    assert second.actor == traffic.label and json.loads(second.detail or "{}")["contact"] is False
    assert service.sees_contact(gulou, officer(gulou, "gl-st-004"), report)  # the street office
