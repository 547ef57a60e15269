"""A department's steward publishes on the web, in headless Chromium: register a resource from
a sample CSV, upload a file with planted bad rows, watch its load finish, read the rejects
and download them as CSV. Screenshots at desk and phone sizes go to var/screenshots/."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest

from minyun.core import identifiers
from minyun.core.platform import Platform
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
DESK = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 800}
HEADER = ["公民身份号码", "姓名", "性别", "出生日期", "所在县区", "手机号码", "年收入"]


def _person(n: int) -> list[str]:
    birth = dt.date(1970, 1, 1) + dt.timedelta(days=97 * n)
    ric = identifiers.make_ric("350102", birth, n % 1000)
    return [ric, f"林{'闽榕榴'[n % 3]}{n}", "男女"[n % 2], birth.isoformat(), "350102",
            f"139{n:08d}", f"{30000 + 17 * n}"]  # fmt: skip


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"steward-{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width}px wide on a 375px phone"


def test_steward_publishes_loads_and_downloads_rejects(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with platform.factory.begin() as session:
        org = factories.make_org(session, name="福州市卫生健康委员会")
        steward = factories.make_user(
            session, roles=["steward"], organization=org, display_name="卫健委数据专员"
        )
        username = steward.username
    sample = tmp_path / "居民健康档案样例.csv"
    sample.write_bytes(_csv([_person(n) for n in range(1, 41)]))
    # 100 rows, 3 of them bad: a broken identity number, a date that is not one, a missing
    # name; under the 5% a load may refuse, so the version commits with 3 rejects.
    rows = [_person(n) for n in range(1, 101)]
    rows[9][0] = rows[9][0][:17] + ("0" if rows[9][0][17] != "0" else "1")  # row 10
    rows[41][3] = "1985-02-30"  # row 42
    rows[76][1] = ""  # row 77
    upload = tmp_path / "居民健康档案.csv"
    upload.write_bytes(_csv(rows))

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desk = browser.new_context(viewport=DESK, accept_downloads=True, locale="zh-CN")
            page = desk.new_page()
            page.goto(f"{server}/login")
            page.fill("#username", username)
            page.fill("#password", factories.PASSWORD)
            page.click("form.stack button[type=submit]")
            page.wait_for_url(f"{server}/")

            # Register the resource, its schema read from the sample.
            page.goto(f"{server}/catalog")
            page.click("#new-resource")
            expect(page.locator("h1")).to_have_text("登记新资源")
            page.fill("#code", "fz-health-records")
            page.fill("#name", "福州市居民健康档案")
            page.fill("#summary", "福州市居民的基本健康档案信息。")
            page.select_option("#theme", "health")
            page.select_option("#update_cycle", "monthly")
            page.select_option("#sharing_type", "conditional")
            page.fill("#sharing_condition", "用于医疗卫生业务办理")
            page.fill("#legal_basis", "《福建省政务数据管理办法》")
            page.set_input_files("#sample", str(sample))
            page.click("button[name=op][value=sample]")
            expect(page.locator(".alert.ok")).to_contain_text("已读取 40 行")
            ric = page.locator("#field-0")
            expect(ric.locator("input[name='f0.name']")).to_have_value("公民身份号码")
            expect(ric.locator("select[name='f0.format']")).to_have_value("cn-ric")
            expect(ric.locator("input[name='f0.key']")).to_be_checked()
            expect(ric.locator("select[name='f0.mask']")).to_have_value("keep(3,4)")
            expect(page.locator("select[name='f3.type']")).to_have_value("date")
            expect(page.locator("select[name='f6.type']")).to_have_value("integer")
            expect(page.locator("#name")).to_have_value("福州市居民健康档案")  # kept
            # The steward edits what the sample could not know.
            page.fill("input[name='f6.title']", "年收入（元）")
            page.select_option("select[name='f6.sensitivity']", "sensitive")
            _shot(page, "new-desk")
            page.click("#create")
            page.wait_for_url(f"{server}/catalog/fz-health-records")
            expect(page.locator("#schema")).to_contain_text("cn-ric")
            expect(page.locator("#schema")).to_contain_text("年收入（元）")

            # Upload the file and watch its load finish.
            page.click("#upload-data")
            page.set_input_files("#file", str(upload))
            page.select_option("#mode", "full")
            page.click("#upload")
            page.wait_for_url("**/catalog/fz-health-records/loads/*")
            expect(page.locator("#load-state")).to_have_text("已提交", timeout=30_000)
            expect(page.locator(".counts")).to_contain_text("100")
            expect(page.locator("#rejects-link")).to_have_text("3")
            _shot(page, "load-desk")
            load_url = page.url

            # The rejects page, filtered by reason, and its CSV.
            page.click("#rejects-link")
            expect(page.locator("h1")).to_have_text("拒绝记录")
            table = page.locator("#rejects tbody tr")
            expect(table).to_have_count(3)
            expect(page.locator("#rejects")).to_contain_text("不是有效的公民身份号码（GB 11643）")
            expect(page.locator("#rejects")).to_contain_text("不是有效的日期")
            expect(page.locator("#rejects")).to_contain_text("必填项为空")
            _shot(page, "rejects-desk")
            rejects_url = page.url
            with page.expect_download() as got:
                page.click("#download")
            download = got.value
            text = Path(download.path()).read_text("utf-8-sig")
            found = list(csv.reader(io.StringIO(text)))
            assert found[0] == ["行号", "字段", "原因", "原始记录"]
            assert [(r[0], r[1], r[2]) for r in found[1:]] == [
                ("10", "公民身份号码", "不是有效的公民身份号码（GB 11643）"),
                ("42", "出生日期", "不是有效的日期"),
                ("77", "姓名", "必填项为空"),
            ]
            assert rows[9][0] in found[1][3] and "1985-02-30" in found[2][3]
            assert download.suggested_filename == "fz-health-records-load-1-rejects.csv"
            page.select_option("#reason", "required")
            page.click("form.filters button[type=submit]")
            expect(table).to_have_count(1)
            expect(page.locator("#rejects")).to_contain_text("77")

            # The same pages on a phone: nothing wider than the screen.
            phone = browser.new_context(
                viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
            )
            phone.add_cookies(desk.cookies())  # type: ignore[arg-type]
            small = phone.new_page()
            for name, url in (
                ("resource-phone", f"{server}/catalog/fz-health-records"),
                ("load-phone", load_url),
                ("rejects-phone", rejects_url),
                ("preview-phone", f"{server}/catalog/fz-health-records/preview"),
                ("upload-phone", f"{server}/catalog/fz-health-records/loads/new"),
            ):
                small.goto(url)
                expect(small.locator("h1")).to_be_visible()
                _no_sideways_scroll(small)
                _shot(small, name)
            # A file over the node's limit is refused beside its field before it is sent.
            small.goto(f"{server}/catalog/fz-health-records/loads/new")
            small.evaluate("document.querySelector('#file').dataset.maxBytes = '100'")
            small.set_input_files("#file", str(upload))
            expect(small.locator("#file-size-error")).to_contain_text("文件超过上限")
            small.click("#upload")
            expect(small).to_have_url(f"{server}/catalog/fz-health-records/loads/new")
            small.goto(f"{server}/catalog/new")
            small.set_input_files("#sample", str(sample))
            small.click("button[name=op][value=sample]")
            expect(small.locator(".alert.ok")).to_contain_text("已读取 40 行")
            _no_sideways_scroll(small)
            _shot(small, "new-phone")
            for name, url in (("resource-desk", f"{server}/catalog/fz-health-records"),):
                page.goto(url)
                _shot(page, name)
        finally:
            browser.close()

    assert (SHOTS / "steward-rejects-desk.png").stat().st_size > 10_000
