"""The CKAN Action API's semantics over open datasets, for `ckanapi` and CKAN harvesters.

Our open datasets are CKAN packages, their distributions (CSV, XLSX, JSON, Parquet, the data
API) its resources, the 21 domains its groups, publishers its organisations. Each action is
a function `(Call) -> result` taking CKAN's `data_dict`; errors are the domain errors, with
`SearchQueryError` for a query CKAN's Solr would refuse. `minyun.opendata.api` wraps them in
CKAN's envelope (`help`, `success`, `result` / `error`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.catalog.themes import THEME_BY_CODE, THEMES
from minyun.core.errors import DomainError, Invalid, NotFound
from minyun.core.lake import Lake
from minyun.core.security import Principal
from minyun.opendata import service
from minyun.opendata.models import OpenDataset
from minyun.orgs.models import Organization

CKAN_VERSION = "2.10.4"
MAX_ROWS = 1000
FACETS = ("organization", "groups", "tags", "res_format", "license_id", "frequency")
FORMATS = {
    "csv": ("CSV", "text/csv"),
    "xlsx": ("XLSX", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "json": ("JSON", "application/json"),
    "parquet": ("Parquet", "application/vnd.apache.parquet"),
    "api": ("API", "application/json"),
}
SORTS = {
    "score": "score",
    "name": "name",
    "title_string": "title",
    "metadata_modified": "updated_at",
    "metadata_created": "created_at",
}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class SearchQueryError(DomainError):
    """A query CKAN's search would refuse (bad fq, sort, facet)."""

    code = "search-query"
    title = "Search Query Error"


@dataclass(frozen=True)
class Call:
    """One action call: who asks, with what, on which node."""

    session: Session
    lake: Lake
    actor: Principal
    data: Mapping[str, Any]
    base_url: str
    key: str | None = None  # the developer key's prefix, when one was sent


# --- shapes ------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.replace(tzinfo=None).isoformat() if value is not None else None


def organization_dict(org: Organization, count: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": org.code, "name": org.code, "title": org.name, "display_name": org.name,
        "description": "", "type": "organization", "is_organization": True, "state": "active",
        "approval_status": "approved", "image_url": "", "created": _iso(org.created_at),
    }  # fmt: skip
    if count is not None:
        out["package_count"] = count
    return out


def group_dict(code: str, count: int | None = None) -> dict[str, Any]:
    term = THEME_BY_CODE[code]
    out: dict[str, Any] = {
        "id": code, "name": code, "title": term.zh, "display_name": term.zh,
        "description": term.en, "type": "group", "is_organization": False, "state": "active",
        "approval_status": "approved", "image_url": "",
    }  # fmt: skip
    if count is not None:
        out["package_count"] = count
    return out


def resource_dict(dataset: OpenDataset, fmt: str, base_url: str, position: int) -> dict[str, Any]:
    label, mimetype = FORMATS[fmt]
    if fmt == "api":
        url = f"{base_url}/api/3/action/datastore_search?resource_id={dataset.key}-api"
    else:
        url = f"{base_url}/opendata/datasets/{dataset.name}/download.{fmt}"
    return {
        "id": f"{dataset.key}-{fmt}", "package_id": dataset.key, "name": f"{dataset.title} ({label})",
        "description": "", "format": label, "mimetype": mimetype, "url": url,
        "url_type": "datastore" if fmt == "api" else "", "datastore_active": True,
        "position": position, "state": "active", "created": _iso(dataset.created_at),
        "last_modified": _iso(dataset.updated_at), "resource_type": None, "size": None,
    }  # fmt: skip


