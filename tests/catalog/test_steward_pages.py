"""The steward's work on the web: register, edit, schema versions, upload, rejects, preview,
retire and restore; bad input comes back beside its field, other departments get 403."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.catalog import service
from minyun.catalog.models import ResourceStatus
from minyun.core import audit, jobs
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests import factories
from tests.conftest import make_settings
from tests.formparse import form_values
from tests.ingest.loadkit import person, write_csv
from tests.web.test_pages import browser, make_user, sign_in

SAMPLE_ROWS = [person(n) for n in range(1, 31)]


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


def _steward(platform: Platform, **over: Any) -> tuple[TestClient, Any]:
    with platform.factory.begin() as session:
        org = factories.make_org(session)
        user = factories.make_user(session, roles=["steward"], organization=org, **over)
    client = browser(create_app(platform))
    sign_in(client, user.username)
    return client, org


def _errors(html: str) -> dict[str, str]:
    """The errors a form shows, by the id of the field they belong to."""
    found = re.findall(
        r'<p class="(?:field|row)-error" id="([^"]+)-error" role="alert">([^<]*)', html
    )
    return dict(found)


def _alerts(html: str) -> list[str]:
    return re.findall(r'class="alert error"[^>]*>([^<]*)', html)


def _register(client: TestClient, tmp_path: Path, code: str, **metadata: str) -> TestClient:
    """Read a sample into the new-resource form, then post the form as the page has it."""
    page = client.get("/catalog/new")
    values = form_values(page.text, action="/catalog/new")
    values.update(code=code, name="人口基本信息", sharing_type="unconditional",
                  open_type="none", legal_basis="《福建省政务数据管理办法》", op="sample")  # fmt: skip
    values.update(metadata)
    data = write_csv(tmp_path / "sample.csv", SAMPLE_ROWS).read_bytes()
    read = client.post("/catalog/new", data=values, files={"sample": ("人口.csv", data)})
    assert read.status_code == 200, _alerts(read.text) or _errors(read.text)
    values = form_values(read.text, action="/catalog/new") | {"op": "create"}
    created = client.post("/catalog/new", data=values)
    assert created.status_code == 303, _alerts(created.text) or _errors(created.text)
    return client


def _actions(platform: Platform, action: str) -> list[tuple[str, str | None, str]]:
    with platform.factory() as session:
        records = session.scalars(
            select(audit.AuditRecord)
            .where(audit.AuditRecord.action == action)
            .order_by(audit.AuditRecord.seq)
        ).all()
        return [(r.outcome, r.purpose, r.actor) for r in records]


def _wait(platform: Platform, job_id: str) -> jobs.Job:
    for _ in range(400):
        with platform.factory() as session:
            job = jobs.get_job(session, job_id)
        if job.finished:
            return job
        time.sleep(0.05)
    raise AssertionError("the load did not finish")


# --- registering ----------------------------------------------------------------------------


def test_a_steward_registers_a_resource_whose_schema_starts_from_a_sample(
    platform: Platform, tmp_path: Path
) -> None:
    client, org = _steward(platform)
    catalog = client.get("/catalog")
    assert 'href="/catalog/new"' in catalog.text and "登记新资源" in catalog.text
    page = client.get("/catalog/new")
    assert page.status_code == 200 and "登记新资源" in page.text
    assert form_values(page.text, action="/catalog/new")["provider"] == org.code
    values = form_values(page.text, action="/catalog/new")
    values.update(code="pop-base", name="人口基本信息", op="sample")
    data = write_csv(tmp_path / "s.csv", SAMPLE_ROWS).read_bytes()
    read = client.post("/catalog/new", data=values, files={"sample": ("人口.csv", data)})
    assert read.status_code == 200 and "已读取 30 行" in read.text
    editor = form_values(read.text, action="/catalog/new")
    assert editor["code"] == "pop-base" and editor["name"] == "人口基本信息"  # kept
    assert (editor["f1.name"], editor["f1.format"], editor["f1.key"]) == ("ric", "cn-ric", "on")
    assert editor["f4.type"] == "date" and editor["f5.rest"] == '{"codelist": "GB/T 2260"}'
    # The steward edits the proposal: a title, a sensitivity, a field left out, a new one.
    editor.update({"f2.title": "姓名", "f7.sensitivity": "public", "op": "add"})
    del editor["f10.keep"]  # "updated" is not wanted
    added = client.post("/catalog/new", data=editor)
    editor = form_values(added.text, action="/catalog/new")
    assert editor["field_count"] == "12"
    editor.update({"f11.name": "remark", "f11.title": "备注", "sharing_type": "unconditional",
                   "open_type": "unconditional", "op": "create"})  # fmt: skip
    created = client.post("/catalog/new", data=editor)
    assert created.status_code == 303 and created.headers["location"] == "/catalog/pop-base"
    with platform.factory() as session:
        resource = service.get_resource(session, "pop-base")
        assert resource.status == ResourceStatus.DRAFT and resource.provider_id == org.id
        schema = service.current_table_schema(session, resource)
    assert schema is not None and schema.primary_key == ("ric",)
    assert schema.names == [*[c for c in SAMPLE_ROWS[0] if c != "updated"], "remark"]
    assert schema.field("ric").format == "cn-ric" and schema.field("name").title == "姓名"
    assert schema.field("score").sensitivity == "public"
    assert schema.field("county").codelist == "GB/T 2260"  # kept through the hidden part
    assert [a[0] for a in _actions(platform, "resource.create")] == ["success"]
    assert [a[0] for a in _actions(platform, "resource.schema")] == ["success"]


def test_the_form_keeps_the_input_and_shows_each_error_beside_its_field(
    platform: Platform, tmp_path: Path
) -> None:
    client, _ = _steward(platform)
    values = form_values(client.get("/catalog/new").text, action="/catalog/new")
    values.update(code="Bad Code!", name="人口信息", summary="保留的摘要", op="create")
    page = client.post("/catalog/new", data=values)
    assert page.status_code == 422
    assert _errors(page.text) == {"code": "2 至 64 位小写字母、数字或 . _ -，以字母或数字开头。"}
    assert 'id="code" name="code" value="Bad Code!"' in page.text
    assert 'aria-invalid="true" aria-describedby="code-error"' in page.text
    kept = form_values(page.text, action="/catalog/new")
    assert kept["summary"] == "保留的摘要" and kept["name"] == "人口信息"
    values.update(code="pop-x", sharing_type="conditional", legal_basis="")
    page = client.post("/catalog/new", data=values)
    assert _errors(page.text) == {
        "legal_basis": "有条件共享/开放或不予共享/开放，须填写法律法规依据。"
    }
    values.update(sharing_type="none", open_type="unconditional", legal_basis="依据")
    page = client.post("/catalog/new", data=values)
    assert _errors(page.text) == {"open_type": "不予共享的资源不能向社会开放。"}
    # A schema error is shown on the row of its field.
    values.update(open_type="none", field_count="1", **{
        "f0.keep": "on", "f0.name": "age", "f0.type": "integer", "f0.mask": "name",
        "f0.sensitivity": "sensitive", "f0.rest": "{}",
    })  # fmt: skip
    page = client.post("/catalog/new", data=values)
    assert page.status_code == 422 and list(_errors(page.text)) == ["f0"]
    assert "请检查此字段" in _errors(page.text)["f0"]
    with platform.factory() as session:
        assert service.find_resource(session, "pop-x") is None  # nothing of it was kept
    _register(client, tmp_path, "pop-x")
    values.update(code="pop-x")
    page = client.post("/catalog/new", data=values)
    assert _errors(page.text) == {"code": "已有资源使用此代码。"}


def test_a_sample_in_the_wrong_encoding_or_unreadable_comes_back_with_its_error(
    platform: Platform,
) -> None:
    client, _ = _steward(platform)
    values = form_values(client.get("/catalog/new").text, action="/catalog/new")
    values.update(code="gbk-res", name="企业名录", op="sample")
    gbk = "企业名称,统一社会信用代码\n福州示例公司,91350100000000019E\n".encode("gbk")
    page = client.post("/catalog/new", data=values, files={"sample": ("企业.csv", gbk)})
    assert page.status_code == 422
    assert "文件不是 UTF-8 编码" in _errors(page.text)["encoding"]
    assert form_values(page.text, action="/catalog/new")["name"] == "企业名录"
    values["encoding"] = "gb18030"
    page = client.post("/catalog/new", data=values, files={"sample": ("企业.csv", gbk)})
    assert page.status_code == 200 and 'value="cn-uscc" selected' in page.text
    assert form_values(page.text, action="/catalog/new")["encoding"] == "gb18030"
    broken = client.post(
        "/catalog/new", data=values, files={"sample": ("x.xlsx", b"PK\x03\x04broken")}
    )
    assert broken.status_code == 422 and "无法读取样例文件" in _errors(broken.text)["sample"]
    nothing = client.post("/catalog/new", data=values)
    assert _errors(nothing.text) == {"sample": "请选择样例文件。"}


# --- changing -------------------------------------------------------------------------------


def test_metadata_edits_keep_the_input_on_error(platform: Platform, tmp_path: Path) -> None:
    client, _ = _steward(platform)
    _register(client, tmp_path, "pop-edit")
    page = client.get("/catalog/pop-edit/edit")
    values = form_values(page.text, action="/catalog/pop-edit/edit")
    assert values["name"] == "人口基本信息" and values["legal_basis"]
    values.update(name="人口基本信息（2025）", summary="新的摘要", theme="credit")
    saved = client.post("/catalog/pop-edit/edit", data=values)
    assert saved.status_code == 303
    values.update(sharing_type="none", open_type="unconditional", name="不会保存的名称")
    refused = client.post("/catalog/pop-edit/edit", data=values)
    assert refused.status_code == 422
    assert _errors(refused.text) == {"open_type": "不予共享的资源不能向社会开放。"}
    assert form_values(refused.text, action="/catalog/pop-edit/edit")["name"] == "不会保存的名称"
    with platform.factory() as session:
        resource = service.get_resource(session, "pop-edit")
        assert (resource.name, resource.theme) == ("人口基本信息（2025）", "credit")
        assert resource.sharing_type == "unconditional"


def test_schema_versions_minor_then_major_by_the_catalog_rules(
    platform: Platform, tmp_path: Path
) -> None:
    client, _ = _steward(platform)
    _register(client, tmp_path, "pop-schema")
    page = client.get("/catalog/pop-schema/schema")
    assert "现行数据结构：1.0 版" in page.text
    values = form_values(page.text, action="/catalog/pop-schema/schema") | {"op": "add"}
    added = client.post("/catalog/pop-schema/schema", data=values)
    values = form_values(added.text, action="/catalog/pop-schema/schema")
    values.update({"f11.name": "remark", "op": "save"})
    assert client.post("/catalog/pop-schema/schema", data=values).status_code == 303
    # Dropping a field is incompatible: refused until asked for as a major version.
    values = form_values(client.get("/catalog/pop-schema/schema").text)
    del values["f11.keep"]
    values["op"] = "save"
    refused = client.post("/catalog/pop-schema/schema", data=values)
    assert refused.status_code == 409
    assert "与 1.1 版数据结构不兼容" in refused.text and 'id="schema-error"' in refused.text
    kept = form_values(refused.text, action="/catalog/pop-schema/schema")
    assert "f11.keep" not in kept  # the steward's choice is still there
    kept.update(major="on", op="save")
    assert client.post("/catalog/pop-schema/schema", data=kept).status_code == 303
    with platform.factory() as session:
        resource = service.get_resource(session, "pop-schema")
        history = [(s.version, s.change) for s in service.schema_history(session, resource)]
    assert history == [("1.0", "initial"), ("1.1", "compatible"), ("2.0", "major")]


def test_retire_asks_for_a_confirmation_and_a_reason_and_restore_brings_it_back(
    platform: Platform, tmp_path: Path
) -> None:
    client, _ = _steward(platform)
    _register(client, tmp_path, "pop-retire")
    page = client.get("/catalog/pop-retire")
    token = form_values(page.text)["csrf"]
    client.post("/catalog/pop-retire/publish", data={"csrf": token})
    page = client.get("/catalog/pop-retire")
    assert 'href="/catalog/pop-retire/retire"' in page.text
    assert 'action="/catalog/pop-retire/retire"' not in page.text  # no one-click retire
    confirm = client.get("/catalog/pop-retire/retire")
    assert confirm.status_code == 200 and "停用资源" in confirm.text
    values = form_values(confirm.text, action="/catalog/pop-retire/retire")
    refused = client.post("/catalog/pop-retire/retire", data=values | {"reason": "  "})
    assert refused.status_code == 422 and _errors(refused.text) == {"reason": "请填写原因。"}
    with platform.factory() as session:
        assert service.get_resource(session, "pop-retire").status == ResourceStatus.PUBLISHED
    done = client.post("/catalog/pop-retire/retire", data=values | {"reason": "数据源停止更新"})
    assert done.status_code == 303
    page = client.get("/catalog/pop-retire")
    assert 'href="/catalog/pop-retire/restore"' in page.text and "/loads/new" not in page.text
    assert client.get("/catalog/pop-retire/edit").status_code == 409  # retired: read-only
    values = form_values(client.get("/catalog/pop-retire/restore").text)
    back = client.post("/catalog/pop-retire/restore", data=values | {"reason": "数据源恢复更新"})
    assert back.status_code == 303
    with platform.factory() as session:
        resource = service.get_resource(session, "pop-retire")
        assert resource.status == ResourceStatus.PUBLISHED and resource.retired_at is None
    assert [(o, p) for o, p, _ in _actions(platform, "resource.retire")] == [
        ("success", "数据源停止更新")
    ]
    assert [(o, p) for o, p, _ in _actions(platform, "resource.restore")] == [
        ("success", "数据源恢复更新")
    ]


# --- loading and reading ----------------------------------------------------------------------


def _upload(client: TestClient, code: str, data: bytes, **form: str) -> Any:
    page = client.get(f"/catalog/{code}/loads/new")
    values = form_values(page.text, action=f"/catalog/{code}/loads") | form
    return client.post(f"/catalog/{code}/loads", data=values, files={"file": ("人口.csv", data)})


def test_upload_follows_the_load_then_rejects_by_reason_with_a_csv_and_a_preview(
    platform: Platform, tmp_path: Path
) -> None:
    client, _ = _steward(platform)
    _register(client, tmp_path, "pop-load")
    rows = [person(n) for n in range(1, 81)]  # 3 bad: under the 5% a load may refuse
    rows[4]["ric"] = "350102198001010010"  # row 5: bad check digit
    rows[9]["birth"] = "1980-02-30"  # row 10: no such day
    rows[19]["name"] = None  # row 20: required
    data = write_csv(tmp_path / "load.csv", rows).read_bytes()
    posted = _upload(client, "pop-load", data, mode="full")
    assert posted.status_code == 303
    load_url = posted.headers["location"]
    job_id = load_url.rsplit("/", 1)[1]
    page = client.get(load_url)
    assert (page.status_code == 200 and f'hx-get="{load_url}/progress"' in page.text) or (
        'id="load-state"' in page.text
    )
    assert _wait(platform, job_id).state == jobs.JobState.SUCCEEDED
    part = client.get(f"{load_url}/progress", headers={"HX-Request": "true"})
    assert "<html" not in part.text and "hx-get" not in part.text  # finished: no more polling
    assert '<span class="badge state-committed" id="load-state">已提交</span>' in part.text
    link = re.search(
        r'href="(/catalog/pop-load/versions/(\d+)/rejects)" id="rejects-link">3<', part.text
    )
    assert link, part.text
    resource_page = client.get("/catalog/pop-load")
    assert f'href="{link.group(1)}"' in resource_page.text and "已拒绝 3" in resource_page.text

    rejects = client.get(link.group(1))
    assert rejects.status_code == 200
    text = rejects.text
    assert "不是有效的公民身份号码（GB 11643）" in text and "必填项为空" in text
    assert "不是有效的日期" in text and "350102198001010010" in text  # the steward sees all
    only = client.get(link.group(1), params={"reason": "required"})
    assert only.text.count("<tr>") == 2  # header and the one row
    assert 'value="required" selected' in only.text
    download = client.get(link.group(1) + ".csv")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    found = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert found[0] == ["行号", "字段", "原因", "原始记录"]
    assert [(r[0], r[1], r[2]) for r in found[1:]] == [
        ("5", "ric", "不是有效的公民身份号码（GB 11643）"),
        ("10", "birth", "不是有效的日期"),
        ("20", "name", "必填项为空"),
    ]
    filtered = client.get(link.group(1) + ".csv", params={"reason": "required"})
    assert len(list(csv.reader(io.StringIO(filtered.content.decode("utf-8-sig"))))) == 2

    preview = client.get("/catalog/pop-load/preview")
    assert preview.status_code == 200 and "人1" in preview.text
    assert preview.text.count('<td data-label="ric">') == 20
    reads = _actions(platform, "resource.rejects.read")
    assert len(reads) == 4 and {o for o, _, _ in reads} == {"success"}
    assert _actions(platform, "resource.read")[-1][1] == "preview"


def test_admins_see_rejects_and_preview_masked_as_rows_are(
    platform: Platform, tmp_path: Path
) -> None:
    client, _ = _steward(platform)
    _register(client, tmp_path, "pop-mask")
    rows = [person(n) for n in range(1, 41)]
    rows[2]["birth"] = "1980-13-01"
    posted = _upload(client, "pop-mask", write_csv(tmp_path / "m.csv", rows).read_bytes())
    assert _wait(platform, posted.headers["location"].rsplit("/", 1)[1]).finished
    admin = make_user(platform, roles=["admin"])
    other = browser(create_app(platform))
    sign_in(other, admin.username)
    with platform.factory() as session:
        version = session.scalars(
            select(service.Version).where(service.Version.rows_rejected > 0)
        ).one()
    page = other.get(f"/catalog/pop-mask/versions/{version.id}/rejects")
    assert page.status_code == 200
    ric = rows[2]["ric"]
    assert ric not in page.text and f"{ric[:3]}***********{ric[-4:]}" in page.text
    preview = other.get("/catalog/pop-mask/preview")
    assert preview.status_code == 200 and rows[0]["ric"] not in preview.text


def test_bad_uploads_come_back_beside_the_file_and_a_wrong_encoding_fails_the_load(
    platform: Platform, tmp_path: Path
) -> None:
    client, _ = _steward(platform)
    _register(client, tmp_path, "pop-bad")
    empty = _upload(client, "pop-bad", b"")
    assert empty.status_code == 422 and _errors(empty.text) == {"file": "文件为空。"}
    unknown = _upload(client, "pop-bad", b"a\n1\n", encoding="klingon")
    assert unknown.status_code == 422 and _errors(unknown.text) == {"encoding": "未知的文本编码。"}
    gbk = write_csv(tmp_path / "gbk.csv", [person(n) for n in range(1, 11)], encoding="gbk")
    posted = _upload(client, "pop-bad", gbk.read_bytes())  # said to be UTF-8
    assert posted.status_code == 303
    assert _wait(platform, posted.headers["location"].rsplit("/", 1)[1]).finished
    page = client.get(posted.headers["location"])
    assert "文件不是 UTF-8 编码：请重新上传并选择它的编码" in page.text
    assert list((platform.settings.var_dir / "uploads").iterdir()) == []


def test_an_oversized_upload_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    node = Platform.open(make_settings(tmp_path / "var", upload_max_bytes=10_000))
    node.migrate()
    try:
        client, _ = _steward(node)
        _register(client, tmp_path, "pop-big")
        data = write_csv(tmp_path / "big.csv", [person(n) for n in range(1, 201)]).read_bytes()
        assert 10_000 < len(data) < 60_000  # within the multipart slack: the stream is cut
        refused = _upload(client, "pop-big", data)
        assert refused.status_code == 422
        assert _errors(refused.text) == {"file": "文件超过上限 9.77 KiB。"}
        uploads = node.settings.var_dir / "uploads"
        assert not uploads.exists() or list(uploads.iterdir()) == []
        sample = form_values(client.get("/catalog/new").text, action="/catalog/new")
        sample.update(code="big-sample", name="大样例", op="sample")
        page = client.post("/catalog/new", data=sample, files={"sample": ("big.csv", data)})
        assert _errors(page.text) == {"sample": "文件超过上限 9.77 KiB。"}
    finally:
        node.close()


# --- who may ------------------------------------------------------------------------------------


@pytest.fixture
def published(platform: Platform, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A published resource with one load (3 rejects), and the id of that load."""
    client, _ = _steward(platform)
    _register(client, tmp_path, "pop-owned")
    token = form_values(client.get("/catalog/pop-owned").text)["csrf"]
    client.post("/catalog/pop-owned/publish", data={"csrf": token})
    rows = [person(n) for n in range(1, 41)]
    rows[1]["ric"] = "1"
    posted = _upload(client, "pop-owned", write_csv(tmp_path / "o.csv", rows).read_bytes())
    assert _wait(platform, posted.headers["location"].rsplit("/", 1)[1]).finished
    with platform.factory() as session:
        version = session.scalars(select(service.Version)).one()
    yield "pop-owned", version.id


