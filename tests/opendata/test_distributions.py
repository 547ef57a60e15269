"""Downloads (CSV with BOM, XLSX, JSON, Parquet) and the DCAT catalogue, over HTTP."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from pyshacl import validate
from rdflib import Graph
from rdflib.namespace import DCAT, RDF

from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.opendata import kit

SHAPES = """
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix dcat: <http://www.w3.org/ns/dcat#> .
@prefix dct: <http://purl.org/dc/terms/> .
@prefix foaf: <http://xmlns.com/foaf/0.1/> .
@prefix ex: <urn:shapes:> .

# The mandatory properties of DCAT-AP 3 (catalogue, dataset, distribution, data service, agent).
ex:Catalog a sh:NodeShape ; sh:targetClass dcat:Catalog ;
  sh:property [ sh:path dct:title ; sh:minCount 1 ] , [ sh:path dct:description ; sh:minCount 1 ] ,
              [ sh:path dct:publisher ; sh:minCount 1 ; sh:maxCount 1 ; sh:class foaf:Organization ] ,
              [ sh:path dcat:dataset ; sh:class dcat:Dataset ] .
ex:Dataset a sh:NodeShape ; sh:targetClass dcat:Dataset ;
  sh:property [ sh:path dct:title ; sh:minCount 1 ] , [ sh:path dct:description ; sh:minCount 1 ] ,
              [ sh:path dcat:distribution ; sh:class dcat:Distribution ; sh:minCount 1 ] ,
              [ sh:path dct:publisher ; sh:maxCount 1 ; sh:class foaf:Organization ] ,
              [ sh:path dct:identifier ; sh:minCount 1 ] .
ex:Distribution a sh:NodeShape ; sh:targetClass dcat:Distribution ;
  sh:property [ sh:path dcat:accessURL ; sh:minCount 1 ; sh:nodeKind sh:IRI ] ,
              [ sh:path dct:license ; sh:maxCount 1 ] .
ex:DataService a sh:NodeShape ; sh:targetClass dcat:DataService ;
  sh:property [ sh:path dcat:endpointURL ; sh:minCount 1 ; sh:nodeKind sh:IRI ] ,
              [ sh:path dct:title ; sh:minCount 1 ] .
ex:Agent a sh:NodeShape ; sh:targetClass foaf:Organization ;
  sh:property [ sh:path foaf:name ; sh:minCount 1 ] .
"""


@pytest.fixture
def http(platform: Platform) -> tuple[TestClient, kit.Portal]:
    with platform.factory.begin() as s:
        made = kit.portal(s, platform.lake)
    return TestClient(create_app(platform)), made


def test_downloads_in_every_format(http: tuple[TestClient, kit.Portal]) -> None:
    client, _ = http
    r = client.get("/opendata/datasets/ents-fz/download.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    lines = r.content.decode("utf-8-sig").splitlines()
    assert lines[0] == '"uscc","name","city","established"' and len(lines) == 11
    assert "福州市" in lines[1]
    assert 'filename="ents-fz-v1.csv"' in r.headers["content-disposition"]

    rows = json.loads(client.get("/opendata/datasets/ents/download.json").content)
    assert len(rows) == 30 and rows[0]["established"] == "2000-01-01"
    assert "capital" not in rows[0] and "rep_ric" not in rows[0]

    table = pq.read_table(
        io.BytesIO(client.get("/opendata/datasets/ents/download.parquet").content)
    )
    assert table.num_rows == 30 and table.column_names == ["uscc", "name", "city", "established"]

    book = load_workbook(
        io.BytesIO(client.get("/opendata/datasets/capital-by-city/download.xlsx").content)
    )
    values = list(book.active.values)
    assert values[0] == ("city", "capital", "enterprises") and len(values) == 4

    from minyun.opendata import service

    service.XLSX_ROWS, saved = 20, service.XLSX_ROWS
    try:  # a sheet too small for the rows: refused before the first byte
        assert client.get("/opendata/datasets/ents/download.xlsx").status_code == 422
    finally:
        service.XLSX_ROWS = saved
    assert client.get("/opendata/datasets/ents/download.exe").status_code == 404
    assert client.get("/opendata/datasets/cond/download.csv").status_code == 401
    assert client.get("/opendata/datasets/nothing/download.csv").status_code == 404


def test_dcat_parses_and_meets_the_shapes(http: tuple[TestClient, kit.Portal]) -> None:
    client, _ = http
    shapes = Graph().parse(data=SHAPES, format="turtle")
    for fmt, rdf in (("ttl", "turtle"), ("jsonld", "json-ld")):
        r = client.get(f"/opendata/catalog.{fmt}")
        assert r.status_code == 200
        graph = Graph().parse(data=r.text, format=rdf)
        assert len(list(graph.subjects(RDF.type, DCAT.Dataset))) == 4
        assert len(list(graph.subjects(RDF.type, DCAT.DataService))) == 4
        conforms, _, report = validate(graph, shacl_graph=shapes)
        assert conforms, report
    one = Graph().parse(data=client.get("/opendata/datasets/ents.ttl").text, format="turtle")
    assert len(list(one.subjects(RDF.type, DCAT.Distribution))) == 5
    assert client.get("/opendata/datasets/nothing.ttl").status_code == 404
