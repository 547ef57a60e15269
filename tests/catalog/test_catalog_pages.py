"""The catalog pages: browse and search, one resource with schema, versions, quality, lineage."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from minyun.catalog import service
from minyun.core import clock
from minyun.core.platform import Platform
from minyun.ingest.models import Version
from minyun.web.app import create_app
from tests import factories
from tests.web.test_pages import browser, csrf_of, make_user, sign_in


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform)


def publish_two(platform: Platform) -> dict[str, Any]:
    with platform.factory.begin() as s:
        org = factories.make_org(s, name="福建省市场监督管理局样例")
        a = factories.make_resource(
            s, provider=org, name="企业登记信息", base_library="legal-person"
        )
        b = factories.make_resource(s, provider=org, name="空气质量小时数据", theme="environment")
        draft = factories.make_resource(s, provider=org, name="未发布的草稿资源")
        for r in (a, b):
            service.publish_resource(s, factories.SYSTEM, r.code)
        return {"org": org, "a": a.code, "b": b.code, "draft": draft.code}


def test_catalog_is_in_the_menu_and_browses_by_theme(platform: Platform, app: FastAPI) -> None:
    made = publish_two(platform)
    user = make_user(platform, roles=["consumer"])
    client = browser(app)
    sign_in(client, user.username)
    page = client.get("/catalog")
    assert page.status_code == 200
    assert 'href="/catalog"' in page.text and "资源目录" in page.text
    assert "企业登记信息" in page.text and "空气质量小时数据" in page.text
    assert "未发布的草稿资源" not in page.text  # another organisation's draft
    assert "生态环境" in page.text and "法人基础库" in page.text  # the facets, in Chinese
    by_theme = client.get("/catalog", params={"theme": "environment"})
    assert "空气质量小时数据" in by_theme.text and "企业登记信息" not in by_theme.text
    by_library = client.get("/catalog", params={"library": "legal-person"})
    assert "企业登记信息" in by_library.text and "空气质量小时数据" not in by_library.text
    by_org = client.get("/catalog", params={"provider": made["org"].code})
    assert "共 2 个资源" in by_org.text


def test_search_box_finds_chinese_and_answers_htmx_with_a_fragment(
    platform: Platform, app: FastAPI
) -> None:
    publish_two(platform)
    user = make_user(platform)
    client = browser(app)
    sign_in(client, user.username)
    page = client.get("/catalog", params={"q": "企业登记"})
    assert "企业登记信息" in page.text and "空气质量小时数据" not in page.text
    fragment = client.get("/catalog", params={"q": "空气"}, headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and "空气质量小时数据" in fragment.text
    escaped = client.get("/catalog", params={"q": "<script>x</script>"})
    assert "<script>x</script>" not in escaped.text


def test_resource_page_shows_schema_versions_quality_and_lineage(
    platform: Platform, app: FastAPI
) -> None:
    made = publish_two(platform)
    with platform.factory.begin() as s:
        resource = service.get_resource(s, made["a"])
        s.add(
            Version(
                resource_id=resource.id, lake_version=0, state="committed", mode="full",
                source="enterprises.csv", source_kind="csv", sha256="ab" * 32,
                schema_version="1.0", rows_read=100, rows_accepted=97, rows_rejected=3,
                loaded_by="user:steward", committed_at=clock.now(),
                quality={"fields": {
                    "ric": {"completeness": 1.0, "validity": 0.97, "uniqueness": 1.0,
                            "distinct": 97},
                    "age": {"completeness": 0.9, "validity": 1.0, "uniqueness": 0.4,
                            "distinct": 40, "min": 18, "max": 88},
                }},
            )
        )  # fmt: skip
    user = make_user(platform, roles=["consumer"])
    client = browser(app)
    sign_in(client, user.username)
    page = client.get(f"/catalog/{made['a']}")
    assert page.status_code == 200
    text = page.text
    assert "企业登记信息" in text and "公民身份号码" in text and "cn-ric" in text
    assert "敏感" in text  # the field's sensitivity
    assert "97.0%" in text  # the quality table works without JavaScript
    # Another department's consumer sees no values of a field above public (age: internal).
    assert ">88</td>" not in text
    assert 'id="catalog-chart-data"' in text and "/static/vendor/echarts.min.js" in text
    assert "enterprises.csv" in text and "ab" * 32 in text and "user:steward" in text
    assert '/publish"' not in text and '/retire"' not in text  # a consumer gets no buttons
    assert client.get("/static/catalog.js").status_code == 200


def _chart(text: str) -> dict[str, Any]:
    start = text.index('id="catalog-chart-data">') + len('id="catalog-chart-data">')
    return dict(json.loads(text[start : text.index("</script>", start)]))


def test_uniqueness_is_shown_only_for_fields_that_must_not_repeat(
    platform: Platform, app: FastAPI
) -> None:
    made = publish_two(platform)
    with platform.factory.begin() as s:
        resource = service.get_resource(s, made["a"])
        s.add(
            Version(
                resource_id=resource.id, lake_version=0, state="committed", mode="full",
                source="e.csv", source_kind="csv", schema_version="1.0", rows_read=100,
                rows_accepted=96, rows_rejected=4, loaded_by="user:steward",
                committed_at=clock.now(),
                quality={"rows": 96, "fields": {
                    "ric": {"completeness": 1.0, "validity": 1.0, "uniqueness": 1.0,
                            "unique": "unique", "distinct": 96, "rejected": 4},
                    "age": {"completeness": 0.9, "validity": 1.0, "distinct": 40,
                            "rejected": 0},
                }},
            )
        )  # fmt: skip
    admin = make_user(platform, roles=["admin"])
    client = browser(app)
    sign_in(client, admin.username)
    text = client.get(f"/catalog/{made['a']}").text
    chart = _chart(text)
    assert chart["fields"] == ["ric", "age"]
    [uniqueness] = [s["data"] for s in chart["series"] if s["name"] == "唯一性"]
    assert uniqueness == [100.0, None]  # no bar for the categorical field
    assert '<td data-label="唯一性">–</td>' in text
    assert '<td data-label="已拒收">4</td>' in text


def test_a_report_without_key_fields_charts_no_uniqueness(platform: Platform, app: FastAPI) -> None:
    made = publish_two(platform)
    with platform.factory.begin() as s:
        resource = service.get_resource(s, made["a"])
        s.add(
            Version(
                resource_id=resource.id, lake_version=0, state="committed", mode="full",
                source="e.csv", source_kind="csv", schema_version="1.0", rows_read=10,
                rows_accepted=10, rows_rejected=0, loaded_by="user:steward",
                committed_at=clock.now(),
                # An older report gave every field a uniqueness: a status at 0.5% is no defect.
                quality={"fields": {"age": {"completeness": 1.0, "validity": 1.0,
                                            "uniqueness": 0.005, "distinct": 5}}},
            )
        )  # fmt: skip
    admin = make_user(platform, roles=["admin"])
    client = browser(app)
    sign_in(client, admin.username)
    text = client.get(f"/catalog/{made['a']}").text
    assert [s["name"] for s in _chart(text)["series"]] == ["完整性", "有效性"]
    assert "0.5%" not in text


def test_hidden_draft_and_missing_resource_look_the_same(platform: Platform, app: FastAPI) -> None:
    made = publish_two(platform)
    user = make_user(platform)
    client = browser(app)
    sign_in(client, user.username)
    hidden = client.get(f"/catalog/{made['draft']}")
    missing = client.get("/catalog/never-was")
    assert hidden.status_code == missing.status_code == 404
    anonymous = browser(app).get("/catalog")  # the open catalog: published open data only
    assert anonymous.status_code == 200 and made["a"] in anonymous.text
    assert made["draft"] not in anonymous.text


def test_provider_steward_publishes_from_the_page(platform: Platform, app: FastAPI) -> None:
    made = publish_two(platform)
    steward = make_user(platform, roles=["steward"], organization=made["org"])
    client = browser(app)
    sign_in(client, steward.username)
    page = client.get(f"/catalog/{made['draft']}")
    assert page.status_code == 200 and f'action="/catalog/{made["draft"]}/publish"' in page.text
    assert client.post(f"/catalog/{made['draft']}/publish", data={}).status_code == 403
    done = client.post(f"/catalog/{made['draft']}/publish", data={"csrf": csrf_of(page)})
    assert done.status_code == 303
    assert "已发布" in client.get(f"/catalog/{made['draft']}").text


def test_english_page(platform: Platform, app: FastAPI) -> None:
    made = publish_two(platform)
    user = make_user(platform)
    client = browser(app)
    sign_in(client, user.username)
    client.get("/lang/en")
    page = client.get(f"/catalog/{made['b']}")
    assert "Sharing type" in page.text and "Ecology and environment" in page.text
    assert made["draft"] not in TestClient(app).get("/catalog").text
