"""Open311 GeoReport v2: the documents the specification defines, in XML and JSON.

Follows the frozen v2 specification text (wiki.open311.org/GeoReport_v2 and Service
Discovery). Where the v2.1 draft swagger disagrees, the specification wins: one request is
`requests/{id}.{format}` (the draft: `request/{id}`) and comes as a list of one; POST
parameters are form-encoded in the body (the draft: in the query); an unknown
jurisdiction_id is 404 (the draft: 401); errors are always a list of {code, description}.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.etree import ElementTree as ET

from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.apps.grid.models import GridService, Report, TaskState
from minyun.core.errors import Invalid
from minyun.orgs.models import Organization

CHINA_TIME = timezone(timedelta(hours=8), "CST")  # the spec wants an offset; China has one
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
JURISDICTION = "350102"  # the district this endpoint answers for (鼓楼区, GB/T 2260)
FORMATS = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}
LIST_LIMIT = 1000
DEFAULT_DAYS = 90

# The element name of one item inside each list document.
ITEM = {"services": "service", "service_requests": "request", "errors": "error",
        "attributes": "attribute", "values": "value", "endpoints": "endpoint",
        "formats": "format"}  # fmt: skip


def w3c(value: datetime | None) -> str | None:
    """A time as the spec writes it: ISO 8601 with its offset (China time)."""
    if value is None:
        return None
    return value.astimezone(CHINA_TIME).isoformat(timespec="seconds")


def to_xml(root: str, body: Any) -> bytes:
    """A document as XML: lists become repeated items (services → service)."""
    element = ET.Element(root)
    _fill(element, root, body)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + bytes(ET.tostring(element, encoding="utf-8",
                                                                     xml_declaration=False))  # fmt: skip


def _fill(element: ET.Element, name: str, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _fill(ET.SubElement(element, key), key, inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            _fill(ET.SubElement(element, ITEM.get(name, "item")), ITEM.get(name, "item"), inner)
    elif value is None:
        return
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)


def discovery(base_url: str) -> dict[str, Any]:
    root = base_url.rstrip("/") + "/open311/v2"
    return {
        "changeset": "2026-12-06T00:00:00+08:00",
        "contact": "鼓楼区网格化服务管理中心 / minyun 闽云",
        "key_service": f"{base_url.rstrip('/')}/grid/keys",
        "endpoints": [{"specification": SPECIFICATION, "url": root,
                       "changeset": "2026-12-06T00:00:00+08:00", "type": "production",
                       "formats": ["text/xml", "application/json"]}],
    }  # fmt: skip


def service_entry(service: GridService) -> dict[str, Any]:
    return {
        "service_code": service.code,
        "service_name": service.name,
        "description": service.description,
        "metadata": bool(service.attributes),
        "type": "realtime",
        "keywords": service.keywords,
        "group": service.group,
    }


def service_definition(service: GridService) -> dict[str, Any]:
    return {
        "service_code": service.code,
        "attributes": [
            {"variable": True, "code": a["code"], "datatype": a["datatype"],
             "required": bool(a.get("required")),
             "datatype_description": a.get("datatype_description") or None,
             "order": a.get("order", n), "description": a.get("description", ""),
             "values": [{"key": v["key"], "name": v["name"]} for v in a.get("values", [])]}
            for n, a in enumerate(sorted(service.attributes, key=lambda a: a.get("order", 0)), 1)
        ],
    }  # fmt: skip


def request_entry(
    report: Report, service_name: str, agencies: str, notice: str, media_url: str | None
) -> dict[str, Any]:
    return {
        "service_request_id": report.id,
        "status": report.open311_status,
        "status_notes": report.status_notes or None,
        "service_name": service_name,
        "service_code": report.service_code,
        "description": report.description or None,
        "agency_responsible": agencies or None,
        "service_notice": notice or None,
        "requested_datetime": w3c(report.requested_at),
        "updated_datetime": w3c(report.updated_at),
        "expected_datetime": w3c(report.expected_at),
        "address": report.address or None,
        "address_id": None,
        "zipcode": None,
        "lat": report.lat,
        "long": report.long,
        "media_url": media_url,
    }


def request_entries(
    session: Session, reports: Sequence[Report], media_url: Any
) -> list[dict[str, Any]]:
    """Reports as the spec's request documents (departments named, live tasks only)."""
    services = {s.code: s for s in session.scalars(select(GridService))}
    org_ids = {t.org_id for r in reports for t in r.tasks}
    names = dict(session.execute(select(Organization.id, Organization.name)
                                 .where(Organization.id.in_(org_ids))).all())  # fmt: skip
    out = []
    for report in reports:
        service = services.get(report.service_code)
        agencies = "、".join(names.get(t.org_id, "") for t in report.tasks
                            if t.state != TaskState.WITHDRAWN)  # fmt: skip
        photo = next((p for p in report.photos if p.kind == "report"), None)
        url = media_url(photo.id) if photo else report.contact.get("media_url")
        out.append(request_entry(report, service.name if service else report.service_code,
                                 agencies, service.notice if service else "", url))  # fmt: skip
    return out


def error_list(code: int, description: str) -> list[dict[str, Any]]:
    return [{"code": code, "description": description}]


def parse_time(value: str, field: str) -> datetime:
    """A w3c datetime parameter (an offset or Z is required)."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{field} is not a w3c datetime: {value}", field=field) from None
    if parsed.tzinfo is None:
        raise Invalid(f"{field} needs a time zone (Z or an offset): {value}", field=field)
    return parsed


def split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def attributes_of(form: Iterable[tuple[str, Any]]) -> dict[str, list[str]]:
    """attribute[CODE]=value pairs (and attribute[CODE][]=… for lists) from a form."""
    found: dict[str, list[str]] = {}
    for key, value in form:
        if key.startswith("attribute[") and isinstance(value, str):
            code = key[len("attribute[") :].split("]", 1)[0]
            found.setdefault(code, []).append(value)
    return found