def package_dict(dataset: OpenDataset, base_url: str) -> dict[str, Any]:
    """An open dataset as a CKAN package."""
    org = dataset.publisher
    resources = [resource_dict(dataset, f, base_url, i) for i, f in enumerate(FORMATS)]
    tags = [{"name": t, "display_name": t, "id": t, "state": "active", "vocabulary_id": None}
            for t in dataset.tags]  # fmt: skip
    extras = {
        "domain": dataset.domain, "frequency": dataset.frequency,
        "temporal_start": dataset.temporal_start.isoformat() if dataset.temporal_start else "",
        "temporal_end": dataset.temporal_end.isoformat() if dataset.temporal_end else "",
        "spatial": ",".join(dataset.spatial), "open_type": dataset.resource.open_type,
        "open_version": str(dataset.version), "source_resource": dataset.resource.code,
    }  # fmt: skip
    return {
        "id": dataset.key, "name": dataset.name, "title": dataset.title, "notes": dataset.description,
        "type": "dataset", "state": "active", "private": False, "version": str(dataset.version),
        "license_id": dataset.licence, "license_title": service.LICENCES.get(dataset.licence, ""),
        "author": org.name, "author_email": None, "maintainer": org.name, "maintainer_email": None,
        "url": f"{base_url}/opendata/datasets/{dataset.name}",
        "metadata_created": _iso(dataset.created_at), "metadata_modified": _iso(dataset.updated_at),
        "owner_org": org.code, "organization": organization_dict(org),
        "groups": [group_dict(dataset.domain)], "tags": tags, "num_tags": len(tags),
        "resources": resources, "num_resources": len(resources),
        "frequency": dataset.frequency, "extras": [{"key": k, "value": v} for k, v in extras.items()],
    }  # fmt: skip


