"""Every role has its next step: the dashboards' real counts and links, the landing page, jobs
that name their resource and who asked, the audit viewer's filters and CSV export, the eco
consultation form's department picker, and stored sentences said in Chinese."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from minyun.accounts.models import User
from minyun.catalog import service as catalog
from minyun.catalog.models import Resource
from minyun.core import clock, jobs
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.demo import province
from minyun.exchange import service as exchange
from minyun.ingest import service as ingest
from minyun.ingest.models import Version
from minyun.orgs.models import Organization
from minyun.web import i18n, wording
from minyun.web.app import create_app
from minyun.web.templating import when
from tests import factories
from tests.conftest import make_settings
from tests.exchange.kit import later, person
from tests.ingest import loadkit
from tests.query.test_query_api import signed_in

SYSTEM = Principal.system()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Platform]:
    """An embedded node whose jobs run when the test runs them."""
    platform = Platform.open(make_settings(tmp_path / "var"), run_jobs_here=False)
    platform.migrate()
    yield platform
    platform.close()


@pytest.fixture
def app(node: Platform) -> FastAPI:
    return create_app(node)


def _user(node: Platform, roles: list[str], org_id: int | None = None) -> User:
    with node.factory.begin() as session:
        over: dict[str, object] = {"organization_id": org_id} if org_id else {}
        return factories.make_user(session, roles=roles, **over)


def _browser(app: FastAPI, user: User) -> TestClient:
    """A browser session of `user`, signed in through the form."""
    client = TestClient(app, client=(f"10.99.0.{user.id % 250 + 1}", 50000), follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token
    form = {"username": user.username, "password": factories.PASSWORD, "csrf": token.group(1)}
    assert client.post("/login", data=form).status_code == 303
    return client


def _as(actor: User) -> Principal:
    return Principal(
        kind="user", name=actor.username, user_id=actor.id,
        organization_id=actor.organization_id, roles=frozenset(actor.roles),
    )  # fmt: skip


def _card(page: str, name: str) -> str:
    found = re.search(rf'<article class="card[^"]*" id="card-{name}">(.*?)</article>', page, re.S)
    assert found, f"no card {name}"
    return found.group(1)


def _failed_load(node: Platform, actor: Principal, code: str, tmp_path: Path) -> str:
    """A load whose file is gone by the time it runs: a failed job of the department."""
    path = loadkit.write_csv(tmp_path / "gone.csv", [loadkit.person(1)])
    with unit_of_work(node.factory) as session:
        job_id = ingest.submit_load(session, actor, code, str(path), settings=node.settings).id
    path.unlink()
    assert jobs.run(node.factory, job_id).state == jobs.JobState.FAILED
    return job_id


# --- the steward's dashboard --------------------------------------------------------------


def test_steward_sees_its_resources_with_freshness_last_load_rejects_and_failed_jobs(
    node: Platform, app: FastAPI, tmp_path: Path
) -> None:
    code, loader = loadkit.make_resource(node)
    rows = [loadkit.person(i) for i in range(1, 9)] + [loadkit.person(9, sex="?")]
    done = loadkit.load(node, loader, code, loadkit.write_csv(tmp_path / "p.csv", rows))
    assert done.state == jobs.JobState.SUCCEEDED, done.error
    failed = _failed_load(node, loader, code, tmp_path)
    # A daily resource of the same department last loaded three days ago is overdue.
    stale, _ = loadkit.make_resource(node)
    with node.factory.begin() as session:
        mine = session.scalars(select(Resource).where(Resource.code == code)).one()
        other = session.scalars(select(Resource).where(Resource.code == stale)).one()
        other.provider_id, other.update_cycle = mine.provider_id, "daily"
        session.add(Version(
            resource_id=other.id, lake_version=0, state="committed", mode="full", source="x.csv",
            source_kind="csv", loaded_by="test", rows_read=1, rows_accepted=1,
            committed_at=clock.now() - timedelta(days=3),
        ))  # fmt: skip
        org_id = mine.provider_id
    steward = signed_in(app, node, ["steward"], org_id)
    page = steward.get("/").text
    card = _card(page, "department")
    assert page.index('id="card-department"') < page.index('id="card-account"')  # first
    assert f'href="/catalog/{code}"' in card and f'href="/catalog/{stale}"' in card
    mine_row = re.search(rf'<tr data-code="{code}">(.*?)</tr>', card, re.S)
    stale_row = re.search(rf'<tr data-code="{stale}">(.*?)</tr>', card, re.S)
    assert mine_row and stale_row
    # The load's rejected row is counted and leads to the versions where it can be opened.
    link = re.search(rf'<a href="(/catalog/{code}/versions/\d+/rejects)" class="bad">1</a>', card)
    assert link, "the rejected count does not lead to the rejects page"
    assert steward.get(link.group(1)).status_code == 200
    assert "已加载" in mine_row.group(1) and "不定期" in mine_row.group(1)
    assert "已逾期" in stale_row.group(1) and "每日" in stale_row.group(1)
    # The failed job is named by its kind and resource, and linked; and it is counted.
    assert f'href="/jobs/{failed}"' in card and "数据加载" in card
    assert re.search(r'<strong class="figure-inline">1</strong> 个失败的任务', card)
    assert re.search(r'<strong class="figure-inline">1</strong> 个逾期或从未加载', card)
    # The job page answers the steward (a load works for the resource's department).
    assert steward.get(f"/jobs/{failed}").status_code == 200


def test_a_load_asked_by_an_admin_is_followed_by_the_providers_stewards(
    node: Platform, app: FastAPI, tmp_path: Path
) -> None:
    code, loader = loadkit.make_resource(node)
    admin = _user(node, ["admin"])
    job = loadkit.load(
        node, _as(admin), code, loadkit.write_csv(tmp_path / "p.csv", [loadkit.person(1)])
    )
    assert job.organization_id == loader.organization_id
    steward = signed_in(app, node, ["steward"], loader.organization_id)
    listing = steward.get("/jobs").text
    row = re.search(rf'<a href="/jobs/{job.id}">(.*?)</tr>', listing, re.S)
    assert row, "the admin's load is not on the steward's jobs page"
    with node.factory() as session:
        name = session.scalars(select(Resource.name).where(Resource.code == code)).one()
    # The kind in words, the resource by name, and who asked by name (not `user:...`).
    assert row.group(1).startswith("数据加载</a>")
    assert f'<a href="/catalog/{code}">{name}</a>' in row.group(1)
    assert f"{admin.display_name} <span" in row.group(1)
    page = steward.get(f"/jobs/{job.id}").text
    assert f'<h1>数据加载 · <a href="/catalog/{code}">{name}</a></h1>' in page
    assert "结果（任务记录的原始数据）" in page  # the raw result is folded away and labelled


# --- the approver's and consumer's cards, the landing page ----------------------------------


def test_approver_sees_the_applications_waiting_and_the_departments_resources(
    node: Platform, app: FastAPI
) -> None:
    with node.factory.begin() as session:
        org = factories.make_org(session)
        for sharing in ("unconditional", "conditional"):
            made = factories.make_resource(
                session, provider=org, sharing_type=sharing,
                legal_basis="《政务信息资源共享管理暂行办法》",
            )  # fmt: skip
            catalog.publish_resource(session, SYSTEM, made.code)
        factories.make_resource(session, provider=org)  # a draft: not counted
        consumer = factories.make_org(session)
        exchange.apply(
            session, person(consumer.id, "consumer"), resource=made.code, purpose="核验",
            legal_basis="《条例》", fields=["age"], expires_at=later(),
        )  # fmt: skip
    card = _card(signed_in(app, node, ["approver"], org.id).get("/").text, "approvals")
    assert "尚未上线" not in card and "placeholder" not in card
    assert '<strong class="figure-inline">1</strong> 件共享申请等待您审批' in card
    assert 'href="/sharing/inbox"' in card
    assert '<strong class="figure-inline">2</strong> 个本部门已发布的资源' in card
    assert "其中 1 个为有条件共享" in card
    assert f'href="/catalog?provider={org.code}"' in card


def test_consumer_sees_its_grants_and_what_the_catalog_may_share(
    node: Platform, app: FastAPI
) -> None:
    with node.factory.begin() as session:
        made = factories.make_resource(session)
        catalog.publish_resource(session, SYSTEM, made.code)
    card = _card(signed_in(app, node, ["consumer"], None).get("/").text, "grants")
    assert "尚未上线" not in card and 'href="/sharing/mine"' in card
    assert '<strong class="figure-inline">0</strong> 项本部门的有效数据授权' in card
    assert '<strong class="figure-inline">1</strong> 个目录资源可共享给其他部门' in card


def test_landing_page_leads_to_the_air_page_and_the_open_catalog(
    node: Platform, app: FastAPI
) -> None:
    with node.factory.begin() as session:
        province.load_departments(session)
        province.ingest_air_day(session)
    page = TestClient(app).get("/").text
    assert 'class="button" href="/air"' in page and 'href="/opendata"' in page
    # What a citizen can do without a department: verify a licence, report an issue.
    assert 'href="/licences/verify"' in _card(page, "licences")
    assert 'href="/login?next=/grid/report"' in _card(page, "grid")
    # The open data card counts the portal's datasets (none on this node yet).
    assert '<p class="figure">0</p>' in _card(page, "open-data")
    air = _card(page, "air")
    assert air.count("<li>") == 9 and "福州市" in air
    # The real day's last hour, 2022-01-04 15:00 UTC, said in China time and said to be old.
    assert "截至 2022-01-04 23:00:00（北京时间）的小时 AQI" in air and "非实时数据" in air


def test_the_open_data_card_counts_the_portals_datasets(node: Platform, app: FastAPI) -> None:
    from tests.opendata import kit

    with node.factory.begin() as session:
        kit.portal(session, node.lake)  # four listed datasets, one of them conditional
    page = TestClient(app).get("/").text
    assert '<p class="figure">4</p>' in _card(page, "open-data")


# --- the audit viewer ----------------------------------------------------------------------


def _audit_reads(node: Platform, action: str = "audit.read") -> int:
    with node.factory() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    AuditRecord.action == action, AuditRecord.outcome == "success"
                )
            )
            or 0
        )


def _seqs(page: str) -> list[int]:
    return [int(s) for s in re.findall(r'<td class="mono" data-label="#">(\d+)</td>', page)]


def _rows(node: Platform, seqs: list[int]) -> list[AuditRecord]:
    with node.factory() as session:
        return list(session.scalars(select(AuditRecord).where(AuditRecord.seq.in_(seqs))))


def test_audit_viewer_filters_and_hides_its_own_reads(node: Platform, app: FastAPI) -> None:
    auditor = _user(node, ["auditor"])
    outsider = signed_in(app, node, ["steward"], None)
    assert outsider.get("/audit", headers={"accept": "text/html"}).status_code == 403
    viewer = _browser(app, auditor)
    for _ in range(3):
        assert viewer.get("/audit").status_code == 200
    # One record per page view, not one per record shown.
    before = _audit_reads(node)
    page = viewer.get("/audit").text
    assert _audit_reads(node) == before + 1
    shown = _rows(node, _seqs(page))
    assert shown and not [r for r in shown if r.action == "audit.read" and r.outcome == "success"]
    # A refused attempt to read the log is not hidden with the reads.
    assert any(r.action == "audit.read" and r.outcome == "denied" for r in shown)
    with_reads = _rows(node, _seqs(viewer.get("/audit", params={"reads": "1"}).text))
    assert any(r.action == "audit.read" and r.outcome == "success" for r in with_reads)

    denied = _rows(node, _seqs(viewer.get("/audit", params={"outcome": "denied"}).text))
    assert denied and {r.outcome for r in denied} == {"denied"}
    mine = _rows(node, _seqs(viewer.get("/audit", params={"actor": auditor.username}).text))
    assert mine and {r.actor for r in mine} == {f"user:{auditor.username}"}
    accounts = _rows(node, _seqs(viewer.get("/audit", params={"object": "user"}).text))
    assert accounts and {r.object_type for r in accounts} == {"user"}
    logins = _rows(node, _seqs(viewer.get("/audit", params={"action": "auth.*"}).text))
    assert logins and {r.action for r in logins} == {"auth.login"}
    # Times are typed in China time.
    china = (clock.now() + timedelta(hours=8)).replace(tzinfo=None)
    later = viewer.get("/audit", params={"since": (china + timedelta(minutes=5)).isoformat()})
    assert _seqs(later.text) == [] and "没有符合条件的审计记录" in later.text
    earlier = viewer.get("/audit", params={"since": (china - timedelta(minutes=5)).isoformat()})
    assert _seqs(earlier.text)
    until = viewer.get("/audit", params={"until": (china - timedelta(minutes=5)).isoformat()})
    assert _seqs(until.text) == []
    wrong = viewer.get("/audit", params={"since": "yesterday"})
    assert wrong.status_code == 422 and 'class="field-error"' in wrong.text
    # The filters survive paging and show in the form.
    assert (
        'name="actor" value="' + auditor.username
        in viewer.get("/audit", params={"actor": auditor.username}).text
    )


def test_audit_export_streams_csv_and_is_audited_once(node: Platform, app: FastAPI) -> None:
    auditor = _user(node, ["auditor"])
    signed_in(app, node, ["steward"], None).get("/audit")  # a denial to export
    viewer = _browser(app, auditor)
    reads, exports = _audit_reads(node), _audit_reads(node, "audit.export")
    with viewer.stream("GET", "/audit/export.csv", params={"outcome": "denied"}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        assert "attachment" in answer.headers["content-disposition"]
        body = b"".join(answer.iter_bytes())
    assert body.startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    header, rows = table[0], table[1:]
    assert header[:4] == ["序号", "时间", "操作者", "姓名"]
    with node.factory() as session:
        denied = session.scalar(select(func.count()).where(AuditRecord.outcome == "denied"))
    assert len(rows) == denied and {r[header.index("结果")] for r in rows} == {"denied"}
    assert all(r[1].endswith("+08:00") for r in rows)  # China time
    assert _audit_reads(node, "audit.export") == exports + 1
    assert _audit_reads(node) == reads  # the export is one record, not a read per batch
    # Everything the log holds, newest first, across batches.
    from minyun.admin import service as admin

    batches = list(admin.iter_audit(node.factory, admin.AuditFilters(include_reads=True)))
    seqs = [row.record.seq for batch in batches for row in batch]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == len(set(seqs))
    with node.factory() as session:
        assert len(seqs) == session.scalar(select(func.count()).select_from(AuditRecord))


def test_auditor_dashboard_counts_the_last_day(node: Platform, app: FastAPI) -> None:
    auditor = _user(node, ["auditor"])
    signed_in(app, node, ["steward"], None).get("/audit")
    card = _card(_browser(app, auditor).get("/").text, "audit")
    with node.factory() as session:
        denied = session.scalar(select(func.count()).where(AuditRecord.outcome == "denied"))
    assert f'<strong class="figure-inline">{denied}</strong> 被拒绝' in card
    assert 'href="/audit?outcome=denied"' in card


# --- the eco consultation form -------------------------------------------------------------


@pytest.fixture
def alert_page(node: Platform, app: FastAPI) -> tuple[TestClient, str, str]:
    """The Zhangzhou officer on the page of the demo day's Zhangzhou alert, and its token."""
    with node.factory.begin() as session:
        province.load_departments(session)
        report = province.ingest_air_day(session)
        zz = session.scalars(select(Organization.id).where(Organization.code == "zz-eco")).one()
    officer = signed_in(app, node, ["operator", "consumer"], zz)
    url = f"/eco/alerts/{report.alerts_opened[0]}"
    page = officer.get(url)
    assert page.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    return officer, url, token.group(1)


