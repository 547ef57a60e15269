"""The air map and the public air page in headless Chromium, at desk and phone sizes.

The demo's real day is loaded as `minyun demo` loads it (its alert included); the screenshots
are kept in test-results/ (eco-map-desk.png, eco-map-phone.png, air-desk.png, air-phone.png,
eco-cities.png, eco-alerts.png) for a person to look at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import func, select

from minyun.apps.ecocloud import ingest
from minyun.apps.ecocloud.models import Reading
from minyun.core.platform import Platform
from minyun.demo import province
from tests.browser import CHROMIUM, CHROMIUM_ARGS, keep

pytestmark = pytest.mark.browser

DESK = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}

# Boxes of the visible city names and of the station markers, in page pixels.
_BOXES = """() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  return {
    labels: [...document.querySelectorAll('.eco-label:not(.eco-label-hidden), .eco-outside-tip')]
      .map(box),
    stations: [...document.querySelectorAll('path.eco-station')].map(box),
  };
}"""

_CHART = """() => {
  const box = document.querySelector('.eco-chart[data-ready="1"]');
  const option = echarts.getInstanceByDom(box).getOption();
  return {
    axes: option.yAxis.map((a) => a.name),
    series: option.series.map((s) => ({name: s.name, axis: s.yAxisIndex, colour: s.color,
                                       line: s.lineStyle.color, item: s.itemStyle.color})),
    legend: option.legend[0].data,
    visualMap: (option.visualMap || []).length,
  };
}"""


def _overlapping(boxes: dict[str, list[dict[str, float]]]) -> list[Any]:
    return [
        (label, station)
        for label in boxes["labels"]
        for station in boxes["stations"]
        if label["left"] < station["right"]
        and station["left"] < label["right"]
        and label["top"] < station["bottom"]
        and station["top"] < label["bottom"]
    ]


def _check_map(page: Any, expect: Any) -> None:
    box = page.locator("#eco-map")
    expect(box).to_have_attribute("data-ready", "1", timeout=15_000)
    # Fujian's 9 cities and 85 counties are drawn from the vendored GeoJSON.
    expect(box).to_have_attribute("data-cities", "9")
    expect(box).to_have_attribute("data-counties", "85")
    expect(page.locator("path.eco-city-outline")).to_have_count(9)
    expect(page.locator("path.eco-station")).to_have_count(42)
    # The Zhangzhou station whose source longitude (114.66) is in Guangdong is flagged.
    expect(box).to_have_attribute("data-outside", "1")
    expect(page.locator('path.eco-station-outside[data-code="3216A"]')).to_have_count(1)
    flagged = page.locator("#eco-station-list li.eco-outside")
    expect(flagged).to_have_count(1)
    expect(flagged).to_contain_text("漳州党校")
    expect(flagged).to_contain_text("114.6622")
    # City names never cover a station marker.
    boxes = page.evaluate(_BOXES)
    assert len(boxes["labels"]) >= 7, boxes["labels"]  # 6 city names at least, and the flag
    assert _overlapping(boxes) == []
    expect(page.locator("#eco-as-of")).to_contain_text("数据时间：2022-01-04 23:00")
    expect(page.locator("#eco-as-of")).to_contain_text("非实时数据")


def test_air_map_and_public_page_at_desk_and_phone_sizes(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with platform.factory.begin() as session:
        province.load_departments(session)
        demo = {a.username: a for a in province.load_accounts(session, platform.settings.var_dir)}
        report = province.ingest_air_day(session)
    assert len(report.alerts_opened) == 2  # the demo's: Zhangzhou's morning, Sanming's evening
    account = demo["eco-zhangzhou"]

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=tmp_path / name, full_page=True)
        keep(tmp_path / name)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desk = browser.new_page(viewport=DESK)  # type: ignore[arg-type]
            errors: list[str] = []
            desk.on("pageerror", lambda e: errors.append(str(e)))
            desk.goto(f"{server}/login")
            desk.fill("#username", account.username)
            desk.fill("#password", account.password)
            desk.click("form.stack button[type=submit]")
            desk.wait_for_url(f"{server}/")

            desk.goto(f"{server}/eco")
            _check_map(desk, expect)
            assert errors == []
            desk.screenshot(path=tmp_path / "eco-map-desk.png")
            keep(tmp_path / "eco-map-desk.png")

            phone_context = browser.new_context(
                viewport=PHONE,  # type: ignore[arg-type]
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
            )
            phone_context.add_cookies(desk.context.cookies())  # type: ignore[arg-type]
            phone = phone_context.new_page()
            phone.goto(f"{server}/eco")
            _check_map(phone, expect)
            phone.screenshot(path=tmp_path / "eco-map-phone.png")
            keep(tmp_path / "eco-map-phone.png")
            assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

            # AQI on its own axis; each legend entry in the colour of its line.
            desk.goto(f"{server}/eco/cities?city=漳州市")
            expect(desk.locator(".eco-chart[data-ready='1'] canvas")).to_have_count(1)
            chart = desk.evaluate(_CHART)
            assert chart["axes"] == ["AQI", "µg/m³"] and chart["visualMap"] == 0
            axes = {s["name"]: s["axis"] for s in chart["series"]}
            assert axes == {"AQI": 0, "PM2.5": 1}
            assert all(s["colour"] == s["line"] == s["item"] for s in chart["series"])
            assert len({s["colour"] for s in chart["series"]}) == 2
            expect(desk.locator("#eco-as-of")).to_contain_text("非实时数据")
            expect(desk.locator(".eco-standards")).to_contain_text("HJ 633-2012")
            expect(desk.locator(".eco-standards")).to_contain_text("HJ 663-2013")
            shot(desk, "eco-cities.png")
            desk.goto(f"{server}/eco/stations/3216A")
            expect(desk.locator(".eco-chart[data-ready='1'] canvas")).to_have_count(1)
            chart = desk.evaluate(_CHART)
            assert {s["name"]: s["axis"] for s in chart["series"]} == {
                "AQI": 0, "PM2.5": 1, "PM10": 1, "NO2": 1, "O3": 1,
            }  # fmt: skip
            expect(desk.locator(".eco-flag")).to_contain_text("漳州市")

            # The demo's alert is in the Zhangzhou officer's inbox.
            desk.goto(f"{server}/eco/alerts")
            expect(desk.locator("#eco-alerts tbody tr")).to_have_count(1)
            expect(desk.locator("#eco-alerts")).to_contain_text("漳州市")
            shot(desk, "eco-alerts.png")

            # The public page: level names and the HJ 633-2012 advice, data dated.
            for page, name in ((browser.new_page(viewport=DESK), "air-desk.png"),  # type: ignore[arg-type]
                               (browser.new_page(viewport=PHONE), "air-phone.png")):  # type: ignore[arg-type]  # fmt: skip
                page.goto(f"{server}/air")
                expect(page.locator(".eco-city")).to_have_count(9)
                expect(page.locator(".eco-level").first).to_be_visible()
                expect(page.locator(".eco-levels tbody tr")).to_have_count(6)
                expect(page.locator(".eco-levels")).to_contain_text("各类人群可正常活动")
                expect(page.locator(".eco-levels")).to_contain_text("严重污染")
                expect(page.locator("#eco-as-of")).to_contain_text("非实时数据")
                assert "实时空气质量" not in page.content()
                shot(page, name)
        finally:
            browser.close()


def test_a_station_name_reaches_the_map_as_text(
    platform: Platform, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with platform.factory.begin() as session:
        province.load_departments(session)
        demo = {a.username: a for a in province.load_accounts(session, platform.settings.var_dir)}
        province.ingest_air_day(session)
        latest = session.scalar(select(func.max(Reading.hour)))
        assert latest is not None
        row = {"station_code": "9999A", "hour": latest.isoformat(), "pm2_5": 20, "pm10": 30,
               "o3": 40, "no2": 10, "so2": 5, "co": 0.4, "name": "<b>x</b>",
               "city": "南平市", "longitude": 118.9, "latitude": 27.8}  # fmt: skip
        ingest.ingest_readings(session, province.SYSTEM, pa.Table.from_pylist([row]))
    account = demo["eco-fuzhou"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=DESK)  # type: ignore[arg-type]
            page.goto(f"{server}/login")
            page.fill("#username", account.username)
            page.fill("#password", account.password)
            page.click("form.stack button[type=submit]")
            page.wait_for_url(f"{server}/")
            page.goto(f"{server}/eco")
            expect(page.locator("#eco-map")).to_have_attribute("data-ready", "1", timeout=15_000)
            marker = page.locator('path.eco-station[data-code="9999A"]')
            marker.hover()
            tip = page.locator(".eco-station-tip")
            expect(tip).to_contain_text("南平市 <b>x</b> (9999A)")
            expect(tip.locator("b")).to_have_count(0)
            marker.click()
            popup = page.locator(".leaflet-popup-content")
            expect(popup).to_contain_text("<b>x</b>")
            expect(popup.locator("b")).to_have_count(0)
            expect(page.locator("#eco-station-list")).to_contain_text("<b>x</b>")
        finally:
            browser.close()