def test_a_steward_of_another_department_gets_403_and_the_refusal_is_audited(
    platform: Platform, published: tuple[str, int], tmp_path: Path
) -> None:
    code, version = published
    other, _ = _steward(platform, username="other-steward")
    token = form_values(other.get("/catalog").text)["csrf"]
    data = write_csv(tmp_path / "x.csv", [person(1)]).read_bytes()
    refused = [
        other.get(f"/catalog/{code}/edit"),
        other.post(f"/catalog/{code}/edit", data={"csrf": token, "name": "改名"}),
        other.get(f"/catalog/{code}/schema"),
        other.post(f"/catalog/{code}/schema", data={"csrf": token, "op": "save"}),
        other.get(f"/catalog/{code}/loads/new"),
        other.post(f"/catalog/{code}/loads", data={"csrf": token}, files={"file": ("x.csv", data)}),
        other.get(f"/catalog/{code}/versions/{version}/rejects"),
        other.get(f"/catalog/{code}/versions/{version}/rejects.csv"),
        other.get(f"/catalog/{code}/preview"),
        other.get(f"/catalog/{code}/retire"),
        other.post(f"/catalog/{code}/retire", data={"csrf": token, "reason": "不是我的"}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert "<html" in refused[0].text  # the error page, in the page's language
    page = other.get(f"/catalog/{code}")
    assert "steward-actions" not in page.text and "/rejects" not in page.text
    with platform.factory() as session:
        denied = session.scalars(
            select(audit.AuditRecord).where(
                audit.AuditRecord.actor == "user:other-steward",
                audit.AuditRecord.outcome == "denied",
            )
        ).all()
        actions = sorted({r.action for r in denied})
        resource = service.get_resource(session, code)
        assert resource.name == "人口基本信息" and resource.status == ResourceStatus.PUBLISHED
    assert len(denied) == len(refused)
    assert actions == ["resource.edit", "resource.load", "resource.read",
                       "resource.rejects.read", "resource.retire"]  # fmt: skip
    uploads = platform.settings.var_dir / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_a_consumer_gets_no_steward_actions_and_no_forms(
    platform: Platform, published: tuple[str, int]
) -> None:
    code, _ = published
    consumer = make_user(platform, roles=["consumer"])
    client = browser(create_app(platform))
    sign_in(client, consumer.username)
    assert "登记新资源" not in client.get("/catalog").text
    assert client.get("/catalog/new").status_code == 403
    assert client.get(f"/catalog/{code}/loads/new").status_code == 403
    assert client.get(f"/catalog/{code}/restore").status_code == 403