def test_consultation_departments_are_picked_by_name(
    alert_page: tuple[TestClient, str, str],
) -> None:
    officer, url, token = alert_page
    page = officer.get(url).text
    assert '<input type="checkbox" name="departments" value="fj-transport">' in page
    assert "福建省交通运输厅" in page and "厦门市" in page  # grouped by city
    assert 'placeholder="xm-eco' not in page  # no codes to type by hand
    # The timeline and the state are in Chinese.
    assert 'id="alert-state">待响应' in page and "发现污染过程" in page
    assert "个站点连续" in page and "漳州市 → 漳州市生态环境局" in page
    answer = officer.post(
        f"{url}/consultation",
        data={"departments": ["fj-transport", "xm-eco"], "note": "视频会商", "csrf": token},
    )
    assert answer.status_code == 303
    after = officer.get(url).text
    assert 'id="alert-state">会商中' in after
    assert "与 福建省交通运输厅、厦门市生态环境局 会商：视频会商" in after


def test_a_refused_consultation_keeps_the_input_and_says_why_next_to_the_field(
    alert_page: tuple[TestClient, str, str],
) -> None:
    officer, url, token = alert_page
    none = officer.post(f"{url}/consultation", data={"note": "先写备注", "csrf": token})
    assert none.status_code == 422
    assert 'id="consult-departments-error"' in none.text and "请至少选择一个会商部门" in none.text
    assert 'value="先写备注"' in none.text
    assert 'aria-invalid="true"' in none.text
    unknown = officer.post(
        f"{url}/consultation",
        data={"departments": ["fj-transport", "nobody"], "note": "x", "csrf": token},
    )
    assert unknown.status_code == 422 and "未知的部门：nobody" in unknown.text
    assert 'value="fj-transport" checked' in unknown.text  # the pick is kept
    assert 'id="alert-state">待响应' in officer.get(url).text  # nothing changed


