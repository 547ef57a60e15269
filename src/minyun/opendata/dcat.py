"""The open catalogue as DCAT (DCAT-AP 3 / DCAT-US 3 core classes), in Turtle and JSON-LD.

URLs: `/opendata/catalog.ttl`, `/opendata/catalog.jsonld` (the whole catalogue) and
`/opendata/datasets/{name}.ttl` / `.jsonld` (one dataset). A dataset is a `dcat:Dataset`
with its distributions (`dcat:Distribution`: CSV, XLSX, JSON, Parquet with download URLs)
and the data API as a `dcat:DataService` serving it; domains are `dcat:theme` concepts of
a SKOS scheme, publishers `foaf:Organization`, frequencies the EU's frequency authority.
"""

from __future__ import annotations

from collections.abc import Iterable

from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF, SKOS, XSD

from minyun.catalog.themes import THEME_BY_CODE
from minyun.opendata.ckan import FORMATS
from minyun.opendata.models import OpenDataset

DCAT_VERSION = URIRef("http://www.w3.org/ns/dcat#version")  # DCAT 3; rdflib's DCAT predates it
FREQ = Namespace("http://publications.europa.eu/resource/authority/frequency/")
FREQUENCIES = {"realtime": "CONT", "daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY",
               "quarterly": "QUARTERLY", "yearly": "ANNUAL", "irregular": "IRREG"}  # fmt: skip
LICENCE_URIS = {
    "cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "cc0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "odc-by": "https://opendatacommons.org/licenses/by/1-0/",
}
MEDIA = {"csv": "text/csv", "xlsx": FORMATS["xlsx"][1], "json": "application/json",
         "parquet": "application/vnd.apache.parquet"}  # fmt: skip


def _graph() -> Graph:
    graph = Graph()
    for prefix, ns in (("dcat", DCAT), ("dct", DCTERMS), ("foaf", FOAF), ("skos", SKOS)):
        graph.bind(prefix, ns)
    return graph


