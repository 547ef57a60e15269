"""The services behind the steward's pages: rejects by reason through the plan, a load's
status, restore, and refusals that leave their audit record."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.catalog import service as catalog
from minyun.catalog.models import ResourceStatus
from minyun.core import audit, jobs
from minyun.core.errors import Conflict, Forbidden, NotFound
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.ingest import service
from minyun.web.app import create_app
from tests import factories
from tests.ingest.loadkit import load, make_resource, person, write_csv

CHINESE: dict[str, Any] = {
    "fields": [
        {"name": "编号", "type": "integer"},
        {"name": "公民身份号码", "type": "string", "format": "cn-ric", "sensitivity": "sensitive",
         "mask": "keep(3,4)"},
        {"name": "姓名", "type": "string", "constraints": {"required": True},
         "sensitivity": "secret"},
    ],
    "primaryKey": ["编号"],
}  # fmt: skip


def _denied(node: Platform, action: str) -> list[str]:
    with node.factory() as session:
        return list(
            session.scalars(
                select(audit.AuditRecord.actor).where(
                    audit.AuditRecord.action == action, audit.AuditRecord.outcome == "denied"
                )
            )
        )


def _load_with_rejects(node: Platform, tmp_path: Path) -> tuple[str, Principal, int, str]:
    code, steward = make_resource(node, descriptor=CHINESE, threshold=0.9)
    ric = person(2)["ric"]
    lines = ["编号,公民身份号码,姓名", f"1,{person(1)['ric']},林一", f"2,{ric},",
             "3,123,林三", f"1,{person(4)['ric']},林四", f"5,{person(5)['ric']},林五"]  # fmt: skip
    (tmp_path / "人口.csv").write_text("\n".join(lines) + "\n", "utf-8")
    job = load(node, steward, code, tmp_path / "人口.csv")
    assert job.state == jobs.JobState.SUCCEEDED, job.error
    with node.factory() as session:
        version = session.scalars(select(service.Version.id)).one()
    return code, steward, version, ric


def test_rejects_by_reason_keep_chinese_field_values_masked_as_rows(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    code, steward, version, ric = _load_with_rejects(sqlite_node, tmp_path)
    with unit_of_work(sqlite_node.factory) as session:
        view = service.rejects_view(session, sqlite_node.lake, steward, code, version)
        assert view.reasons == [
            ("duplicate primary key", 1), ("not a valid identity number (GB 11643)", 1),
            ("required", 1),
        ]  # fmt: skip
        assert view.every == 3 and view.total == 3
        rows = service.rejects_json(view.table)
        assert rows[0]["record"] == {"编号": "2", "公民身份号码": ric, "姓名": None}
        dup = service.rejects_view(
            session, sqlite_node.lake, steward, code, version, reason="duplicate primary key"
        )
        assert dup.total == 1 and service.rejects_json(dup.table)[0]["row_number"] == 4
        assert (
            service.rejects_json(dup.table)[0]["reason"] == "duplicate primary key (first at row 1)"
        )
    # An administrator reads them too, masked: sensitive up to internal, secret dropped.
    admin = Principal(kind="user", name="admin", roles=frozenset({"admin"}))
    with unit_of_work(sqlite_node.factory) as session:
        table = service.read_rejects(
            session, sqlite_node.lake, admin, code, version=version, reason="required"
        )
    [row] = service.rejects_json(table)
    assert row["record"] == {"编号": "2", "公民身份号码": f"{ric[:3]}{'*' * 11}{ric[-4:]}"}
    assert row["field"] is None  # the rule's field is not shown to a reader without it


def test_a_load_status_is_for_its_resources_loaders_only(
    sqlite_node: Platform, tmp_path: Path
) -> None:
    code, steward, version, _ = _load_with_rejects(sqlite_node, tmp_path)
    other, other_steward = make_resource(sqlite_node)
    with sqlite_node.factory() as session:
        job_id = session.scalars(select(jobs.Job.id).where(jobs.Job.kind == service.KIND)).one()
    with unit_of_work(sqlite_node.factory) as session:
        status = service.access_load(session, steward, code, job_id)
        assert status.job.finished and status.version is not None
        assert status.version.id == version and status.version.rows_rejected == 3
    with pytest.raises(NotFound), unit_of_work(sqlite_node.factory) as session:
        service.access_load(session, other_steward, other, job_id)  # not a load of `other`
    with pytest.raises(Forbidden), unit_of_work(sqlite_node.factory) as session:
        service.access_load(session, other_steward, code, job_id)
    assert _denied(sqlite_node, "resource.load") == [other_steward.label]


def test_a_steward_of_another_department_cannot_load_and_is_audited(
    platform: Platform, tmp_path: Path
) -> None:
    code, _ = make_resource(platform)
    _, outsider = make_resource(platform)
    data = write_csv(tmp_path / "p.csv", [person(1)]).read_bytes()
    with pytest.raises(Forbidden), unit_of_work(platform.factory) as session:
        service.upload_load(
            session, outsider, code, io.BytesIO(data), filename="p.csv",
            settings=platform.settings,
        )  # fmt: skip
    assert _denied(platform, "resource.load") == [outsider.label]
    assert not (platform.settings.var_dir / "uploads").exists()


def test_restore_brings_back_what_retire_withdrew_and_is_audited(platform: Platform) -> None:
    with unit_of_work(platform.factory) as session:
        org = factories.make_org(session)
        draft = factories.make_resource(session, provider=org).code
        live = factories.make_resource(session, provider=org).code
        catalog.publish_resource(session, factories.SYSTEM, live)
        for code in (draft, live):
            catalog.retire_resource(session, factories.SYSTEM, code, reason="停用")
    steward = Principal(kind="user", name="steward", organization_id=org.id,
                        roles=frozenset({"steward"}))  # fmt: skip
    with unit_of_work(platform.factory) as session:
        with pytest.raises(Conflict):
            catalog.access_managed(session, steward, live, "resource.edit")
        assert catalog.restore_resource(session, steward, draft, reason="误停").status == "draft"
        assert catalog.restore_resource(session, steward, live, reason="恢复").status == (
            ResourceStatus.PUBLISHED
        )
        assert catalog.restore_resource(session, steward, live).status == "published"  # no-op
    stranger = Principal(kind="user", name="stranger", organization_id=None,
                         roles=frozenset({"steward"}))  # fmt: skip
    with pytest.raises(Forbidden), unit_of_work(platform.factory) as session:
        catalog.restore_resource(session, stranger, live)
    with platform.factory() as session:
        restored = session.scalars(
            select(audit.AuditRecord)
            .where(audit.AuditRecord.action == "resource.restore")
            .order_by(audit.AuditRecord.seq)
        ).all()
    assert [(r.object_id, r.purpose, r.outcome) for r in restored] == [
        (draft, "误停", "success"), (live, "恢复", "success"), (live, None, "denied"),
    ]  # fmt: skip


def test_the_api_restores_and_proposes_a_schema_from_a_sample(
    platform: Platform, tmp_path: Path
) -> None:
    with platform.factory.begin() as session:
        org = factories.make_org(session)
        code = factories.make_resource(session, provider=org).code
        catalog.retire_resource(session, factories.SYSTEM, code)
    _, headers = factories.api_client_token(
        TestClient(create_app(platform)), platform, org.id,
        ["resource.create", "resource.restore", "catalog.read"],
    )  # fmt: skip
    with TestClient(create_app(platform)) as http:
        data = write_csv(tmp_path / "s.csv", [person(n) for n in range(1, 11)]).read_bytes()
        proposed = http.post(
            "/api/v1/samples/schema", headers=headers, files={"file": ("s.csv", data)}
        )
        assert proposed.status_code == 200, proposed.text
        assert proposed.json()["rows"] == 10
        assert proposed.json()["schema"]["primaryKey"] == ["ric"]
        bad = http.post(
            "/api/v1/samples/schema", headers=headers, files={"file": ("x.xlsx", b"PK\x03\x04")}
        )
        assert bad.status_code == 422 and bad.json()["field"] == "sample"
        restored = http.post(f"/api/v1/resources/{code}/restore", headers=headers)
        assert restored.status_code == 200 and restored.json()["status"] == "draft"