# --- stored sentences and times --------------------------------------------------------------


def _say(text: str, locale: str = "zh", names: dict[str, str] | None = None) -> str:
    return wording.say(text, i18n.translations(locale).gettext, when, names)


def test_stored_sentences_are_said_in_chinese_with_times_in_china_time() -> None:
    assert _say("no pollutant values") == "没有任何污染物数值"
    assert _say("unknown station 9999A") == "未知站点 9999A"
    assert (
        _say("7 stations in 漳州市、龙岩市 above AQI 75 for 10 consecutive hours; peak 118")
        == "漳州市、龙岩市 有 7 个站点连续 10 小时 AQI 高于 75；峰值 118"
    )
    assert (
        _say("still above 75 at 2022-01-04T15:00:00+00:00: 2075A AQI 118")
        == "2022-01-04 23:00:00 仍有站点 AQI 高于 75：2075A AQI 118"
    )
    assert (
        _say("漳州市 → zz-eco", names={"zz-eco": "漳州市生态环境局"}) == "漳州市 → 漳州市生态环境局"
    )
    assert _say("jobs.read is not permitted for this account") == "本账号无此权限：查看任务"
    assert _say("ingest.load succeeded") == "数据加载：成功"
    assert _say("a sentence nobody registered") == "a sentence nobody registered"
    # The English pages keep the English sentence.
    assert _say("no pollutant values", "en") == "no pollutant values"


def test_times_are_shown_in_the_provinces_time_zone() -> None:
    assert when(datetime(2022, 1, 4, 20, 0, tzinfo=UTC)) == "2022-01-05 04:00:00"
    assert when(None) == ""


def test_error_pages_speak_chinese_and_fold_away_what_they_cannot_translate(
    node: Platform, app: FastAPI
) -> None:
    admin = signed_in(app, node, ["admin"], None)
    html = {"accept": "text/html"}
    missing = admin.get("/jobs/0123456789abcdef", headers=html)
    assert missing.status_code == 404 and "没有编号为 0123456789abcdef 的任务。" in missing.text
    assert "技术详情" not in missing.text
    invalid = admin.get("/audit?before=abc", headers=html)
    assert invalid.status_code == 422
    assert "部分填写内容无效" in invalid.text and "技术详情" in invalid.text
    detail = re.search(r'<p class="detail">(.*?)</p>', invalid.text, re.S)
    assert detail and not re.search("[A-Za-z]{3}", detail.group(1))
    anonymous = TestClient(app).get("/catalog/nope", headers=html)
    assert anonymous.status_code == 401 and "请先登录：未登录时只显示开放数据。" in anonymous.text