def _add_dataset(graph: Graph, dataset: OpenDataset, base: str) -> URIRef:
    node = URIRef(f"{base}/opendata/datasets/{dataset.name}")
    zh = "zh"
    graph.add((node, RDF.type, DCAT.Dataset))
    graph.add((node, DCTERMS.identifier, Literal(dataset.key)))
    graph.add((node, DCTERMS.title, Literal(dataset.title, lang=zh)))
    graph.add((node, DCTERMS.description, Literal(dataset.description or dataset.title, lang=zh)))
    graph.add((node, DCAT.landingPage, node))
    graph.add(
        (node, DCTERMS.issued, Literal(dataset.created_at.isoformat(), datatype=XSD.dateTime))
    )
    graph.add(
        (node, DCTERMS.modified, Literal(dataset.updated_at.isoformat(), datatype=XSD.dateTime))
    )
    graph.add((node, DCAT_VERSION, Literal(str(dataset.version))))
    for tag in dataset.tags:
        graph.add((node, DCAT.keyword, Literal(tag, lang=zh)))
    theme = URIRef(f"{base}/opendata/domains/{dataset.domain}")
    graph.add((node, DCAT.theme, theme))
    term = THEME_BY_CODE.get(dataset.domain)
    graph.add((theme, RDF.type, SKOS.Concept))
    graph.add((theme, SKOS.prefLabel, Literal(term.zh if term else dataset.domain, lang=zh)))
    graph.add((theme, SKOS.inScheme, URIRef(f"{base}/opendata/domains")))
    publisher = URIRef(f"{base}/opendata/organizations/{dataset.publisher.code}")
    graph.add((node, DCTERMS.publisher, publisher))
    graph.add((publisher, RDF.type, FOAF.Organization))
    graph.add((publisher, FOAF.name, Literal(dataset.publisher.name, lang=zh)))
    graph.add((node, DCTERMS.accrualPeriodicity, FREQ[FREQUENCIES.get(dataset.frequency, "IRREG")]))
    if dataset.temporal_start or dataset.temporal_end:
        period = BNode()
        graph.add((node, DCTERMS.temporal, period))
        graph.add((period, RDF.type, DCTERMS.PeriodOfTime))
        if dataset.temporal_start:
            graph.add((period, DCAT.startDate, Literal(dataset.temporal_start, datatype=XSD.date)))
        if dataset.temporal_end:
            graph.add((period, DCAT.endDate, Literal(dataset.temporal_end, datatype=XSD.date)))
    for code in dataset.spatial:
        graph.add((node, DCTERMS.spatial, URIRef(f"{base}/opendata/divisions/{code}")))
    licence = URIRef(
        LICENCE_URIS.get(dataset.licence, f"{base}/opendata/licences/{dataset.licence}")
    )
    for fmt in ("csv", "xlsx", "json", "parquet"):
        dist = URIRef(f"{base}/opendata/datasets/{dataset.name}/download.{fmt}")
        graph.add((node, DCAT.distribution, dist))
        graph.add((dist, RDF.type, DCAT.Distribution))
        graph.add((dist, DCTERMS.title, Literal(f"{dataset.title} ({FORMATS[fmt][0]})", lang=zh)))
        graph.add((dist, DCAT.accessURL, dist))
        graph.add((dist, DCAT.downloadURL, dist))
        graph.add(
            (
                dist,
                DCAT.mediaType,
                URIRef(f"https://www.iana.org/assignments/media-types/{MEDIA[fmt]}"),
            )
        )
        graph.add((dist, DCTERMS.format, Literal(FORMATS[fmt][0])))
        graph.add((dist, DCTERMS.license, licence))
    api = URIRef(f"{base}/api/3/action/datastore_search?resource_id={dataset.key}-api")
    service = URIRef(f"{base}/opendata/datasets/{dataset.name}#api")
    graph.add((service, RDF.type, DCAT.DataService))
    graph.add((service, DCTERMS.title, Literal(f"{dataset.title} 数据接口", lang=zh)))
    graph.add((service, DCAT.endpointURL, api))
    graph.add((service, DCAT.endpointDescription, URIRef(f"{base}/opendata/api")))
    graph.add((service, DCAT.servesDataset, node))
    graph.add((service, DCTERMS.license, licence))
    api_dist = URIRef(f"{base}/opendata/datasets/{dataset.name}#api-distribution")
    graph.add((node, DCAT.distribution, api_dist))
    graph.add((api_dist, RDF.type, DCAT.Distribution))
    graph.add((api_dist, DCAT.accessURL, api))
    graph.add((api_dist, DCAT.accessService, service))
    graph.add((api_dist, DCTERMS.license, licence))
    return node


def catalog_graph(datasets: Iterable[OpenDataset], base: str) -> Graph:
    """The whole open catalogue as one `dcat:Catalog`."""
    graph = _graph()
    catalog = URIRef(f"{base}/opendata/catalog")
    graph.add((catalog, RDF.type, DCAT.Catalog))
    graph.add((catalog, DCTERMS.title, Literal("福建省公共数据开放平台", lang="zh")))
    graph.add(
        (catalog, DCTERMS.description, Literal("公共信息资源统一开放平台的开放数据目录", lang="zh"))
    )
    graph.add((catalog, FOAF.homepage, URIRef(f"{base}/opendata")))
    publisher = URIRef(f"{base}/opendata/organizations/platform")
    graph.add((catalog, DCTERMS.publisher, publisher))
    graph.add((publisher, RDF.type, FOAF.Organization))
    graph.add((publisher, FOAF.name, Literal("福建省大数据管理局", lang="zh")))
    scheme = URIRef(f"{base}/opendata/domains")
    graph.add((scheme, RDF.type, SKOS.ConceptScheme))
    graph.add((scheme, DCTERMS.title, Literal("开放数据领域", lang="zh")))
    graph.add((catalog, DCAT.themeTaxonomy, scheme))
    for dataset in datasets:
        graph.add((catalog, DCAT.dataset, _add_dataset(graph, dataset, base)))
    return graph


def dataset_graph(dataset: OpenDataset, base: str) -> Graph:
    graph = _graph()
    _add_dataset(graph, dataset, base)
    return graph


def serialize(graph: Graph, fmt: str) -> str:
    """Turtle (`ttl`) or JSON-LD (`jsonld`)."""
    return graph.serialize(format="turtle" if fmt == "ttl" else "json-ld")
