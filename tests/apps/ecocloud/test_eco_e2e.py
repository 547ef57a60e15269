"""End to end: the real day over MQTT into a running node, a planted episode, the joint response
in a real browser, and the station map in headless Chromium."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from minyun.apps.ecocloud import mqtt
from minyun.apps.ecocloud.models import Alert, Reading
from minyun.core.audit import AuditRecord
from minyun.core.platform import Platform
from minyun.demo import province
from tests.apps.ecocloud.conftest import DAY, plant_episode
from tests.browser import CHROMIUM, CHROMIUM_ARGS, RESULTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_episode_over_mqtt_to_a_closed_joint_response(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with platform.factory.begin() as session:
        province.load_departments(session)
        demo = {a.username: a for a in province.load_accounts(session, platform.settings.var_dir)}
    account = demo["eco-fuzhou"]  # 福州市生态环境局值班员

    prefix = f"minyun-test/{uuid.uuid4().hex[:12]}/eco/stations"
    subscriber = mqtt.Subscriber(platform.factory, prefix=prefix, batch_seconds=0.1).start()
    try:
        assert subscriber.subscribed.wait(10)
        # 24 real hours at 36000× real time (0.1 s an hour), Fuzhou and Xiamen planted high.
        sent = mqtt.replay(DAY, speed=36000, prefix=prefix, transform=plant_episode)
        assert sent == 1008
        assert subscriber.wait_idle(quiet=0.5, timeout=60)
    finally:
        subscriber.stop()
    assert len(subscriber.stats.alerts_opened) == 1 and subscriber.stats.failures == 0
    alert_id = subscriber.stats.alerts_opened[0]
    with platform.factory() as session:
        assert session.scalar(select(func.count()).select_from(Reading)) == 1007
        alert = session.get(Alert, alert_id)
        assert alert is not None and {"福州市", "厦门市"} <= set(alert.cities)
        assert {"fz-eco", "xm-eco"} <= set(alert.org_codes)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server}/login")
            page.fill("#username", account.username)
            page.fill("#password", account.password)
            page.click("form.stack button[type=submit]")
            page.wait_for_url(f"{server}/")

            page.goto(f"{server}/eco/alerts")
            page.click(f"a[href='/eco/alerts/{alert_id}']")
            expect(page.locator("#alert-state")).to_have_text("待响应")
            # Departments are picked by name, not typed as codes.
            page.get_by_label("厦门市生态环境局").check()
            page.get_by_label("福建省交通运输厅").check()
            page.fill("#consult-form input[name=note]", "福州、厦门视频会商")
            page.click("#consult-form button")
            expect(page.locator("#alert-state")).to_have_text("会商中")
            expect(page.locator("#timeline")).to_contain_text(
                "与 福建省交通运输厅、厦门市生态环境局 会商：福州、厦门视频会商"
            )
            page.select_option("#level-form select[name=level]", "light")
            page.click("#level-form button")
            expect(page.locator("#alert-state")).to_have_text("响应中")
            page.fill("#action-form input[name=note]", "建筑工地停工，道路增加洒水频次")
            page.click("#action-form button")
            expect(page.locator("#timeline")).to_contain_text("道路增加洒水频次")
            page.fill("#close-form input[name=note]", "空气质量恢复良好")
            page.click("#close-form button")
            expect(page.locator("#alert-state")).to_have_text("已关闭")
            expect(page.locator("#time-to-response")).to_contain_text("分")
            page.screenshot(path=tmp_path / "eco-alert.png", full_page=True)

            page.goto(f"{server}/eco")
            expect(page.locator("path.eco-station")).to_have_count(42)
            expect(page.locator("path.eco-city-outline")).to_have_count(9)
            page.screenshot(path=tmp_path / "eco-map.png", full_page=True)

            page.goto(f"{server}/eco/cities?city=福州市")
            expect(page.locator(".eco-chart[data-ready='1'] canvas")).to_have_count(1)
            page.screenshot(path=tmp_path / "eco-cities.png", full_page=True)

            public = browser.new_page()
            public.goto(f"{server}/air")
            expect(public.locator(".eco-city")).to_have_count(9)
        finally:
            browser.close()

    RESULTS.mkdir(exist_ok=True)
    for name in ("eco-map.png", "eco-alert.png", "eco-cities.png"):
        shutil.copy(tmp_path / name, RESULTS / name)
    assert (tmp_path / "eco-map.png").stat().st_size > 10_000
    with platform.factory() as session:
        actions = set(
            session.scalars(
                select(AuditRecord.action).where(AuditRecord.object_id == str(alert_id))
            )
        )
    assert {
        "eco.alert.consult",
        "eco.alert.level",
        "eco.alert.action",
        "eco.alert.close",
    } <= actions