def jsonable(value: Any) -> Any:
    """A value of a row as JSON gives it (dates as ISO text, decimals as numbers)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def records(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: jsonable(v) for k, v in row.items()} for row in table.to_pylist()]


_CKAN_TYPES = {"integer": "int", "number": "numeric", "string": "text", "date": "date",
               "datetime": "timestamp", "boolean": "bool"}  # fmt: skip


def field_dicts(kinds: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"id": n, "type": _CKAN_TYPES.get(k, "text")} for n, k in kinds.items()]


# --- arguments ---------------------------------------------------------------------------------


def _int(data: Mapping[str, Any], name: str, default: int, *, low: int = 0, high: int) -> int:
    raw = data.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise Invalid(f"{name}: Invalid integer", field=name) from None
    if not low <= value <= high:
        raise Invalid(f"{name}: must be between {low} and {high}", field=name)
    return value


def _bool(data: Mapping[str, Any], name: str, default: bool) -> bool:
    raw = data.get(name, default)
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in ("true", "1", "yes", "on")


def _json_arg(data: Mapping[str, Any], name: str) -> Any:
    raw = data.get(name)
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            raise Invalid(f"{name}: Cannot parse JSON", field=name) from None
    return raw


def _list_arg(data: Mapping[str, Any], name: str) -> list[str] | None:
    raw = data.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            raw = _json_arg(data, name)
        else:
            raw = [p.strip() for p in text.split(",") if p.strip()]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise Invalid(f"{name}: give a list of names", field=name)
    return raw


def _required(data: Mapping[str, Any], name: str) -> str:
    raw = data.get(name)
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid(f"{name}: Missing value", field=name)
    return raw.strip()


# --- search ------------------------------------------------------------------------------------

_FQ = re.compile(
    r'\s*(?P<neg>[-+]?)(?P<field>[a-z_]+):(?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s"()]+))\s*'
)
FQ_FIELDS = {"organization", "groups", "tags", "res_format", "license_id", "frequency", "name",
             "id", "domain"}  # fmt: skip


def parse_fq(fq: str) -> list[tuple[bool, str, str]]:
    """CKAN's `fq` (Solr filter queries), the subset harvesters send: `field:value` or
    `field:"a value"`, optionally negated with `-`, joined by spaces or AND."""
    terms: list[tuple[bool, str, str]] = []
    text = fq.strip()
    pos = 0
    while pos < len(text):
        if text.startswith("AND ", pos):
            pos += 4
            continue
        m = _FQ.match(text, pos)
        if m is None or m.end() == pos:
            raise SearchQueryError(
                f"Search Query is invalid: cannot parse fq at {text[pos : pos + 20]!r}"
            )
        field = m.group("field")
        if field not in FQ_FIELDS:
            raise SearchQueryError(f"Search Query is invalid: unknown field {field!r} in fq")
        value = m.group("quoted") if m.group("quoted") is not None else m.group("bare")
        terms.append((m.group("neg") == "-", field, value))
        pos = m.end()
    return terms


def _facet_values(dataset: OpenDataset, field: str) -> list[str]:
    if field == "organization":
        return [dataset.publisher.code]
    if field in ("groups", "domain"):
        return [dataset.domain]
    if field == "tags":
        return list(dataset.tags)
    if field == "res_format":
        return [label for label, _ in FORMATS.values()]
    if field == "license_id":
        return [dataset.licence]
    if field == "frequency":
        return [dataset.frequency]
    if field == "name":
        return [dataset.name]
    if field == "id":
        return [dataset.key]
    return []


def search_terms(q: str) -> list[str]:
    """The words of a query, normalised (`*:*`, CKAN's "everything", is no word)."""
    return [w for w in service.normalize(q).split()[:10] if w not in ("*:*", "*")]


def _patterns(word: str) -> list[str]:
    """What the database narrows by: the word, or each character of a Chinese word."""
    if _CJK.search(word) and len(word) > 2:
        return list(dict.fromkeys(word))
    return [word]


def covers(word: str, text: str) -> bool:
    """Whether `word` occurs in `text`, or splits into pieces of two or more characters that
    each do (Chinese is written without spaces: 福州企业 finds 福州市企业登记信息)."""
    if word in text:
        return True
    if not _CJK.search(word):
        return False
    reachable = [True] + [False] * len(word)
    for end in range(2, len(word) + 1):
        reachable[end] = any(
            reachable[start] and word[start:end] in text for start in range(0, end - 1)
        )
    return reachable[-1]


@dataclass(frozen=True)
class SearchResult:
    count: int
    datasets: list[OpenDataset]
    facets: dict[str, Counter[str]]


def search(
    session: Session,
    *,
    q: str = "",
    fq: str = "",
    sort: str | None = None,
    rows: int = 10,
    start: int = 0,
    facet_fields: Sequence[str] = (),
    facet_limit: int = 50,
) -> SearchResult:
    """Listed datasets matching the words of `q` (Chinese by substrings) and `fq`, sorted."""
    for name in facet_fields:
        if name not in FACETS:
            raise SearchQueryError(f"Search Query is invalid: unknown facet field {name!r}")
    order = _order(sort, bool(q.strip()))
    query = service.listed_query()
    words = search_terms(q)
    for word in words:
        for pattern in _patterns(word):
            escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(OpenDataset.search_text.like(f"%{escaped}%", escape="\\"))
    # Only the facets and fq need the whole match set; it is small (the catalogue's size).
    matched = [
        d for d in session.scalars(query.order_by(*order))
        if all(covers(w, d.search_text) for w in words)
    ]  # fmt: skip
    if words and (sort is None or sort.strip().startswith("score")):
        # Relevance first: a title holding every word before the rest (stable otherwise).
        matched.sort(key=lambda d: not all(w in service.normalize(d.title) for w in words))
    for negate, field, value in parse_fq(fq):
        matched = [d for d in matched if (value in _facet_values(d, field)) != negate]
    facets = {}
    for name in facet_fields:
        counter: Counter[str] = Counter()
        for d in matched:
            counter.update(_facet_values(d, name))
        facets[name] = Counter(dict(counter.most_common(facet_limit)))
    return SearchResult(len(matched), matched[start : start + rows], facets)


def _order(sort: str | None, has_query: bool) -> list[Any]:
    items = [
        s.strip() for s in (sort or "score desc, metadata_modified desc").split(",") if s.strip()
    ]
    order: list[Any] = []
    for item in items:
        parts = item.split()
        if len(parts) != 2 or parts[0] not in SORTS or parts[1].lower() not in ("asc", "desc"):
            raise SearchQueryError(f"Search Query is invalid: cannot sort by {item!r}")
        if parts[0] == "score":
            # Relevance: a title holding the words first (only when there are words).
            continue
        column = getattr(OpenDataset, SORTS[parts[0]])
        order.append(column.desc() if parts[1].lower() == "desc" else column.asc())
    order.append(OpenDataset.id.asc())
    return order


# --- actions -----------------------------------------------------------------------------------


def status_show(call: Call) -> dict[str, Any]:
    """The site's description (harvesters check the CKAN version and the extensions)."""
    return {
        "site_title": "福建省公共数据开放平台 (minyun)", "site_url": call.base_url,
        "site_description": "公共信息资源统一开放平台", "ckan_version": CKAN_VERSION,
        "error_emails_to": None, "locale_default": "zh_Hans_CN",
        "extensions": ["datastore", "dcat", "minyun"],
    }  # fmt: skip


def package_list(call: Call) -> list[str]:
    limit = _int(call.data, "limit", 100_000, high=100_000)
    offset = _int(call.data, "offset", 0, high=10**9)
    query = service.listed_query().with_only_columns(OpenDataset.name).order_by(OpenDataset.name)
    return list(call.session.scalars(query.limit(limit).offset(offset)))


def package_show(call: Call) -> dict[str, Any]:
    dataset = service.access_dataset(call.session, call.actor, _required(call.data, "id"))
    out = package_dict(dataset, call.base_url)
    out["num_rows"] = (
        service.row_count(call.session, call.lake, call.actor, dataset)
        if (dataset.resource.open_type == "unconditional")
        else None
    )
    return out


def package_search(call: Call) -> dict[str, Any]:
    data = call.data
    q = data.get("q") or ""
    fq = data.get("fq") or ""
    if not isinstance(q, str) or not isinstance(fq, str):
        raise SearchQueryError("Search Query is invalid: q and fq are text")
    facet_fields = _list_arg(data, "facet.field") or []
    found = search(
        call.session, q=q, fq=fq, sort=data.get("sort"),
        rows=_int(data, "rows", 10, high=MAX_ROWS), start=_int(data, "start", 0, high=10**7),
        facet_fields=facet_fields, facet_limit=_int(data, "facet.limit", 50, low=-1, high=10_000)
        if str(data.get("facet.limit", "50")) != "-1" else 10_000,
    )  # fmt: skip
    search_facets = {}
    for name, counter in found.facets.items():
        items = [{"name": v, "display_name": _display(name, v), "count": n}
                 for v, n in counter.most_common()]  # fmt: skip
        search_facets[name] = {"title": name, "items": items}
    return {
        "count": found.count,
        "sort": data.get("sort") or "score desc, metadata_modified desc",
        "results": [package_dict(d, call.base_url) for d in found.datasets],
        "facets": {name: dict(counter) for name, counter in found.facets.items()},
        "search_facets": search_facets,
    }


def _display(field: str, value: str) -> str:
    if field in ("groups", "domain") and value in THEME_BY_CODE:
        return THEME_BY_CODE[value].zh
    return value


def _publisher_counts(session: Session) -> dict[int, int]:
    query = (
        service.listed_query()
        .with_only_columns(OpenDataset.publisher_id, func.count())
        .group_by(OpenDataset.publisher_id)
    )
    return {int(p): int(n) for p, n in session.execute(query)}


def organization_list(call: Call) -> list[Any]:
    counts = _publisher_counts(call.session)
    orgs = call.session.scalars(
        select(Organization).where(Organization.id.in_(counts)).order_by(Organization.code)
    )
    if _bool(call.data, "all_fields", False):
        return [organization_dict(o, counts[o.id]) for o in orgs]
    return [o.code for o in orgs]


def organization_show(call: Call) -> dict[str, Any]:
    ident = _required(call.data, "id")
    org = call.session.scalars(select(Organization).where(Organization.code == ident)).first()
    counts = _publisher_counts(call.session)
    if org is None or org.id not in counts:
        raise NotFound(f"Organization not found: {ident}")
    out = organization_dict(org, counts[org.id])
    if _bool(call.data, "include_datasets", False):
        found = call.session.scalars(
            service.listed_query()
            .where(OpenDataset.publisher_id == org.id)
            .order_by(OpenDataset.name)
            .limit(1000)
        )
        out["packages"] = [package_dict(d, call.base_url) for d in found]
    return out


def group_list(call: Call) -> list[Any]:
    query = (
        service.listed_query().with_only_columns(OpenDataset.domain, func.count())
        .group_by(OpenDataset.domain)
    )  # fmt: skip
    counts = {str(d): int(n) for d, n in call.session.execute(query)}
    if _bool(call.data, "all_fields", False):
        return [group_dict(t.code, counts.get(t.code, 0)) for t in THEMES]
    return [t.code for t in THEMES]


def group_show(call: Call) -> dict[str, Any]:
    ident = _required(call.data, "id")
    if ident not in THEME_BY_CODE:
        raise NotFound(f"Group not found: {ident}")
    count = call.session.scalar(
        service.listed_query().with_only_columns(func.count()).where(OpenDataset.domain == ident)
    )
    return group_dict(ident, int(count or 0))


def tag_list(call: Call) -> list[Any]:
    query = call.data.get("query")
    counter: Counter[str] = Counter()
    for tags in call.session.scalars(service.listed_query().with_only_columns(OpenDataset.tags)):
        counter.update(tags)
    names = sorted(counter)
    if isinstance(query, str) and query:
        names = [n for n in names if query.casefold() in n.casefold()]
    if _bool(call.data, "all_fields", False):
        return [{"id": n, "name": n, "display_name": n, "vocabulary_id": None} for n in names]
    return names


def resource_show(call: Call) -> dict[str, Any]:
    ident = _required(call.data, "id")
    base, _, fmt = ident.rpartition("-")
    if fmt not in FORMATS or not base:
        raise NotFound(f"Resource was not found: {ident}")
    try:
        dataset = service.access_dataset(call.session, call.actor, base)
    except NotFound:
        raise NotFound(f"Resource was not found: {ident}") from None
    return resource_dict(dataset, fmt, call.base_url, list(FORMATS).index(fmt))


def _sort_arg(raw: Any) -> list[tuple[str, bool]]:
    if raw is None or raw == "":
        return []
    if not isinstance(raw, str):
        raise Invalid("sort: give 'field asc, field desc'", field="sort")
    out = []
    for item in raw.split(","):
        parts = item.strip().strip('"').split()
        if not parts:
            continue
        name = parts[0].strip('"')
        direction = parts[1].lower() if len(parts) > 1 else "asc"
        if len(parts) > 2 or direction not in ("asc", "desc"):
            raise Invalid(f"sort: cannot sort by {item.strip()!r}", field="sort")
        out.append((name, direction == "desc"))
    return out


def datastore_search(call: Call) -> dict[str, Any]:
    """Rows of a dataset's data API (any of its distribution ids, or the dataset's)."""
    data = call.data
    resource_id = _required(data, "resource_id")
    filters = _json_arg(data, "filters")
    if filters is not None and not isinstance(filters, dict):
        raise Invalid("filters: give a JSON object of field: value(s)", field="filters")
    q = data.get("q")
    if isinstance(q, str) and q.strip().startswith("{"):
        q = _json_arg(data, "q")
    if q is not None and not isinstance(q, str | dict):
        raise Invalid("q: text or an object of field: text", field="q")
    limit = _int(data, "limit", 100, high=32_000)
    offset = _int(data, "offset", 0, high=10**9)
    include_total = _bool(data, "include_total", True)
    try:
        rows = service.search_rows(
            call.session, call.lake, call.actor, service.dataset_ident(resource_id),
            filters=filters, q=q, fields=_list_arg(data, "fields"), sort=_sort_arg(data.get("sort")),
            limit=limit, offset=offset, total=include_total, key=call.key,
        )  # fmt: skip
    except NotFound:
        raise NotFound(f'Resource "{resource_id}" was not found.') from None
    shown = rows.table.column_names
    base = f"/api/3/action/datastore_search?resource_id={resource_id}"
    out: dict[str, Any] = {
        "resource_id": resource_id, "include_total": include_total,
        "fields": field_dicts({n: rows.columns[n] for n in shown}),
        "records": records(rows.table), "limit": limit, "offset": offset,
        "_links": {"start": base, "next": f"{base}&offset={offset + limit}"},
        "records_format": "objects",
    }  # fmt: skip
    if include_total:
        out["total"] = rows.total
        out["total_was_estimated"] = False
    return out


def datastore_search_sql(call: Call) -> dict[str, Any]:
    """A read-only SELECT over open datasets (named by id, name or a distribution id)."""
    sql = _required(call.data, "sql")
    answer = service.run_sql(call.session, call.lake, call.actor, sql, key=call.key)
    from minyun.core.filters import kind_of

    kinds = {f.name: kind_of(f.type) for f in answer.table.schema}
    out: dict[str, Any] = {
        "sql": sql,
        "records": records(answer.table),
        "fields": field_dicts(kinds),
    }
    if answer.truncated:
        out["records_truncated"] = True
    return out


ACTIONS: dict[str, Callable[[Call], Any]] = {
    "status_show": status_show,
    "package_list": package_list,
    "package_show": package_show,
    "package_search": package_search,
    "organization_list": organization_list,
    "organization_show": organization_show,
    "group_list": group_list,
    "group_show": group_show,
    "tag_list": tag_list,
    "resource_show": resource_show,
    "datastore_search": datastore_search,
    "datastore_search_sql": datastore_search_sql,
}


def resource_ids(session: Session, ident: str) -> list[str]:
    """Every distribution id of a dataset (for the API page's examples)."""
    dataset = service.get_dataset(session, ident)
    return [f"{dataset.key}-{fmt}" for fmt in FORMATS]
