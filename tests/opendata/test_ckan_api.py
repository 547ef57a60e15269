"""The CKAN Action API driven by the real `ckanapi` client against the running server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from ckanapi import NotAuthorized, NotFound, RemoteCKAN, SearchQueryError, ValidationError

from minyun.core.platform import Platform
from tests.conftest import make_settings
from tests.opendata import kit

pytestmark = pytest.mark.browser  # a served app (uvicorn in a thread)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[kit.Portal, str]]:
    """One served node for the module: the tests only read (their reads are audited)."""
    from minyun.web.app import create_app
    from tests.browser import serve

    node = Platform.open(make_settings(tmp_path_factory.mktemp("ckan") / "var"))
    node.migrate()
    with node.factory.begin() as s:
        made = kit.portal(s, node.lake)
    try:
        with serve(create_app(node)) as base:
            yield made, base
    finally:
        node.close()


def test_ckanapi_reads_the_catalogue(site: tuple[kit.Portal, str]) -> None:
    p, base = site
    for get_only in (False, True):
        ckan = RemoteCKAN(base, get_only=get_only)
        status = ckan.action.status_show()
        assert status["ckan_version"].startswith("2.") and "datastore" in status["extensions"]
        assert ckan.action.package_list() == sorted(["ents", "ents-fz", "capital-by-city", "cond"])
        assert ckan.action.package_list(limit=2, offset=1) == ["cond", "ents"]

        ents = ckan.action.package_show(id="ents")
        assert ents["id"] == p.ents_key and ents["title"] == "企业登记信息"
        assert ents["num_rows"] == 30
        assert [t["name"] for t in ents["tags"]] == ["企业", "登记"]
        assert [g["name"] for g in ents["groups"]] == ["market-regulation"]
        assert {r["format"] for r in ents["resources"]} == {"CSV", "XLSX", "JSON", "Parquet", "API"}
        assert ckan.action.package_show(id=p.ents_key)["name"] == "ents"
        with pytest.raises(NotFound):
            ckan.action.package_show(id="no-such")

        # Chinese full text: 企业 in 企业登记信息, and a run-together query by its parts.
        found = ckan.action.package_search(q="企业", rows=10)
        assert {r["name"] for r in found["results"]} == {"ents", "ents-fz", "cond"}
        assert ckan.action.package_search(q="福州企业")["count"] == 1
        assert ckan.action.package_search(q="注册资本")["results"][0]["name"] == "capital-by-city"
        assert ckan.action.package_search(q="不存在的词")["count"] == 0

        facets = ckan.action.package_search(
            q="", fq='tags:"企业"', facet="true",
            **{"facet.field": json.dumps(["groups", "tags", "organization", "res_format"]),
               "facet.limit": 10},
        )  # fmt: skip
        assert facets["count"] == 2
        assert facets["facets"]["tags"] == {"企业": 2, "登记": 1, "福州": 1}
        assert facets["facets"]["groups"] == {"market-regulation": 2}
        assert facets["facets"]["res_format"]["CSV"] == 2
        items = facets["search_facets"]["groups"]["items"]
        assert items == [{"name": "market-regulation", "display_name": "市场监管", "count": 2}]
        assert ckan.action.package_search(fq="groups:finance")["count"] == 1
        assert ckan.action.package_search(fq="-groups:finance")["count"] == 3
        assert ckan.action.package_search(fq="license_id:cc0-1.0 groups:finance")["count"] == 1

        names = []
        for start in (0, 2):
            page = ckan.action.package_search(sort="name asc", rows=2, start=start)
            assert page["count"] == 4
            names += [r["name"] for r in page["results"]]
        assert names == ["capital-by-city", "cond", "ents", "ents-fz"]
        with pytest.raises(SearchQueryError):
            ckan.action.package_search(fq="tags:(企业")
        with pytest.raises(SearchQueryError):
            ckan.action.package_search(fq="secret_field:1")
        with pytest.raises(SearchQueryError):
            ckan.action.package_search(sort="password desc")

        orgs = ckan.action.organization_list(all_fields=True)
        assert len(orgs) == 3 and sum(o["package_count"] for o in orgs) == 4
        one = ckan.action.organization_show(id=orgs[0]["name"], include_datasets=True)
        assert one["package_count"] == len(one["packages"])
        with pytest.raises(NotFound):
            ckan.action.organization_show(id="nobody")
        groups = ckan.action.group_list(all_fields=True)
        assert len(groups) == 21
        assert {g["name"]: g["package_count"] for g in groups}["finance"] == 1
        assert ckan.action.group_list()[0] == "credit"
        assert ckan.action.tag_list() == sorted(["企业", "登记", "福州", "统计"])
        assert ckan.action.tag_list(query="福") == ["福州"]

        csv_id = f"{p.ents_key}-csv"
        res = ckan.action.resource_show(id=csv_id)
        assert res["package_id"] == p.ents_key and res["format"] == "CSV"
        with pytest.raises(NotFound):
            ckan.action.resource_show(id="nothing-csv")


def test_datastore_search_against_the_data(site: tuple[kit.Portal, str]) -> None:
    p, base = site
    ckan = RemoteCKAN(base)
    api_id = f"{p.ents_key}-api"
    everything = kit.enterprises(30).to_pylist()
    page = ckan.action.datastore_search(resource_id=api_id, limit=5, sort="uscc desc")
    assert page["total"] == 30
    assert [r["uscc"] for r in page["records"]] == sorted(
        (e["uscc"] for e in everything), reverse=True
    )[:5]
    assert [f["id"] for f in page["fields"]] == ["uscc", "name", "city", "established"]
    assert page["records"][0]["established"] == everything[29]["established"].isoformat()

    seen = []
    for offset in range(0, 30, 8):
        got = ckan.action.datastore_search(resource_id="ents", limit=8, offset=offset, sort="uscc")
        seen += [r["uscc"] for r in got["records"]]
    assert seen == sorted(e["uscc"] for e in everything)

    fz = ckan.action.datastore_search(resource_id=api_id, filters={"city": "福州市"}, limit=100)
    assert fz["total"] == 10 and {r["city"] for r in fz["records"]} == {"福州市"}
    both = ckan.action.datastore_search(
        resource_id=api_id, filters=json.dumps({"city": ["厦门市", "泉州市"]}), fields="uscc,city"
    )
    assert both["total"] == 20 and set(both["records"][0]) == {"uscc", "city"}
    q = ckan.action.datastore_search(resource_id=api_id, q="测试7有限")
    assert {r["uscc"] for r in q["records"]} == {"91350100MA00000007"}
    assert ckan.action.datastore_search(resource_id="ents-fz", include_total=False)["records"]

    sums = ckan.action.datastore_search(resource_id=p.sums, sort="city")
    assert sums["records"][0] == {"city": "厦门市", "capital": 15500, "enterprises": 10}

    with pytest.raises(ValidationError):
        ckan.action.datastore_search(resource_id=api_id, filters="{not json")
    with pytest.raises(ValidationError):
        ckan.action.datastore_search(resource_id=api_id, filters={"capital": 100})
    with pytest.raises(ValidationError):
        ckan.action.datastore_search(resource_id=api_id, fields="rep_ric")
    with pytest.raises(ValidationError):
        ckan.action.datastore_search(resource_id=api_id, limit=10**9)
    with pytest.raises(NotFound):
        ckan.action.datastore_search(resource_id="no-such-api")
    with pytest.raises(NotFound):  # a closed resource's code is not an open dataset
        ckan.action.datastore_search(resource_id=p.closed_code)


def test_datastore_search_sql_reads_only_open_views(site: tuple[kit.Portal, str]) -> None:
    p, base = site
    ckan = RemoteCKAN(base)
    got = ckan.action.datastore_search_sql(
        sql='SELECT city, count(*) AS n FROM "ents" GROUP BY city ORDER BY city'
    )
    assert got["records"] == [{"city": "厦门市", "n": 10}, {"city": "泉州市", "n": 10},
                              {"city": "福州市", "n": 10}]  # fmt: skip
    joined = ckan.action.datastore_search_sql(
        sql=f'SELECT count(*) AS n FROM "{p.ents_key}-api" e JOIN "ents-fz" f USING (uscc)'
    )
    assert joined["records"] == [{"n": 10}]
    refused = [
        "DELETE FROM ents",
        "DROP TABLE ents",
        "SELECT 1; SELECT 2",
        "ATTACH 'x.db' AS x",
        "COPY ents TO '/tmp/leak.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT read_text('/etc/passwd')",
        "SELECT getenv('HOME')",
        "SELECT current_setting('enable_external_access')",
        f'SELECT * FROM "{p.closed_code}"',
        f'SELECT * FROM ents WHERE uscc IN (SELECT uscc FROM "{p.closed_code}")',
        "SELECT capital FROM ents",
        "SELECT rep_ric FROM ents",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM duckdb_views()",
        "SELECT * FROM pg_catalog.pg_class",
        "PRAGMA database_list",
        "SET enable_external_access = true",
        "SELECT * FROM ents WHERE uscc = $1",
        "WITH x AS (SELECT 1) DELETE FROM ents",
    ]
    for sql in refused:
        with pytest.raises(ValidationError) as caught:
            ckan.action.datastore_search_sql(sql=sql)
        text = json.dumps(caught.value.error_dict, ensure_ascii=False)
        assert "35010019800101" not in text and "root:" not in text, sql
    # A conditional dataset is listed to everyone: the answer says it needs an application.
    for sql in ("SELECT * FROM cond", "SELECT * FROM ents WHERE uscc IN (SELECT uscc FROM cond)"):
        with pytest.raises(NotAuthorized) as denied:
            ckan.action.datastore_search_sql(sql=sql)
        assert "91350100MA" not in str(denied.value) and "apply for it" in str(denied.value)


def test_ckan_envelope_for_unknown_actions_and_bad_bodies(site: tuple[kit.Portal, str]) -> None:
    _, base = site
    r = httpx.get(f"{base}/api/3/action/package_delete")
    assert r.status_code == 400 and r.json()["success"] is False
    r = httpx.post(f"{base}/api/action/package_search", content=b"[1,2]",
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 409
    assert r.json()["error"]["__type"] == "Validation Error"
    ok = httpx.get(f"{base}/api/action/package_search", params={"q": "企业"}).json()
    assert ok["success"] is True and ok["help"].endswith("help_show?name=package_search")
